"""Reading a submitted notebook: the code of its solution cells, cut down to definitions.

:func:`extract_submission` returns Python source holding only the top-level imports, function
and class definitions and assignments of literals of the notebook's solution cells, so that
nothing a student left at top level (a training run, a loop, a plot) runs while checking.
:func:`policy_violations` and :func:`loop_violations` are the static scans of the checks.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

__all__ = [
    "SubmissionError",
    "LAB_FUNCTIONS",
    "extract_submission",
    "extract_from_notebook",
    "defined_functions",
    "policy_violations",
    "scoped_violations",
    "loop_violations",
]

#: The graded functions of each lab, in notebook order, and the ungraded ones it also needs.
LAB_FUNCTIONS = {
    "lab1_retrieval": ("distances", "evaluate_AP", "evaluate_mAP"),
    "lab2_triplet": ("distances", "evaluate_AP", "evaluate_mAP", "triplet_loss", "train_triplets"),
    "lab3_smoothap": ("distances", "evaluate_AP", "evaluate_mAP", "triplet_loss", "smooth_ap_loss"),
    "lab4_beyond": ("distances", "recall_at_k", "kmeans", "contingency_table", "nmi", "f1", "NormSoftmax",
                    "norm_softmax_loss", "arcface_loss"),
    "lab5_dvml": ("distances", "kl_divergence", "reparameterize", "semihard_triplets", "semihard_triplet_loss",
                  "dvml_loss"),
}

#: Modules whose use is refused: library implementations of what the labs ask for, and the grader.
FORBIDDEN_LIBRARIES = ("sklearn.metrics", "torchmetrics", "pytorch_metric_learning", "autograder", "faiss",
                       "labtools.neighbors", "labtools.losses", "labtools.metrics")
#: Escape hatches out of the checked code; ``os`` is allowed only as ``os.path``.
FORBIDDEN_MODULES = (
    "sys", "os", "subprocess", "importlib", "builtins", "ctypes", "inspect", "gc", "pickle",
    "shutil", "socket", "signal", "threading", "multiprocessing", "marshal", "types", "code",
    "runpy", "pty", "resource", "atexit", "faulthandler", "trace", "dill", "cloudpickle",
    "numpy.testing", "unittest", "io", "tempfile", "glob", "pathlib",
)
FORBIDDEN_NAMES = (
    "__import__", "exec", "eval", "compile", "open", "settrace", "setprofile", "globals", "locals",
    "vars", "getattr", "setattr", "delattr", "breakpoint", "input", "memoryview", "__builtins__",
    "__loader__", "__spec__",
)
FORBIDDEN_ATTRIBUTES = (
    "__globals__", "__builtins__", "__subclasses__", "__bases__", "__mro__", "__code__", "__dict__",
    "__class__", "__import__", "__loader__", "__spec__", "__closure__", "__self__", "__func__",
    "__getattribute__", "f_globals", "f_locals", "f_back", "f_builtins", "gi_frame", "cr_frame",
    "tb_frame", "settrace", "setprofile", "_getframe", "os", "sys", "system", "popen", "spawn",
    "showtraceback", "run_public_checks", "_exit", "kill", "unlink", "rmtree", "environ", "modules",
    "_C",  # torch's C module: DisableTorchFunction and the like would hide calls from the checks' counters
)
#: Attribute names that are fine after ``os.path``.
_OS_PATH_OK = ("exists", "isfile", "isdir", "join", "dirname", "basename", "splitext", "abspath")


class SubmissionError(ValueError):
    """The submission cannot be read: the message says what is wrong with the file."""


def _read_notebook(path: Path) -> dict:
    if not path.is_file():
        raise SubmissionError(f"no notebook file at {path}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SubmissionError(f"cannot read {path.name}: {error}") from error
    if len(raw) > 50_000_000:
        raise SubmissionError(f"{path.name} is {len(raw) / 1e6:.0f} MB, too large for a notebook")
    try:
        nb = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubmissionError(f"{path.name} is not a notebook: it is not valid JSON ({error})") from error
    return nb


def _cells(nb) -> list[dict]:
    if not isinstance(nb, dict) or "cells" not in nb and "worksheets" not in nb:
        raise SubmissionError("the file is JSON but not a Jupyter notebook (no 'cells')")
    major = nb.get("nbformat")
    if not isinstance(major, int) or major < 4:
        raise SubmissionError(f"the notebook has format version {major!r}; version 4 is needed (save it again "
                              "with a current Jupyter)")
    cells = nb.get("cells")
    if not isinstance(cells, list) or not cells:
        raise SubmissionError("the notebook has no cells")
    return [c for c in cells if isinstance(c, dict)]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def _strip_magics(source: str) -> str:
    """Comment out IPython magics and shell escapes so that ``ast`` can parse a cell."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append("# " + line if stripped.startswith(("%", "!", "?")) else line)
    return "\n".join(lines)


def _literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _keep(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) for t in node.targets) and _literal(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.value is not None and _literal(node.value)
    return False


def _definitions(source: str) -> list[ast.stmt]:
    try:
        tree = ast.parse(_strip_magics(source))
    except SyntaxError:
        return []
    return [node for node in tree.body if _keep(node)]


def _defines(source: str, name: str) -> bool:
    return any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name for n in _definitions(source))


def extract_from_notebook(nb: dict, lab_id: str) -> tuple[str, list[str]]:
    """``(source, notes)`` of a notebook already read as a dict (see :func:`extract_submission`)."""
    if lab_id not in LAB_FUNCTIONS:
        raise SubmissionError(f"unknown lab {lab_id!r}; expected one of {', '.join(LAB_FUNCTIONS)}")
    code_cells = [c for c in _cells(nb) if c.get("cell_type") == "code"]
    notes: list[str] = []
    chosen: list[int] = []
    for i, cell in enumerate(code_cells):
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell.get("metadata"), dict) else {}
        if isinstance(meta, dict) and meta.get("solution") and not meta.get("grade_id", "").startswith("test_"):
            chosen.append(i)
    for name in LAB_FUNCTIONS[lab_id]:
        if not any(_defines(_source(code_cells[i]), name) for i in chosen):
            found = [i for i, c in enumerate(code_cells) if _defines(_source(c), name)]
            if found:
                notes.append(f"the solution cell of {name} has lost its nbgrader metadata; "
                             "its definition was found by scanning the code cells")
                chosen.extend(i for i in found if i not in chosen)
    parts = []
    # imports of the notebook's other cells (its setup cells), those the rules allow
    imports = []
    for i, cell in enumerate(code_cells):
        if i in chosen:
            continue
        try:
            tree = ast.parse(_strip_magics(_source(cell)))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                text = ast.unparse(node)
                if not policy_violations(text) and text not in imports:
                    imports.append(text)
    if imports:
        parts.append("\n".join(imports))
    for i in sorted(set(chosen)):
        nodes = _definitions(_source(code_cells[i]))
        if nodes:
            parts.append(ast.unparse(ast.Module(body=nodes, type_ignores=[])))
    return "\n\n".join(parts) + "\n", notes


def extract_submission(notebook_path: str | os.PathLike, lab_id: str) -> str:
    """The graded code of a saved notebook: imports, definitions and literal assignments only.

    Solution cells are found by their nbgrader metadata; a function whose cell lost it is found by
    scanning every code cell for ``def <name>``. Raises :class:`SubmissionError` naming the problem
    when the file is not a readable version-4 notebook.
    """
    source, _ = extract_from_notebook(_read_notebook(Path(notebook_path)), lab_id)
    return source


def defined_functions(source: str) -> dict[str, ast.FunctionDef | ast.ClassDef]:
    """Top-level function and class definitions of ``source`` by name (the last one wins, as in
    Python); a class counts as one function, its methods included."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def policy_violations(source: str) -> list[str]:
    """What ``source`` uses that a submission may not: libraries doing the work and escape hatches."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return [f"the code does not parse: {error}"]
    problems = []

    def refuse_module(module: str, line: int) -> None:
        for banned in FORBIDDEN_LIBRARIES:
            if module == banned or module.startswith(banned + "."):
                problems.append(f"line {line}: uses {module}, a library implementation (write it yourself)")
                return
        top = module.split(".")[0]
        if module in ("os.path", "posixpath"):
            return
        for banned in FORBIDDEN_MODULES:
            if module == banned or module.startswith(banned + ".") or top == banned:
                problems.append(f"line {line}: imports {module}, which the checks do not allow")
                return

    os_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os" or (alias.name == "os.path" and not alias.asname):
                    os_aliases.add(alias.asname or "os")
                    continue
                refuse_module(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                problems.append(f"line {node.lineno}: relative import")
            elif module == "os":
                if any(a.name != "path" for a in node.names):
                    problems.append(f"line {node.lineno}: imports from os (only os.path is allowed)")
            else:
                refuse_module(module, node.lineno)
                for alias in node.names:
                    refuse_module(f"{module}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append(f"line {node.lineno}: uses {node.id}, which the checks do not allow")
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in os_aliases:
                if node.attr != "path":
                    problems.append(f"line {node.lineno}: uses os.{node.attr} (only os.path is allowed)")
            elif node.attr in FORBIDDEN_ATTRIBUTES:
                problems.append(f"line {node.lineno}: uses the attribute .{node.attr}, which the checks do not allow")
            elif node.attr.startswith("__") and node.attr.endswith("__") and node.attr not in (
                "__init__", "__call__", "__len__", "__getitem__", "__name__", "__doc__"
            ):
                problems.append(f"line {node.lineno}: uses the attribute .{node.attr}, which the checks do not allow")
    # os.path.<x>: only plain path helpers
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "path" and isinstance(node.value.value, ast.Name)
                and node.value.value.id in os_aliases and node.attr not in _OS_PATH_OK):
            problems.append(f"line {node.lineno}: uses os.path.{node.attr}, which the checks do not allow")
    return list(dict.fromkeys(problems))


_LINE = re.compile(r"^line (\d+): ")


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def scoped_violations(source: str) -> tuple[dict[str, list[str]], str]:
    """Rule violations by top-level function, and ``source`` without the offending statements.

    A function is charged with the violations inside it, with those of the top-level statements
    binding a name it uses (a forbidden import), and with those of every function of ``source`` it
    uses (transitively). The returned source drops the offending top-level statements so that the
    rest of the submission still runs. Key ``""`` holds violations nothing could be tied to (a
    source that does not parse).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return {"": [f"the code does not parse: {error}"]}, source
    problems = policy_violations(source)
    spans = [(node, node.lineno, getattr(node, "end_lineno", node.lineno)) for node in tree.body]
    own: dict[int, list[str]] = {}
    loose: list[str] = []
    for problem in problems:
        match = _LINE.match(problem)
        line = int(match.group(1)) if match else -1
        for i, (_, first, last) in enumerate(spans):
            if first <= line <= last:
                own.setdefault(i, []).append(problem)
                break
        else:
            loose.append(problem)
    tainted: dict[str, list[str]] = {}
    for i, found in own.items():
        for name in _bound_names(spans[i][0]):
            tainted.setdefault(name, []).extend(found)
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    uses = {name: {n.id for n in ast.walk(f) if isinstance(n, ast.Name)} - {name} for name, f in functions.items()}
    changed = True
    while changed:  # propagate to users, transitively
        changed = False
        for name, used in uses.items():
            for other in used & set(tainted):
                extra = [p for p in tainted[other] if p not in tainted.get(name, [])]
                if extra:
                    tainted.setdefault(name, []).extend(extra)
                    changed = True
    result = {name: list(dict.fromkeys(found)) for name, found in tainted.items()}
    if loose:
        result[""] = loose
    keep = [node for i, (node, _, _) in enumerate(spans) if i not in own]
    clean = ast.unparse(ast.Module(body=keep, type_ignores=[])) + "\n" if own else source
    return result, clean


_LOOP_NODES = {
    ast.For: "a for loop", ast.AsyncFor: "a for loop", ast.While: "a while loop",
    ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression",
}


def _called_names(func: ast.FunctionDef) -> set[str]:
    return {n.func.id for n in ast.walk(func) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def loop_violations(source: str, name: str, allowed_for: int = 0) -> list[str]:
    """Python-level loops in function ``name`` and the helpers it calls (transitively).

    No for/while loop, comprehension, generator expression, ``map``/``filter`` or recursion;
    ``allowed_for`` plain ``for`` loops are tolerated in ``name`` itself (not in helpers).
    """
    functions = defined_functions(source)
    if name not in functions:
        return [f"{name} is not defined"]
    problems = []
    seen: list[str] = []
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        func = functions[current]
        fors = 0
        for node in ast.walk(func):
            kind = _LOOP_NODES.get(type(node))
            if kind is None:
                continue
            if isinstance(node, ast.For) and current == name:
                fors += 1
                if fors <= allowed_for:
                    continue
            where = "" if current == name else f" (in the helper {current})"
            problems.append(f"line {node.lineno}: {kind}{where}")
        called = _called_names(func)
        for builtin in ("map", "filter"):
            if builtin in called:
                problems.append(f"{current} calls {builtin}(), a loop in disguise")
        if current in called:
            problems.append(f"{current} calls itself (recursion)")
        for helper in sorted(called & set(functions)):
            if helper == current:
                continue
            if helper in seen and helper != current:
                if current in _reachable(functions, helper):
                    problems.append(f"{current} and {helper} call each other (recursion)")
                continue
            stack.append(helper)
    return list(dict.fromkeys(problems))


def _reachable(functions: dict[str, ast.FunctionDef], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        f = stack.pop()
        if f in seen or f not in functions:
            continue
        seen.add(f)
        stack.extend(_called_names(functions[f]) & set(functions))
    return seen
