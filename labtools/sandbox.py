"""The OS sandbox of student code: bubblewrap (``bwrap``) command lines and a fork limit.

A :class:`Jail` says what a sandboxed process may see and write; :meth:`Jail.command` wraps a
command line in ``bwrap`` so that, inside:

* the system (``/usr`` and the loader's files) and the Python installation (the interpreter's
  prefix, the virtual environment, site-packages, the ``labtools`` package) are read-only, and
  the grader's package ``autograder`` is hidden even where it is installed beside them;
* only the folders of :attr:`Jail.writable` (this one submission's scratch) can be written, at
  their own paths, plus a fresh size-limited ``/tmp``; :attr:`Jail.readable` adds read-only
  folders (the data root, the data cache, the shipped checkpoints) and :attr:`Jail.masked`
  hides paths inside them (graded deliverables);
* there is no network (its own empty network namespace), its own PID, IPC and UTS namespaces
  (no other process of the machine is visible or can be signalled), its own user namespace
  with an unprivileged user, no capabilities, a cleared environment (:attr:`Jail.env` only);
  it dies with the process that started it.

``working_copy`` mounts the working directory as a size-limited tmpfs in which the folder's
entries are bound read-only: what the code writes there stays inside the sandbox and vanishes
with it (the autograde kernel). Symbolic links of that folder are not bound.

:class:`ForkLimit` caps the number of processes of a sandbox with a ``pids`` cgroup when the
machine lets this process create one (cgroup v1 or v2, as root); :func:`status` says what is
in force. ``python -m labtools.sandbox`` prints it: the way an instructor checks that the sandbox
is active. :func:`student_env`, :func:`jailed_env` and :func:`shared_inputs` give the environment
and the read-only folders of sandboxed student code; the module imports neither torch nor
jupyter, so that every process that starts a sandbox stays light.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Jail", "ForkLimit", "SandboxUnavailable", "unavailable_reason", "require", "status", "INSTALL_HINT",
           "student_env", "jailed_env", "shared_inputs", "disk_usage"]

INSTALL_HINT = ("install bubblewrap, the sandbox tool Flatpak uses (Debian/Ubuntu: sudo apt-get install bubblewrap; "
                "Fedora: sudo dnf install bubblewrap)")
#: Size of the fresh ``/tmp`` (and ``/dev/shm``) inside a sandbox.
TMP_BYTES = 512 << 20
#: The unprivileged user and group the sandboxed code runs as.
SANDBOX_UID = 1000


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces on this machine."""


def _system_binds() -> list[str]:
    """Read-only system paths: /usr, the top-level links into it, the loader's cache, certificates."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/ssl",
                 "/etc/localtime", "/etc/fonts"):
        args += ["--ro-bind-try", path, path]
    return args


def _python_paths() -> list[Path]:
    """The folders the interpreter imports from: prefixes, site-packages and the labtools package."""
    paths = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths |= {Path(p) for p in site.getsitepackages()}
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        paths.add(Path(site.getusersitepackages()))
    paths.add(Path(__file__).resolve().parent)  # the labtools package (an editable install points here)
    real = {Path(os.path.realpath(p)) for p in paths if os.path.isdir(p)}
    return sorted(real | {p for p in paths if os.path.isdir(p)})


def _grader_packages() -> list[Path]:
    """Folders of the grader's own package wherever it is installed (hidden in every sandbox)."""
    try:
        spec = importlib.util.find_spec("autograder")
    except (ImportError, ValueError):
        return []
    locations = list(spec.submodule_search_locations or []) if spec else []
    return [Path(os.path.realpath(p)) for p in locations]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass
class Jail:
    """What one sandboxed process may see and write (see the module docstring)."""

    writable: list[Path] = field(default_factory=list)
    readable: list[Path] = field(default_factory=list)
    masked: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    #: mount ``workdir`` as a tmpfs of ``copy_bytes`` holding read-only binds of its entries
    working_copy: bool = False
    copy_bytes: int = 1 << 30

    def command(self, argv: list[str], new_session: bool = True) -> list[str]:
        """``argv`` wrapped in ``bwrap`` with this jail's mounts, namespaces and environment.

        ``new_session``: the sandboxed command starts its own session, so that it cannot reach the
        terminal of the grader (off for a kernel, whose interrupts arrive by process group).
        """
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
        args = [bwrap, *_system_binds(), "--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs",
                "/tmp", "--size", str(TMP_BYTES), "--tmpfs", "/dev/shm"]
        bound: list[Path] = []  # after /tmp: a checkout, its venv or a data cache may live under /tmp
        for path in _python_paths() + [Path(os.path.abspath(p)) for p in self.readable]:
            if os.path.exists(path) and not any(_inside(Path(path), b) for b in bound):
                args += ["--ro-bind", str(path), str(path)]
                bound.append(Path(path))
        for folder in self.writable:
            folder = os.path.abspath(folder)
            args += ["--bind", folder, folder]
        if self.working_copy and self.workdir is not None:
            args += self._working_copy()
        for path in _grader_packages():
            if any(_inside(path, b) for b in bound):
                args += ["--tmpfs", str(path)]
        for path in self.masked:
            path = Path(os.path.abspath(path))
            if path.is_dir():
                args += ["--tmpfs", str(path)]
            elif path.exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        args += ["--remount-ro", "/"]  # the folders bwrap made for its mount points: no unbounded tmpfs to fill
        if self.workdir is not None:
            args += ["--chdir", os.path.abspath(self.workdir)]
        args += ["--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                 "--hostname", "sandbox", "--die-with-parent", "--cap-drop", "ALL", "--clearenv"]
        if new_session:
            args.append("--new-session")
        for name, value in self.env.items():
            args += ["--setenv", name, str(value)]
        return args + ["--", *argv]

    def _working_copy(self) -> list[str]:
        workdir = Path(os.path.abspath(self.workdir))
        args = ["--size", str(int(self.copy_bytes)), "--tmpfs", str(workdir)]
        for entry in sorted(workdir.iterdir()):
            if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
                continue  # a link could point anywhere on the grader's machine
            args += ["--ro-bind", str(entry), str(entry)]
        return args


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """``None`` when bubblewrap runs here; otherwise why not, with what to install or enable."""
    if shutil.which("bwrap") is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    command = Jail().command(["/bin/sh", "-c", "exit 0"])
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap does not start: {error}"
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no message"])[-1]
        return (f"bubblewrap cannot create its sandbox on this machine ({last}); it needs unprivileged user "
                "namespaces (sysctl kernel.unprivileged_userns_clone=1) or root")
    return None


def require() -> None:
    """Raise :class:`SandboxUnavailable`, saying what to install, unless the sandbox works here."""
    reason = unavailable_reason()
    if reason:
        raise SandboxUnavailable(reason)


# ----------------------------------------------------------------------------------------------
# a fork limit


def _pids_controller() -> Path | None:
    """A cgroup folder with the ``pids`` controller in which this process may create groups."""
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").is_file() and os.access(v1, os.W_OK):
        return v1
    v2 = Path("/sys/fs/cgroup")
    try:
        if "pids" in (v2 / "cgroup.controllers").read_text().split() and os.access(v2, os.W_OK):
            return v2
    except OSError:
        pass
    return None


_GROUPS = itertools.count()


class ForkLimit:
    """A ``pids`` cgroup holding at most ``max_pids`` processes, or nothing where none can be made.

    :meth:`wrap` prefixes a command line so that its process joins the group before it starts;
    :meth:`close` removes the group once its processes are gone.
    """

    def __init__(self, max_pids: int = 256):
        self.path: Path | None = None
        root = _pids_controller()
        if root is None:
            return
        path = root / f"metric-lab-{os.getpid()}-{next(_GROUPS)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            if path.is_dir():
                self._remove(path)
            return
        self.path = path

    def wrap(self, argv: list[str]) -> list[str]:
        if self.path is None:
            return argv
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" || exit 126; exec "$@"', str(self.path), *argv]

    def close(self) -> None:
        if self.path is not None:
            self._remove(self.path)
            self.path = None

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            for pid in (path / "cgroup.procs").read_text().split():  # leftovers of a killed sandbox
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass
            path.rmdir()
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------
# what sandboxed student code gets


def student_env() -> dict[str, str]:
    """The environment of student code: nothing of the caller's but the data root and the basics."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "LABTOOLS_FAST": "1",
        "TQDM_DISABLE": "1",
    }
    for name in ("LABTOOLS_DATA", "XDG_CACHE_HOME", "VIRTUAL_ENV", "LABTOOLS_MODELS"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def shared_inputs() -> list[Path]:
    """What sandboxed student code may read besides Python: the data root, the data cache and the
    shipped checkpoints (those that exist)."""
    from labtools import paths

    found = [paths.resolve_data_root(), paths.CACHE_ROOT]
    try:
        found.append(paths.models_dir())
    except FileNotFoundError:
        pass
    return [Path(os.path.realpath(p)) for p in found if os.path.isdir(p)]


def jailed_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` as it must read inside a jail: a private home, the data cache and root named explicitly."""
    from labtools import paths

    return {**env, "HOME": "/tmp", "XDG_CACHE_HOME": str(paths.CACHE_ROOT.parent),
            "LABTOOLS_DATA": str(paths.resolve_data_root()), "MPLCONFIGDIR": "/tmp/matplotlib"}


def disk_usage(folder: Path, limit_entries: int = 10_000) -> tuple[int, int]:
    """Bytes and entries under ``folder`` (counting stops past ``limit_entries``): what a sandbox
    left in the one folder it may write."""
    total = entries = 0
    for root, dirs, files in os.walk(folder):
        entries += len(dirs) + len(files)
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
        if entries > limit_entries:
            break
    return total, entries


def status() -> dict[str, str]:
    """What is in force here: ``sandbox`` (``"bubblewrap"`` or why not) and ``fork_limit``."""
    reason = unavailable_reason()
    controller = _pids_controller()
    return {"sandbox": "bubblewrap" if reason is None else f"unavailable: {reason}",
            "fork_limit": f"pids cgroup under {controller}" if controller else
                          "none (no writable pids cgroup: run the grader as root, or with a delegated cgroup)"}


def main() -> int:
    state = status()
    for key, value in state.items():
        print(f"{key}: {value}")
    return 0 if state["sandbox"] == "bubblewrap" else 1


if __name__ == "__main__":
    sys.exit(main())
