# Hostile notebook cell: the network, signals to the grader, a fork bomb, then kills its own parent.
import os
import signal
import socket
import time

try:
    connection = socket.create_connection(("127.0.0.1", @PORT@), timeout=2)
    connection.sendall(b"pwned")
    print("CONNECTED")
except Exception as error:
    print("NONET", type(error).__name__)
for pid in (@PID@, os.getppid()):
    try:
        os.kill(pid, signal.SIGUSR1)
        print("SIGNALLED", pid)
    except Exception as error:
        print("NOSIGNAL", pid, type(error).__name__)
children = 0
try:
    for _ in range(400):
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        children += 1
    print("FORKED", children)
except OSError as error:
    print("FORKS STOPPED", children, type(error).__name__)
os.kill(os.getppid(), signal.SIGKILL)
