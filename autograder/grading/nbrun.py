"""``python -m autograder.grading.nbrun <lab> <student>``: nbgrader autograde, then generate_feedback.

Both nbgrader applications run in this one process (run from the course folder), which saves a
Python start and nbgrader's imports per submission. Exit status: 0 when both succeeded, 1 when
autograde failed (no feedback then), 2 when only generate_feedback failed.
``python -m autograder.grading.nbrun <lab> --generate`` runs ``generate_assignment`` instead.

The grader calls :func:`start_forked` and :func:`wait_forked`: :func:`preload` imports nbgrader
once in the grader, and each run is a forked child of it, with its own folder, environment, limits,
log and nbgrader settings (a ``traitlets`` Config over the course's ``nbgrader_config.py``),
killed with its process group at its time limit.
"""

import os
import resource
import signal
import sys
import time
import traceback

from autograder.nbgrader_cli import skip_slow_optional_imports

#: Address space of an nbgrader run and of the kernel it starts (inherited through bubblewrap).
MEMORY_BYTES = 12 << 30


def _run(app_class, argv, config=None) -> bool:
    app = app_class.instance()
    try:
        app.initialize(argv)
        if config is not None:  # after the config files, so that its settings win
            app.update_config(config)
        app.start()
        ok = True
    except SystemExit as stop:
        ok = not stop.code
    except Exception:
        import traceback

        traceback.print_exc()
        ok = False
    finally:
        app_class.clear_instance()
    return ok


def alembic_head() -> str:
    """The gradebook schema version that nbgrader stamps into a new gradebook, read in this process.

    ``nbgrader.api.get_alembic_version`` runs ``alembic heads`` as a command for it: a Python
    start and SQLAlchemy's imports, 3 to 8 s on a 2-core machine. alembic's own API reads the
    same migration scripts.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import _temp_alembic_ini

    with _temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:
        return ScriptDirectory.from_config(Config(ini)).get_current_head()


def preload() -> None:
    """Import what a run needs (nbgrader, its exporters, the kit's preprocessors and kernel manager),
    so that the children of :func:`start_forked` start with it; about 2.5 s of CPU saved per run."""
    skip_slow_optional_imports()
    import nbgrader.api
    import nbgrader.apps  # noqa: F401
    import nbgrader.preprocessors  # noqa: F401

    import autograder.grading.kernel  # noqa: F401
    import autograder.grading.preprocessors  # noqa: F401

    nbgrader.api.get_alembic_version = alembic_head


def start_forked(argv: list[str], cwd, env: dict[str, str], log_path, config=None) -> int:
    """Start :func:`main` with ``argv`` and ``config`` in a forked child working in ``cwd`` with
    environment ``env``, in a session of its own, with the address-space limit :data:`MEMORY_BYTES`,
    its output going to ``log_path``. Returns the child's pid (see :func:`wait_forked`)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1  # the child: never returns
    try:
        os.setsid()
        _die_with_parent()
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        code = main(argv, config)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: be killed when the grader's process that forked this one dies (a grader killed by
    its user must not leave nbgrader runs waiting for results that never come)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def wait_forked(pid: int, timeout: float) -> str:
    """Wait for the child ``pid`` of :func:`start_forked`; kill its process group after ``timeout``
    seconds. Returns its exit status as text, or says that it hit the time limit."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return str(os.waitstatus_to_exitcode(status))
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            os.waitpid(pid, 0)
            return f"time limit {timeout:.0f} s"
        time.sleep(0.05)


def main(argv=None, config=None) -> int:
    """Run the apps of ``argv`` (see the module docstring); ``config``: a ``traitlets`` Config that
    autograde and generate_feedback apply over their config files."""
    preload()
    from nbgrader.apps import AutogradeApp, GenerateAssignmentApp, GenerateFeedbackApp

    lab, student = (argv or sys.argv[1:])[:2]
    if student == "--generate":
        return 0 if _run(GenerateAssignmentApp, [lab, "--force"]) else 1
    if not _run(AutogradeApp, [lab, "--student", student, "--force"], config):
        return 1
    return 0 if _run(GenerateFeedbackApp, [lab, "--student", student, "--force"], config) else 2


if __name__ == "__main__":
    sys.exit(main())
