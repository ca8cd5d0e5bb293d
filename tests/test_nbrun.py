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
