"""Checks of the labs' graded functions, shared by the notebooks, the students and the grader.

``run_public_checks(lab_id, name, obj)`` runs the public checks of one function in the notebook;
``python -m labtools.checks notebook.ipynb`` runs all public checks of a saved notebook in a
sandboxed process (the "check before you submit"). The grader adds hidden checks of its own.
"""

from labtools.checks.engine import SandboxLimits, check_source, evaluate, run_public_checks, run_sandboxed
from labtools.checks.registry import Call, Check, CheckResult, Context, Outcome, checks_for
from labtools.checks.submission import (
    SubmissionError,
    extract_from_notebook,
    extract_submission,
    loop_violations,
    policy_violations,
)

__all__ = [
    "run_public_checks", "extract_submission", "extract_from_notebook", "SubmissionError", "Check", "Call",
    "Outcome", "Context", "CheckResult", "checks_for", "evaluate", "run_sandboxed", "check_source",
    "SandboxLimits", "policy_violations", "loop_violations",
]
