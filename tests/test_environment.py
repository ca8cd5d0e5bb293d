"""The conda environment and the pip pins list the same packages at the same versions."""

import re

from autograder.paths import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)$")


def pins(lines):
    found = {}
    for line in lines:
        match = PIN.match(line.strip().removeprefix("- ").strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def requirements():
    lines = [l for l in (REPO / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert all(PIN.match(l.strip()) for l in lines), "every requirement must be pinned with =="
    return pins(lines)


def conda_pip_section():
    lines = (REPO / "environment.yml").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip() == "- pip:")
    section = []
    for line in lines[start + 1:]:
        if line.strip() and not line.strip().startswith("- ") or not line.startswith("      "):
            break
        section.append(line)
    return section


def test_environment_yml_and_requirements_agree():
    conda = pins(conda_pip_section())
    assert conda and conda == requirements()


def test_environment_yml_pins_python_311():
    assert "  - python=3.11" in (REPO / "environment.yml").read_text().splitlines()


def test_torch_pair_is_the_supported_one():
    assert requirements()["torch"] == "2.14.1" and requirements()["torchvision"] == "0.29.1"
