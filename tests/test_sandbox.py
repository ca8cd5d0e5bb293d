"""The OS sandbox (labtools/sandbox.py) and the sandboxed autograde kernel (autograder/grading/kernel.py).

Each test runs a small Python program inside a :class:`Jail` and looks at what it could see, write
and reach. Skipped where bubblewrap cannot run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.paths import REPO
from labtools import sandbox


pytestmark = pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                reason=f"no sandbox: {sandbox.unavailable_reason()}")


def jailed(code: str, jail: sandbox.Jail, timeout: float = 60) -> dict:
    """Run ``code`` (which prints one JSON line) in ``jail``; its printed value."""
    command = jail.command([sys.executable, "-c", code])
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={"PATH": os.environ["PATH"]},
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


PROBE = r"""
import json, os, socket, sys
def can_read(path):
    try:
        open(path, "rb").read(1); return True
    except OSError:
        return False
def can_write(path):
    try:
        open(path, "w").write("x"); return True
    except OSError:
        return False
try:
    import autograder; grader = autograder.__file__
except ImportError:
    grader = None
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9), timeout=2); net = True
except OSError:
    net = False
import labtools
print(json.dumps({
    "grader": grader, "labtools": labtools.__file__, "net": net, "uid": os.getuid(), "env": dict(os.environ),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "read_reference": can_read(%(reference)r), "read_tests": can_read(%(tests)r),
    "read_readable": can_read(%(readable)r), "read_masked": can_read(%(masked)r),
    "write_writable": can_write(%(writable)r), "write_readable": can_write(%(readable)r),
    "write_repo": can_write(%(repo)r), "write_tmp": can_write("/tmp/x"),
}))
"""


@pytest.fixture
def layout(tmp_path):
    readable, writable = tmp_path / "readable", tmp_path / "writable"
    readable.mkdir()
    writable.mkdir()
    (readable / "data.txt").write_text("data")
    (readable / "deliverable.pt").write_text("the instructor's network")
    return readable, writable


def test_the_jail_shows_only_what_it_binds(layout):
    readable, writable = layout
    server = socket.create_server(("127.0.0.1", 0))
    try:
        jail = sandbox.Jail(writable=[writable], readable=[readable], masked=[readable / "deliverable.pt"],
                            env={"PATH": "/usr/bin:/bin", "ONLY": "this"})
        code = PROBE % {"reference": str(REPO / "autograder" / "reference" / "lab1.py"),
                        "tests": str(REPO / "tests" / "test_sandbox.py"), "readable": str(readable / "data.txt"),
                        "masked": str(readable / "deliverable.pt"), "writable": str(writable / "out.txt"),
                        "repo": str(REPO / "pwned.txt")}
        seen = jailed(code.replace("int(sys.argv[1]) if len(sys.argv) > 1 else 9", str(server.getsockname()[1])),
                      jail)
    finally:
        server.close()
    assert seen["grader"] is None and seen["labtools"].startswith(str(REPO / "labtools"))
    assert not seen["read_reference"] and not seen["read_tests"]
    assert seen["read_readable"] and not seen["write_readable"]
    assert seen["write_writable"] and (writable / "out.txt").read_text() == "x"
    # a checkout under /tmp has its stub folders in the sandbox's own /tmp: a write there stays inside
    assert not (REPO / "pwned.txt").exists()
    assert not seen["write_repo"] or str(REPO).startswith("/tmp/")
    assert seen["write_tmp"]  # its own /tmp, not the machine's
    assert not seen["net"]
    assert seen["uid"] == sandbox.SANDBOX_UID
    assert max(seen["pids"]) < 10  # its own PID namespace: the grader's processes are not there
    extra = {"PWD", "LC_CTYPE"}  # set by bwrap and by Python's C-locale coercion
    assert {k: v for k, v in seen["env"].items() if k not in extra} == {"PATH": "/usr/bin:/bin", "ONLY": "this"}


def test_a_masked_file_cannot_be_read(layout):
    readable, writable = layout
    jail = sandbox.Jail(readable=[readable], masked=[readable / "deliverable.pt"], env={"PATH": "/usr/bin"})
    code = f"""
import json
try:
    text = open({str(readable / 'deliverable.pt')!r}).read()
except OSError as error:
    text = type(error).__name__
print(json.dumps([text, open({str(readable / 'data.txt')!r}).read()]))
"""
    assert jailed(code, jail) == ["PermissionError", "data"]


def test_a_working_copy_is_private_and_drops_links(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "submitted.txt").write_text("mine")
    os.symlink(REPO / "autograder" / "reference" / "lab1.py", work / "link.py")
    jail = sandbox.Jail(workdir=work, working_copy=True, copy_bytes=8 << 20, env={"PATH": "/usr/bin"})
    code = r"""
import json, os
found = sorted(os.listdir("."))
open("new.txt", "w").write("scratch")
try:
    open("submitted.txt", "w").write("changed"); overwritten = True
except OSError:
    overwritten = False
try:
    open("big.bin", "wb").write(b"0" * (16 << 20)); big = True
except OSError:
    big = False
print(json.dumps({"found": found, "overwritten": overwritten, "big": big}))
"""
    seen = jailed(code, jail)
    assert seen == {"found": ["submitted.txt"], "overwritten": False, "big": False}
    assert sorted(p.name for p in work.iterdir()) == ["link.py", "submitted.txt"]
    assert (work / "submitted.txt").read_text() == "mine"


def test_the_fork_limit_stops_a_fork_bomb():
    limit = sandbox.ForkLimit(12)
    if limit.path is None:
        pytest.skip("no writable pids cgroup here")
    code = r"""
import json, os, time
made = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(5); os._exit(0)
        made += 1
except OSError:
    pass
print(json.dumps(made))
"""
    try:
        command = limit.wrap(sandbox.Jail(env={"PATH": "/usr/bin"}).command([sys.executable, "-c", code]))
        run = subprocess.run(command, capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
        made = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        limit.close()
    assert made < 12
    assert limit.path is None


def test_status_and_require_name_what_to_install(monkeypatch):
    assert sandbox.status()["sandbox"] == "bubblewrap"
    sandbox.require()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.unavailable_reason.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
            sandbox.require()
        assert sandbox.status()["sandbox"].startswith("unavailable: bubblewrap (bwrap) is not installed")
    finally:
        sandbox.unavailable_reason.cache_clear()


def test_students_checks_run_without_a_sandbox(monkeypatch, tmp_path):
    """``python -m labtools.checks`` (limits "auto") runs its worker unconfined where bwrap is missing."""
    import torch

    from labtools.checks.engine import SandboxLimits, run_sandboxed
    from labtools.checks.registry import Call

    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: "bubblewrap (bwrap) is not installed")
    assert not SandboxLimits().sandboxed()
    with pytest.raises(sandbox.SandboxUnavailable):
        SandboxLimits(os_sandbox="required").sandboxed()
    runner = run_sandboxed("def double(x):\n    return 2 * x\n", workroot=tmp_path)
    outcome = runner([Call("double", [torch.ones(2)])])[0]
    runner.cleanup()
    assert outcome.ok and outcome.value.tolist() == [2.0, 2.0]


def test_the_autograde_kernel_runs_in_the_sandbox(tmp_path):
    """A kernel of SandboxedKernelManager answers over ipc, sees the submitted files read-only, and
    neither the grader's files nor its own folder on disk."""
    import asyncio

    from autograder.grading.kernel import SandboxedKernelManager

    work = tmp_path / "work"
    work.mkdir()
    (work / "triplet_net.pt").write_bytes(b"submitted")
    code = ("import os, json; print(json.dumps([sorted(os.listdir('.')), os.path.exists("
            f"{str(REPO / 'autograder')!r}), open('new.txt', 'w').write('x'), os.getuid()]))")

    async def run() -> str:
        manager = SandboxedKernelManager(kernel_name="python3")
        await manager.start_kernel(cwd=str(work))
        outputs = []
        try:
            client = manager.client()
            client.start_channels()
            await client.wait_for_ready(timeout=60)
            await client.execute_interactive(code, timeout=60, output_hook=outputs.append)
            client.stop_channels()
        finally:
            await manager.shutdown_kernel(now=True)
        runtime = manager._runtime
        assert not runtime.exists()  # its connection folder is removed with it
        return "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")

    text = asyncio.run(run())
    assert json.loads(text.strip()) == [["triplet_net.pt"], False, 1, sandbox.SANDBOX_UID]
    assert sorted(p.name for p in work.iterdir()) == ["triplet_net.pt"]  # what it wrote stayed inside


def _grade_cli(tmp_path, *extra, path=None, solution=False, **environ):
    """``python -m autograder grade`` of a class of one: a folder without a notebook, or a solution."""
    folder = tmp_path / "submissions" / ("solution" if solution else "nobody")
    folder.mkdir(parents=True)
    if solution:
        sys.path.insert(0, str(Path(__file__).parent / "submissions"))
        import build

        build.write_submission(folder, "lab1_retrieval")
    else:
        (folder / "notes.txt").write_text("no notebook here")
    env = {**os.environ, "PYTHONPATH": str(REPO), **environ}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "autograder", "grade", "lab1_retrieval", str(tmp_path / "submissions"),
                           "--out", str(tmp_path / "out"), "--jobs", "1", *extra], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_grade_refuses_to_run_without_the_sandbox(tmp_path):
    run = _grade_cli(tmp_path, path=str(tmp_path / "no-such-folder"))
    assert run.returncode != 0
    assert "apt-get install bubblewrap" in run.stderr and "--no-sandbox" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_grading_from_an_empty_data_cache_finishes(tmp_path, require_mnist):
    """The grader stages and decodes the data first; done in its own process, torch's threads would
    hang the pool's forked workers (a fresh clone's CI did)."""
    run = _grade_cli(tmp_path, solution=True, XDG_CACHE_HOME=str(tmp_path / "empty-cache"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "empty-cache" / "metric-lab" / "staged").is_dir()
    assert "solution                     4.00" in run.stdout


def test_grading_without_the_sandbox_says_so_on_every_row(tmp_path):
    import csv

    run = _grade_cli(tmp_path, "--no-sandbox")
    assert run.returncode == 0, run.stderr[-3000:]
    with open(tmp_path / "out" / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["sandbox"] == "not sandboxed" for row in rows)
    total = next(row for row in rows if row["check"] == "TOTAL")
    assert total["message"].startswith("not sandboxed")
    assert "NOT SANDBOXED" in run.stdout and "nobody" in run.stdout


def test_students_check_their_work_with_the_graders_sandbox(tmp_path):
    """``python -m labtools.checks`` on a saved solution: every public check passes, in the sandbox."""
    sys.path.insert(0, str(Path(__file__).parent / "submissions"))
    import build

    path = build.write_submission(tmp_path / "me", "lab1_retrieval")
    run = subprocess.run([sys.executable, "-m", "labtools.checks", str(path)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "public checks: 1.6/1.6 points" in run.stdout
    assert "ran in the OS sandbox (bubblewrap)" in run.stdout
