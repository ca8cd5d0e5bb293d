"""Instructor side of the kit: reference solutions, evaluation, checkpoint training, grading.

Nothing in this package is shipped to students (see ``autograder/release.py``).
"""
