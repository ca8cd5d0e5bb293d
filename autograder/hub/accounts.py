"""The course's system users: creating them, their demo passwords, their access to the kit's Python.

nbgrader's exchange tells students apart by their Unix identity, and JupyterHub's
LocalProcessSpawner starts each user's server as that user, so every login is a real system user
(created with ``useradd``, hence root). A user the course created carries :data:`layout.MARKER` in
its comment; an existing user without it is never taken over.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

from autograder.hub.errors import CourseError
from autograder.hub.layout import GROUP, MARKER, STUDENTS_GROUP, home_of


def runuser() -> str:
    """The path of ``runuser`` (util-linux), which runs a command as another user."""
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise CourseError("`runuser` (util-linux) is missing: it runs the course's set-up as its users")
    return found


def require_root(action: str = "up") -> None:
    """Raise :class:`CourseError` unless this process is root; ``action``: "up", "down" or "purge"."""
    if os.geteuid() == 0:
        return
    if action == "up":
        raise CourseError(
            "bringing the course up needs root: the kit creates system users (one per login: nbgrader's exchange "
            "tells students apart by their Unix identity) and starts each user's server as that user. Run it as "
            "root, e.g. `sudo make course` or `sudo .venv/bin/python -m autograder course up`.")
    what = "stopping the course" if action == "down" else "removing the course's users"
    raise CourseError(f"{what} needs root: the hub runs as root and the servers as the course's users. "
                      f"Run `sudo make course-down` or `sudo .venv/bin/python -m autograder course down`.")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise CourseError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")


def ensure_group(name: str = GROUP) -> None:
    """Create the group ``name`` (the course's :data:`layout.GROUP`, the students'
    :data:`layout.STUDENTS_GROUP`) unless it exists."""
    try:
        grp.getgrnam(name)
    except KeyError:
        _run(["groupadd", name])


def is_course_user(name: str) -> bool:
    """True when ``name`` is a system user that the course created (its comment holds the marker)."""
    try:
        return MARKER in pwd.getpwnam(name).pw_gecos
    except KeyError:
        return False


def ensure_user(name: str, student: bool = True) -> bool:
    """Create the system user ``name`` (home ``/home/<name>``, mode 700, in the course's group and, for
    a student, in the students' group, which the repository's instructor side is closed to).

    Returns True when it was created, False when the course's user already existed (its groups set
    again: an instructor who was a student before leaves the students' group). Refuses a user of
    that name that the course did not create.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is not None and MARKER not in entry.pw_gecos:
        raise CourseError(f"a system user {name!r} exists and was not created by the course (its comment "
                          f"lacks {MARKER!r}); the course will not take it over. Remove it or use another machine.")
    created = entry is None
    wanted = [GROUP, STUDENTS_GROUP] if student else [GROUP]
    if created:
        _run(["useradd", "--create-home", "--home-dir", str(home_of(name)), "--shell", "/bin/bash",
              "--comment", MARKER, "--groups", ",".join(wanted), name])
    else:
        groups = {g.gr_name for g in grp.getgrall() if name in g.gr_mem}
        missing = [g for g in wanted if g not in groups]
        if missing:
            _run(["usermod", "--append", "--groups", ",".join(missing), name])
        if not student and STUDENTS_GROUP in groups:
            _run(["gpasswd", "--delete", name, STUDENTS_GROUP])
    home = Path(pwd.getpwnam(name).pw_dir)
    if not home.is_dir():
        home.mkdir(parents=True)
        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return created


def remove_user(name: str) -> None:
    """Delete the course's user ``name`` and its home (only a user the course created)."""
    if is_course_user(name):
        _run(["userdel", "--remove", name])


def remove_group(name: str = GROUP) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    _run(["groupdel", name])


def uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def chown_tree(path: Path, user: str) -> None:
    """Give ``path`` and everything below it to ``user`` (and the user's own group)."""
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(path):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


# ----------------------------------------------------------------------------- passwords


def load_passwords(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.is_file() else {}


def ensure_passwords(path: Path, users: list[str]) -> dict[str, str]:
    """``{user: password}`` for ``users``: the ones in ``path`` kept, a new random one for each other.

    The file (root only, mode 600) is what the hub's authenticator reads; it keeps the passwords of
    users left out of this run, so that a later run with more students gives them back.
    """
    passwords = load_passwords(path)
    for user in users:
        passwords.setdefault(user, secrets.token_urlsafe(9))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(passwords, handle, indent=1, sort_keys=True)
    os.chmod(path, 0o600)
    return {user: passwords[user] for user in users}


# ----------------------------------------------------------------------------- access to the kit


def blocked_folders(path: Path) -> list[Path]:
    """The folders above ``path`` (itself included when a folder) that others may not enter (no ``o+x``)."""
    path = path.resolve()
    chain = [*reversed(path.parents), path] if path.is_dir() else [*reversed(path.parents)]
    return [p for p in chain if not os.stat(p).st_mode & stat.S_IXOTH]


def grant_traverse(paths: list[Path]) -> list[Path]:
    """Let the course's group enter every folder on the way to ``paths`` (a POSIX ACL ``g:GROUP:x``).

    Only entering (``x``), never listing or reading, and only for the course's group: e.g. a
    Python installed under ``/root/.pyenv`` (``/root`` is mode 700). Returns the folders changed
    (recorded in ``course.json``; ``down --purge`` takes the entries back).
    """
    folders = sorted({folder for path in paths for folder in blocked_folders(path)})
    if folders and shutil.which("setfacl") is None:
        raise CourseError(
            f"the course's users cannot enter {', '.join(map(str, folders))} on the way to the kit's Python "
            f"({paths[0]}); the kit grants its group entry with a POSIX ACL, which needs `setfacl`: install "
            f"it (apt-get install acl) or make those folders enterable (chmod o+x).")
    for folder in folders:
        _run(["setfacl", "-m", f"g:{GROUP}:x", str(folder)])
    return folders


def revoke_traverse(folders: list[str]) -> None:
    """Take back the ACL entries :func:`grant_traverse` added."""
    remove_acl_entries(GROUP, folders)


def remove_acl_entries(group: str, paths: Iterable[str]) -> None:
    """Remove ``group``'s ACL entry from each of ``paths`` that exists; where no other named entry is
    left, drop the ACL altogether (``setfacl -x`` leaves a mask behind, and ``ls -l`` a ``+``)."""
    if shutil.which("setfacl") is None:
        return
    present = [p for p in paths if Path(p).exists() or Path(p).is_symlink()]
    for start in range(0, len(present), 200):
        chunk = present[start:start + 200]
        subprocess.run(["setfacl", "-x", f"g:{group}", "--", *chunk], capture_output=True)
        for path in chunk:
            acl = subprocess.run(["getfacl", "--omit-header", "--absolute-names", "--", path], capture_output=True,
                                 text=True).stdout.split()
            named = [e for e in acl if e.count(":") == 2 and e.split(":")[0] in ("user", "group") and e.split(":")[1]]
            if not named and not any(e.startswith("default:") for e in acl):
                subprocess.run(["setfacl", "-b", "--", path], capture_output=True)


#: Run as a student by :func:`probe_python`: what a student's server and kernel import, the sandbox's
#: look-up of the grader's package (labtools.sandbox), then the grader's package itself, which must fail.
PROBE = """\
import importlib.util, labtools.paths, nbgrader, jupyterhub, jupyter_server
importlib.util.find_spec("autograder")  # labtools.sandbox's look-up, to hide it: must answer, not raise
print(labtools.paths.models_dir())
try:
    import autograder
except Exception:
    pass
else:
    print("GRADER-IMPORTABLE", list(autograder.__path__))
"""


def probe_python(user: str, python: Path, env: dict[str, str]) -> None:
    """Run the kit's Python as the student ``user``: what a student's server needs must import, the
    grader's package ``autograder`` must not (its reference solutions would be the students' to read);
    raise with what failed."""
    result = subprocess.run([runuser(), "-u", user, "--", str(python), "-c", PROBE], capture_output=True,
                            text=True, env=env, cwd="/")
    if result.returncode != 0:
        raise CourseError(f"the user {user!r} cannot run the kit's Python {python} (permissions on the "
                          f"virtual environment or the repository?):\n{result.stderr.strip()[-2000:]}")
    if "GRADER-IMPORTABLE" in result.stdout:
        where = result.stdout.split("GRADER-IMPORTABLE", 1)[1].strip()
        raise CourseError(f"a student ({user!r}) can import the grader's package autograder from {where}, reference "
                          f"solutions included. The course closes the repository's autograder/ to the students' group "
                          f"(POSIX ACLs); a copy of it elsewhere, as a non-editable install leaves in site-packages, "
                          f"stays open: install the kit with `pip install -e .`.")
