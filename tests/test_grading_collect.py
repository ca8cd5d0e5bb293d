"""Collecting submissions: nbgrader folders, zips of them, and Moodle and Canvas exports."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from autograder.grading.intake import collect

LAB = "lab2_triplet"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _by_student(found):
    return {student: (folder, notes, notebook) for student, folder, notes, notebook in found}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_nbgrader_folder_and_its_parent(tmp_path):
    for student in ("ann", "bob"):
        lab = tmp_path / "submitted" / student / LAB
        lab.mkdir(parents=True)
        (lab / f"{LAB}.ipynb").write_text("{}")
        (lab / "triplet_net.pt").write_bytes(b"w")
    for given in (tmp_path, tmp_path / "submitted"):
        found = _by_student(collect(LAB, given, tmp_path / "scratch"))
        assert set(found) == {"ann", "bob"}
        folder, notes, notebook = found["ann"]
        assert notebook == folder / f"{LAB}.ipynb" and (folder / "triplet_net.pt").is_file() and notes == []


def test_zip_of_a_submitted_folder(tmp_path):
    archive = _zip(tmp_path / "export.zip", {
        f"course/submitted/ann/{LAB}/{LAB}.ipynb": b"{}",
        f"course/submitted/ann/{LAB}/triplet_net.pt": b"w",
        f"__MACOSX/course/submitted/ann/{LAB}/._{LAB}.ipynb": b"junk",
    })
    found = _by_student(collect(LAB, archive, tmp_path / "scratch"))
    assert set(found) == {"ann"}
    folder, notes, notebook = found["ann"]
    assert notebook.name == f"{LAB}.ipynb" and _files(folder) == {f"{LAB}.ipynb", "triplet_net.pt"}


def test_canvas_export_renames_files_back(tmp_path):
    archive = _zip(tmp_path / "canvas.zip", {
        f"smithjane_1234_5678_{LAB}.ipynb": b"{}",
        "smithjane_1234_5679_triplet_net-1.pt": b"w",
        f"doejohn_LATE_4321_8765_{LAB}-2.ipynb": b"{}",
    })
    found = _by_student(collect(LAB, archive, tmp_path / "scratch"))
    assert set(found) == {"smithjane", "doejohn"}
    folder, notes, notebook = found["smithjane"]
    assert _files(folder) == {f"{LAB}.ipynb", "triplet_net.pt"} and notebook.name == f"{LAB}.ipynb" and notes == []
    folder, notes, notebook = found["doejohn"]
    assert notebook.name == f"{LAB}.ipynb" and notes == []


def test_moodle_export_one_folder_per_student(tmp_path):
    archive = _zip(tmp_path / "moodle.zip", {
        f"Jane Smith_101_assignsubmission_file_/{LAB}.ipynb": b"{}",
        "Jane Smith_101_assignsubmission_file_/triplet_net.pt": b"w",
        "John Doe_102_assignsubmission_file_/My Lab 2.ipynb": b"{}",
        "Max Null_103_assignsubmission_file_/notes.txt": b"sorry",
    })
    found = _by_student(collect(LAB, archive, tmp_path / "scratch"))
    assert set(found) == {"Jane_Smith", "John_Doe", "Max_Null"}
    folder, notes, notebook = found["Jane_Smith"]
    assert _files(folder) == {f"{LAB}.ipynb", "triplet_net.pt"} and notes == []
    folder, notes, notebook = found["John_Doe"]
    assert notebook.name == "My Lab 2.ipynb" and "not lab2_triplet.ipynb" in notes[0]
    folder, notes, notebook = found["Max_Null"]
    assert notebook is None and notes == ["no notebook found"]


def test_archive_paths_that_leave_the_folder_are_skipped(tmp_path):
    archive = _zip(tmp_path / "evil.zip", {f"../../escaped_{LAB}.ipynb": b"{}", f"/abs/{LAB}.ipynb": b"{}",
                                             f"ann_1_2_{LAB}.ipynb": b"{}"})
    found = _by_student(collect(LAB, archive, tmp_path / "scratch" / "deep"))
    assert set(found) == {"ann"}
    assert not list(tmp_path.glob("escaped_*")) and not list((tmp_path / "scratch").glob("escaped_*"))


def test_not_a_zip_nor_a_folder_is_refused(tmp_path):
    (tmp_path / "grades.txt").write_text("x")
    with pytest.raises(SystemExit, match="neither a folder nor a zip"):
        collect(LAB, tmp_path / "grades.txt", tmp_path / "scratch")
    with pytest.raises(SystemExit, match="no submissions folder"):
        collect(LAB, tmp_path / "missing", tmp_path / "scratch")
