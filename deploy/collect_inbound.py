"""Take one lab's submissions out of the nbgrader exchange, in the layout ``python -m autograder grade`` reads.

The exchange's ``<root>/<course>/inbound/`` holds one folder per submission, named
``<student>+<lab>+<timestamp>[+<random>]`` by ``nbgrader submit``: every resubmission of every lab.
``autograder grade`` reads nbgrader's ``submitted/<student>/<lab>/`` layout instead (pointed at the
inbound folder itself it would take each resubmission for a student of its own and grade other labs'
notebooks as this one), so the grading Job runs this first (deploy/grade-job.yaml)::

    python deploy/collect_inbound.py LAB INBOUND DEST [--deadline "2026-10-01 23:59:59 UTC"]

For each student it keeps the latest submission of LAB (with ``--deadline``: the latest one at or before
it, else the latest one, with a note), as ``nbgrader collect`` does, and copies its regular files into
``DEST/<student>/<LAB>/``. DEST is emptied first. The exchange is written by students, so its content
is untrusted: symbolic links are never followed nor copied, nor are devices or pipes; a submission
stops being copied at :data:`MAX_FILES` files or :data:`MAX_BYTES` bytes; a folder whose name does not
parse is skipped. What was left out is printed and written to ``DEST.collected.txt``. Nothing is run.

Standard library only: it runs in the grader image before anything of the kit is imported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Limits on one submission (the grader's own sandbox limits a worker to 1 GB and 10,000 files).
MAX_FILES = 10_000
MAX_BYTES = 1_000_000_000
#: nbgrader's default ``Exchange.timestamp_format`` (``Exchange.timezone`` defaults to UTC).
TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S.%f %Z", "%Y-%m-%d %H:%M:%S %Z")


@dataclass
class Submission:
    student: str
    lab: str
    timestamp: dt.datetime
    folder: Path
    notes: list[str] = field(default_factory=list)


def parse_timestamp(text: str) -> dt.datetime | None:
    """A naive UTC datetime from nbgrader's timestamp (``2026-05-01 12:00:00.123456 UTC``), or None."""
    for form in TIMESTAMP_FORMATS:
        try:
            parsed = dt.datetime.strptime(text, form)
        except ValueError:
            continue
        if text.rsplit(" ", 1)[-1] not in ("UTC", "GMT"):
            return None  # another zone: nbgrader's default is UTC, a course that changes it must adapt this
        return parsed
    return None


def parse_name(name: str) -> tuple[str, str, str] | None:
    """``(student, lab, timestamp text)`` of an inbound folder name, or None when it is not one.

    nbgrader splits from the right (``rsplit('+', 3)``) so that a student id may hold a ``+``.
    """
    parts = name.rsplit("+", 3)
    if len(parts) == 4:
        student, lab, stamp, _random = parts
    else:
        parts = name.rsplit("+", 2)
        if len(parts) != 3:
            return None
        student, lab, stamp = parts
    if student in ("", ".", "..") or student.startswith(".") or "/" in student or "\0" in student:
        return None
    return student, lab, stamp


def find(lab: str, inbound: Path, deadline: dt.datetime | None = None) -> tuple[list[Submission], list[str]]:
    """The submission to grade of each student of ``lab`` (sorted by student), and notes on skipped folders."""
    skipped = []
    latest: dict[str, list[Submission]] = {}
    with os.scandir(inbound) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.is_dir(follow_symlinks=False):
                skipped.append(f"{entry.name}: not a folder (or a symbolic link): skipped")
                continue
            parsed = parse_name(entry.name)
            if parsed is None:
                skipped.append(f"{entry.name}: not <student>+<lab>+<timestamp>[+<random>]: skipped")
                continue
            student, entry_lab, stamp = parsed
            if entry_lab != lab:
                continue
            when = parse_timestamp(stamp)
            if when is None:
                skipped.append(f"{entry.name}: timestamp {stamp!r} not understood: skipped")
                continue
            latest.setdefault(student, []).append(Submission(student, lab, when, Path(entry.path)))
    chosen = []
    for student in sorted(latest):
        versions = sorted(latest[student], key=lambda s: (s.timestamp, s.folder.name))
        pick = versions[-1]
        if deadline is not None:
            on_time = [s for s in versions if s.timestamp <= deadline]
            if on_time:
                pick = on_time[-1]
            else:
                pick.notes.append(f"every submission came after the deadline; the latest, {pick.timestamp} UTC, is graded")
        if len(versions) > 1:
            pick.notes.append(f"{len(versions)} submissions; graded the one of {pick.timestamp} UTC")
        chosen.append(pick)
    return chosen, skipped


def copy_regular_files(source: Path, target: Path, notes: list[str]) -> tuple[int, int]:
    """Copy the regular files under ``source`` into ``target`` without following any link; (files, bytes)."""
    files = size = 0
    target.mkdir(parents=True, exist_ok=True)
    for folder, dirs, names in os.walk(source, followlinks=False):
        dirs.sort()
        relative = Path(folder).relative_to(source)
        kept_dirs = []
        for name in dirs:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if stat.S_ISDIR(mode):
                kept_dirs.append(name)
            else:
                notes.append(f"{relative / name}: a symbolic link: not copied")
        dirs[:] = kept_dirs
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in sorted(names):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                notes.append(f"{relative / name}: {kind}: not copied")
                continue
            if files + 1 > MAX_FILES or size + info.st_size > MAX_BYTES:
                notes.append(f"{relative / name} and what follows: over {MAX_FILES} files or {MAX_BYTES} bytes: not copied")
                return files, size
            # it was a regular file at lstat: refuse a link (O_NOFOLLOW) or a pipe (O_NONBLOCK, then fstat)
            # put in its place since
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as src:
                if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                    notes.append(f"{relative / name}: not a regular file: not copied")
                    continue
                with open(target / relative / name, "wb") as dst:
                    remaining = info.st_size  # no more than lstat said: the file may grow meanwhile
                    while remaining > 0:
                        chunk = src.read(min(1 << 20, remaining))
                        if not chunk:
                            break
                        dst.write(chunk)
                        remaining -= len(chunk)
            files, size = files + 1, size + info.st_size
    return files, size


def collect(lab: str, inbound: Path, dest: Path, deadline: dt.datetime | None = None) -> list[str]:
    """Empty ``dest`` and fill it with ``<student>/<lab>/``; return the report's lines."""
    if not inbound.is_dir():
        raise SystemExit(f"no inbound folder {inbound}: has the course released {lab} and has anyone submitted?")
    if dest.is_symlink():
        raise SystemExit(f"{dest} is a symbolic link: refused")
    chosen, skipped = find(lab, inbound, deadline)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    lines = [f"{lab}: {len(chosen)} students from {inbound}"]
    for submission in chosen:
        files, size = copy_regular_files(submission.folder, dest / submission.student / lab, submission.notes)
        lines.append(f"{submission.student}: {submission.folder.name} ({files} files, {size} bytes)")
        lines += [f"  {note}" for note in submission.notes]
    lines += skipped
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lab", help="lab id, e.g. lab1_retrieval")
    parser.add_argument("inbound", type=Path, help="the exchange's <root>/<course>/inbound folder")
    parser.add_argument("dest", type=Path, help="folder to write <student>/<lab>/ into (emptied first)")
    parser.add_argument("--deadline", default=None, help='grade the latest submission at or before "YYYY-MM-DD HH:MM:SS UTC"')
    args = parser.parse_args(argv)
    deadline = None
    if args.deadline:
        deadline = parse_timestamp(args.deadline)
        if deadline is None:
            parser.error(f"--deadline {args.deadline!r}: write it as 'YYYY-MM-DD HH:MM:SS UTC'")
    lines = collect(args.lab, args.inbound, args.dest, deadline)
    report = "\n".join(lines) + "\n"
    Path(f"{args.dest}.collected.txt").write_text(report)
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
