"""Running nbgrader in-process: the same results without its slow child process and imports."""

import os
import subprocess
import sys

from autograder.grading.nbrun import alembic_head
from autograder.nbgrader_cli import tool_env


def test_alembic_head_in_process_is_nbgrader_s(monkeypatch):
    import nbgrader.api

    monkeypatch.setenv("PATH", tool_env()["PATH"])  # nbgrader runs the ``alembic`` command
    assert alembic_head() == nbgrader.api.get_alembic_version()


def test_notebooks_validate_without_rfc3987_syntax():
    """With the optional package marked absent, nbformat still validates and rejects notebooks."""
    code = (
        "from autograder.nbgrader_cli import skip_slow_optional_imports; skip_slow_optional_imports()\n"
        "import sys, nbformat\n"
        "from nbformat.v4 import new_notebook, new_code_cell\n"
        "nb = new_notebook(cells=[new_code_cell('x = 1')]); nbformat.validate(nb)\n"
        "nb.cells[0]['cell_type'] = 'bogus'\n"
        "try:\n    nbformat.validate(nb)\nexcept nbformat.ValidationError:\n    print('rejected')\n"
        "print('rfc3987_syntax' in sys.modules and sys.modules['rfc3987_syntax'] is not None)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["rejected", "False"]


def test_the_grader_config_reaches_every_class_it_configures(tmp_path):
    """Each setting of the run's Config names a class and trait that exist and take the value
    (a misspelt class name would be ignored silently by traitlets, and the kernel left unsandboxed)."""
    from nbgrader.converters import Autograde
    from traitlets.utils.importstring import import_item

    from autograder.grading.kernel import SandboxedKernelManager
    from autograder.grading.preprocessors import RobustExecute, TrustedGrades, TrustedIntake
    from autograder.grading.run import nbgrader_config

    results, hidden = tmp_path / "results.json", tmp_path / "mnist_triplet.pt"
    config = nbgrader_config(results, 100.0, sandboxed=True, masked=[hidden])
    execute = RobustExecute(config=config)
    assert execute.sandbox is True and execute.results_file == str(results)
    assert (execute.timeout, execute.total_seconds, execute.interrupt_on_timeout) == (25, 70, True)
    assert TrustedGrades(config=config).results_file == str(results)
    assert SandboxedKernelManager(config=config).masked == [str(hidden)]
    classes = {import_item(name) if isinstance(name, str) else name
               for name in config.Autograde.autograde_preprocessors}
    assert {RobustExecute, TrustedGrades} <= classes
    known = {cls.__name__ for cls in (Autograde, RobustExecute, TrustedGrades, TrustedIntake, SandboxedKernelManager)}
    assert set(config) <= known | {"Execute", "TrustedResults"}
    assert RobustExecute(config=nbgrader_config(results, 100.0, sandboxed=False, masked=[])).sandbox is False
    # the instructor's course (formgrader's Autograde): TrustedIntake first in nbgrader's sanitizing step
    course = nbgrader_config(results, 100.0, sandboxed=True, masked=[hidden], intake=True)
    sanitize = [import_item(name) if isinstance(name, str) else name for name in course.Autograde.sanitize_preprocessors]
    assert sanitize[0] is TrustedIntake and TrustedIntake(config=course).sandbox is True
    assert TrustedIntake(config=course).results_file == str(results)
    assert set(course) <= known | {"Execute", "TrustedResults"}
