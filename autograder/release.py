"""The student release bundle: notebooks, labtools, models, environment and data instructions.

``python -m autograder release --out DIR`` writes ``DIR/metric-lab-student/`` and a zip of it.
What goes in is listed in :data:`INCLUDE`; nothing of ``autograder/`` (reference solutions,
source notebooks, reference outputs, hidden checks) is copied, nor the instructor's copy of a
graded deliverable (:data:`GRADED_DELIVERABLES`). ``tests/test_release.py`` builds the bundle and
searches it for leaks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from autograder.paths import REPO
from labtools.labs import all_labs

BUNDLE = "metric-lab-student"
#: Paths of the repository copied into the bundle (folders recursively).
INCLUDE = ("notebooks", "labtools", "models", "environment.yml", "requirements.txt")
#: File patterns never copied, whatever folder they are in.
EXCLUDE = ("__pycache__", "*.pyc", "*.train.pt", "*.tmp", ".ipynb_checkpoints", "*.tensorboard")
#: The instructor's copies of what a lab grades as a deliverable (paths in the repository), from
#: the labs' specs (``FileDeliverable.models``): Lab 2's triplet_net.pt is graded by its mAP, and the
#: course's own network trained the same way, submitted as is, would earn every point. Never in the
#: bundle, with the files training leaves beside them (``<name>.train.pt``, ``<name>.best.pt``); their
#: cards (``.json``, which the notebooks read) stay. The grader's sandbox can hide the same list from
#: student code.
GRADED_DELIVERABLES = tuple(f"models/{model}" for spec in all_labs().values() for model in spec.graded_models)


def deliverable_excluded(relative: str) -> bool:
    """Whether the repository path ``relative`` is a graded deliverable or a file training leaves beside one."""
    for deliverable in GRADED_DELIVERABLES:
        folder, _, name = deliverable.rpartition("/")
        stem = name[: -len(".pt")]
        parent, _, candidate = relative.rpartition("/")
        if parent == folder and (candidate == name or (candidate.startswith(stem + ".") and candidate.endswith(".pt"))):
            return True
    return False


STUDENT_README = """\
# metric-lab: student kit

Set up once (Python 3.11):

```bash
python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/pip install --no-deps -e .
.venv/bin/jupyter lab notebooks/
```

(conda: `conda env create -f environment.yml && conda activate metric-lab && pip install --no-deps -e .`)

Data: the labs read MNIST and Fashion-MNIST through torchvision. They are downloaded to
`~/.cache/metric-lab/data` on first use; without network, put the raw files in
`<root>/MNIST/raw/` (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; likewise `<root>/FashionMNIST/raw/`) and
`export LABTOOLS_DATA=<root>`.

Work through the notebooks in order. Each graded function is followed by a cell of public checks;
before you submit, run them all on the saved notebook with the same engine that grades it:

```bash
.venv/bin/python -m labtools.checks notebooks/lab1_retrieval.ipynb
```

Submit the notebook (and, for Lab 2, the `triplet_net.pt` your training saved beside it).
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "metric-lab-student"
version = "0.1.0"
requires-python = ">=3.11"
dynamic = ["dependencies"]

[tool.setuptools.dynamic]
dependencies = { file = ["requirements.txt"] }

[tool.setuptools.packages.find]
include = ["labtools*"]
"""


def build(out: Path) -> Path:
    """Write the bundle folder and its zip under ``out``; return the zip's path."""
    out = Path(out)
    target = out / BUNDLE
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    patterns = shutil.ignore_patterns(*EXCLUDE)

    def ignore(folder, names):
        relative = Path(folder).relative_to(REPO).as_posix()
        return set(patterns(folder, names)) | {n for n in names if deliverable_excluded(f"{relative}/{n}")}

    for name in INCLUDE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif not deliverable_excluded(name):
            shutil.copy2(source, target / name)
    (target / "README.md").write_text(STUDENT_README)
    (target / "pyproject.toml").write_text(PYPROJECT)
    return Path(shutil.make_archive(str(out / BUNDLE), "zip", root_dir=out, base_dir=BUNDLE))
