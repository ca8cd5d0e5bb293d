"""``python -m autograder.grading.nbrun <lab> <student>``: nbgrader autograde, then generate_feedback.

Both nbgrader applications run in this one process (run from the course folder), which saves a
Python start and nbgrader's imports per submission. Exit status: 0 when both succeeded, 1 when
autograde failed (no feedback then), 2 when only generate_feedback failed.
``python -m autograder.grading.nbrun <lab> --generate`` runs ``generate_assignment`` instead.
"""

import sys

from autograder.nbgrader_cli import skip_slow_optional_imports


def _run(app_class, argv) -> bool:
    app = app_class.instance()
    try:
        app.initialize(argv)
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


def main(argv=None) -> int:
    skip_slow_optional_imports()
    import nbgrader.api
    from nbgrader.apps import AutogradeApp, GenerateAssignmentApp, GenerateFeedbackApp

    nbgrader.api.get_alembic_version = alembic_head

    lab, student = (argv or sys.argv[1:])[:2]
    if student == "--generate":
        return 0 if _run(GenerateAssignmentApp, [lab, "--force"]) else 1
    if not _run(AutogradeApp, [lab, "--student", student, "--force"]):
        return 1
    return 0 if _run(GenerateFeedbackApp, [lab, "--student", student, "--force"]) else 2


if __name__ == "__main__":
    sys.exit(main())
