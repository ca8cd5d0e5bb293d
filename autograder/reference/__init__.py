"""Reference solutions of the graded functions, one module per lab.

These modules are the one copy of each solution: the source notebooks' solution blocks are
generated from them (``autograder/notebooks.py``) and the grader compares against them.
"""
