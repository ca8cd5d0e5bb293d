"""The course's processes: starting the hub, waiting for it, finding and stopping everything it started.

Processes are found by reading ``/proc`` (Linux): the hub by its pid file, the proxy by its pid
file, the single-user servers and their kernels as the hub's descendants and as processes of the
course's users. Nothing is found or stopped by its name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from autograder.hub.errors import CourseError


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on ``host:port`` (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(avoid: set[int] = frozenset()) -> int:
    """A loopback port nothing listens on now (and not in ``avoid``)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


# ----------------------------------------------------------------------------- /proc


def alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _processes() -> list[tuple[int, int, int]]:
    """``(pid, parent pid, uid)`` of every process."""
    rows = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            rows.append((int(entry), int(fields[1]), uid))
    return rows


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid``."""
    children: dict[int, list[int]] = {}
    for child, parent, _ in _processes():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_of(uids: set[int]) -> list[int]:
    """Living processes run by the given users."""
    return [pid for pid, _, uid in _processes() if uid in uids]


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- the hub


def start_hub(jupyterhub: Path, config: Path, workdir: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``jupyterhub -f config`` in the background (its own session: it outlives this process)."""
    with open(log, "ab") as out:
        return subprocess.Popen([str(jupyterhub), "-f", str(config)], cwd=workdir, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def hub_api(url: str, timeout: float = 5.0) -> dict | None:
    """The hub's ``/hub/api/`` answer (its version) at ``url``, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/hub/api/", timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_for_hub(process: subprocess.Popen, url: str, log: Path, timeout: float = 90.0) -> dict:
    """Wait until the hub answers at ``url``; raise with the log's end when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = hub_api(url, timeout=2.0)
        if answer is not None:
            return answer
        if process.poll() is not None:
            raise CourseError(f"the hub exited ({process.returncode}) before answering at {url}; the end of "
                              f"its log {log}:\n{_tail(log)}")
        time.sleep(0.3)
    raise CourseError(f"the hub did not answer at {url} within {timeout:.0f} s; the end of its log {log}:\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def terminate(pids: list[int], grace: float) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` seconds, SIGKILL whatever still runs; returns the pids killed."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in killed):
        time.sleep(0.1)
    for pid in pids:
        _reap(pid)
    return killed


def _reap(pid: int) -> None:
    """Collect the exit status of our own child (the hub, when up() ran in this process): no zombie left."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
