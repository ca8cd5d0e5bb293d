"""``python -m autograder.grading.nbrun <lab> <student>``: nbgrader autograde, then generate_feedback.

Both nbgrader applications run in this one process (run from the course folder), which saves a
Python start and nbgrader's imports per submission. Exit status: 0 when both succeeded, 1 when
autograde failed (no feedback then), 2 when only generate_feedback failed.
"""

import sys


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


def main(argv=None) -> int:
    from nbgrader.apps import AutogradeApp, GenerateFeedbackApp

    lab, student = (argv or sys.argv[1:])[:2]
    if not _run(AutogradeApp, [lab, "--student", student, "--force"]):
        return 1
    return 0 if _run(GenerateFeedbackApp, [lab, "--student", student, "--force"]) else 2


if __name__ == "__main__":
    sys.exit(main())
