#!/usr/bin/env bash
# The Python layer of the metric-lab images (deploy/Dockerfile RUNs it); it runs as well in a plain venv:
#
#   python3.11 -m venv /tmp/ml && PYTHON=/tmp/ml/bin/python deploy/install-python-layer.sh requirements.txt
#   PYTHON=/tmp/ml/bin/python deploy/install-python-layer.sh --kit .
#
#   install-python-layer.sh REQUIREMENTS   the exact pins of REQUIREMENTS (the kit's requirements.txt; torch
#                                          and torchvision as CPU wheels) and the pinned build backend
#   install-python-layer.sh --kit DIR      the kit in DIR, editable and without dependencies (the pins are
#                                          in already): `autograder` finds the course, the released notebooks
#                                          and models/ beside its package (autograder/paths.py), which a
#                                          built wheel would not carry
#
# PYTHON (default: python) is the interpreter to install into; DRY_RUN=1 prints the commands without
# running them (tests/test_deploy.py reads them). Needs Python >= 3.11; the kit is tested on 3.11.
set -euo pipefail

PYTHON="${PYTHON:-python}"
# torch and torchvision from the CPU wheel index: the same versions as requirements.txt pins, without
# the CUDA libraries (pip prefers 2.14.1+cpu there over PyPI's 2.14.1 for the pin torch==2.14.1)
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
# the build backend of the editable install, pinned as the Makefile pins it
BUILD_BACKEND="setuptools==84.2.1"

run() {
    echo "+ $*"
    if [ -z "${DRY_RUN:-}" ]; then
        "$@"
    fi
}

usage() {
    echo "usage: $0 REQUIREMENTS | --kit DIR" >&2
    exit 2
}

"$PYTHON" - <<'EOF'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"metric-lab needs Python >= 3.11; {sys.executable} is {sys.version.split()[0]}")
if sys.version_info[:2] != (3, 11):
    print(f"note: metric-lab is tested on Python 3.11; installing into {sys.version.split()[0]}", file=sys.stderr)
EOF

[ $# -ge 1 ] || usage
if [ "$1" = "--kit" ]; then
    [ $# -eq 2 ] || usage
    [ -f "$2/pyproject.toml" ] || { echo "$2 has no pyproject.toml: not the kit" >&2; exit 2; }
    run "$PYTHON" -m pip install --no-cache-dir --no-deps --no-build-isolation --editable "$2"
else
    [ $# -eq 1 ] || usage
    [ -f "$1" ] || { echo "no requirements file $1" >&2; exit 2; }
    run "$PYTHON" -m pip install --no-cache-dir --requirement "$1" --extra-index-url "$TORCH_INDEX"
    run "$PYTHON" -m pip install --no-cache-dir "$BUILD_BACKEND"
    # report, do not fail: a base image's own packages may ask for other versions than the kit's pins
    # (read it in the build log: the kit's pins are what the course is tested with)
    run "$PYTHON" -m pip check || echo "note: pip check found conflicts with packages of the base image (above)" >&2
fi
