"""Reading a submitted notebook: the code of its solution cells, cut down to definitions.

:func:`extract_submission` returns Python source holding only the top-level imports, function
and class definitions and assignments of literals of the notebook's solution cells, so that
nothing a student left at top level (a training run, a loop, a plot) runs while checking.
:func:`policy_violations` and :func:`loop_violations` are the static scans of the checks.

Line numbers in messages name the line as the student sees it: the extracted source is a
:class:`SubmissionSource`, which knows the notebook cell and the line within it of each of its
lines, and the scans and :func:`locate` write "line 4 of the cell defining distances".
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

from labtools.labs import lab, lab_ids

__all__ = [
    "SubmissionError",
    "SubmissionSource",
    "extract_submission",
    "extract_from_notebook",
    "defined_functions",
    "policy_violations",
    "scoped_violations",
    "loop_violations",
    "line_of",
    "locate",
]

#: Modules whose use is refused: library implementations of what the labs ask for, and the grader.
FORBIDDEN_LIBRARIES = ("sklearn.metrics", "torchmetrics", "pytorch_metric_learning", "autograder", "faiss",
                       "labtools.neighbors", "labtools.losses", "labtools.metrics")
#: Escape hatches out of the checked code; ``os`` is allowed only as ``os.path``.
FORBIDDEN_MODULES = (
    "sys", "os", "subprocess", "importlib", "builtins", "ctypes", "inspect", "gc", "pickle",
    "shutil", "socket", "signal", "threading", "multiprocessing", "marshal", "types", "code",
    "runpy", "pty", "resource", "atexit", "faulthandler", "trace", "dill", "cloudpickle",
    "numpy.testing", "unittest", "io", "tempfile", "glob", "pathlib",
    "tracemalloc",  # it measures the memory checks' Python and numpy allocations
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


class SubmissionSource(str):
    """Source code that knows where each of its lines comes from.

    ``origins[i]`` is ``(cell, line)`` for line ``i + 1``: ``cell`` names the notebook cell as the
    student sees it ("the cell defining distances"), ``line`` is the line within that cell,
    counting all of the cell's own lines (magics, comments and blank lines included); ``None`` for
    a line the extraction added. ``files`` names the cells of the file names that code compiled in
    this process carries (IPython compiles each cell as a file of its own). Operations on the
    string return plain strings: only this object carries the map.
    """

    origins: tuple = ()
    files: dict = {}

    def __new__(cls, text: str, origins=(), files=None):
        self = super().__new__(cls, text)
        self.origins = tuple(origins)
        self.files = dict(files or {})
        return self

    def __reduce__(self):  # pickled (sent to a worker) as the plain text
        return (str, (str(self),))


_NEWLINE = re.compile(r"\r\n|\r|\n")  # the line breaks of Python's tokenizer (not form feeds)
_CELL_FILE = re.compile(r"(ipykernel_\d+[\\/]\d+\.py$)|(^<ipython-input-)")


def _lines(text: str) -> list[str]:
    return _NEWLINE.split(text)


def line_of(source: str, line: int | None) -> str:
    """``"line 4 of the cell defining distances"`` for line ``line`` of ``source`` when ``source``
    knows its origins (a :class:`SubmissionSource`), else ``"line <line>"``."""
    origins = getattr(source, "origins", ())
    if isinstance(line, int) and 1 <= line <= len(origins) and origins[line - 1]:
        cell, within = origins[line - 1]
        return f"line {within} of {cell}"
    return f"line {line}"


def is_cell_file(filename: str) -> bool:
    """Whether ``filename`` is the name under which IPython compiled a notebook cell."""
    return bool(_CELL_FILE.search(str(filename)))


_WHERE = re.compile(r"\(line (\d+) of ([^()]*)\)")


def locate(text: str, source: str | None) -> str:
    """``text`` with each ``(line N of FILE)`` (a traceback's location) naming the line as the
    student sees it: ``FILE`` ``<submission>`` is ``source`` (the extracted code the worker ran),
    another file one of ``source.files`` (a notebook cell compiled in this process)."""

    def replace(match):
        line, filename = int(match.group(1)), match.group(2)
        if filename == "<submission>":
            known = source is not None and getattr(source, "origins", ())
            return f"({line_of(source, line)})" if known else match.group(0)
        files = getattr(source, "files", {}) or {}
        if filename in files:
            return f"(line {line} of {files[filename]})"
        if is_cell_file(filename):
            return f"(line {line} of a notebook cell)"
        return f"(line {line} of {os.path.basename(filename)})"

    return _WHERE.sub(replace, text) if isinstance(text, str) else text


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
    for line in _lines(source):  # the cell's own lines: line k of the result is line k of the cell
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


def _first_line(node: ast.stmt) -> int:
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The text of top-level statement ``node`` (decorators included) in the cell's ``lines``,
    or its unparsed code when the text does not parse back to the same statement."""
    first, last = _first_line(node), node.end_lineno or node.lineno
    chunk = [line.encode("utf-8") for line in lines[first - 1:last]]
    if chunk and node.end_col_offset is not None:
        chunk[-1] = chunk[-1][:node.end_col_offset]
    if chunk and first == node.lineno:
        chunk[0] = chunk[0][node.col_offset:]
    try:
        text = "\n".join(c.decode("utf-8") for c in chunk)
        body = ast.parse(text).body
        if len(body) == 1 and ast.dump(body[0]) == ast.dump(node):
            return text
    except (SyntaxError, UnicodeDecodeError, ValueError, MemoryError, RecursionError):
        pass
    return ast.unparse(node)


def _cell_name(nodes: list[ast.stmt], text: str, lab_id: str) -> str:
    """The cell as the student knows it: "the cell defining distances", or by its first line."""
    names = [n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    extracted = lab(lab_id).extracted
    names = [f for f in extracted if f in names] + [f for f in names if f not in extracted]
    if names:
        shown = " and ".join(names) if len(names) <= 2 else ", ".join(names[:2]) + (
            f" and {names[2]}" if len(names) == 3 else ", ...")
        return f"the cell defining {shown}"
    first = next((line.strip() for line in _lines(text) if line.strip()), "")
    return f"the cell starting {first[:40]!r}"


def extract_from_notebook(nb: dict, lab_id: str) -> tuple[str, list[str]]:
    """``(source, notes)`` of a notebook already read as a dict (see :func:`extract_submission`).

    ``source`` is a :class:`SubmissionSource`: each statement's own text, as written in its cell,
    so that every line maps to its cell and its line there.
    """
    if lab_id not in lab_ids():
        raise SubmissionError(f"unknown lab {lab_id!r}; expected one of {', '.join(lab_ids())}")
    code_cells = [c for c in _cells(nb) if c.get("cell_type") == "code"]
    notes: list[str] = []
    chosen: list[int] = []
    for i, cell in enumerate(code_cells):
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell.get("metadata"), dict) else {}
        if isinstance(meta, dict) and meta.get("solution") and not str(meta.get("grade_id") or "").startswith("test_"):
            chosen.append(i)
    for name in lab(lab_id).extracted:
        if not any(_defines(_source(code_cells[i]), name) for i in chosen):
            found = [i for i, c in enumerate(code_cells) if _defines(_source(c), name)]
            if found:
                notes.append(f"the solution cell of {name} has lost its nbgrader metadata; "
                             "its definition was found by scanning the code cells")
                chosen.extend(i for i in found if i not in chosen)
    out: list[str] = []
    origins: list[tuple[str, int] | None] = []
    emitted: list[ast.stmt] = []

    def emit(text: str, cell: str, first: int, node: ast.stmt) -> None:
        emitted.append(node)
        for k, line in enumerate(_lines(text)):
            out.append(line)
            origins.append((cell, first + k))

    # imports of the notebook's other cells (its setup cells), those the rules allow
    imports: list[str] = []
    for i, cell in enumerate(code_cells):
        if i in chosen:
            continue
        text = _strip_magics(_source(cell))
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                code = ast.unparse(node)
                if not policy_violations(code) and code not in imports:
                    imports.append(code)
                    emit(_segment(_lines(text), node), _cell_name(tree.body, _source(cell), lab_id), node.lineno, node)
    for i in sorted(set(chosen)):
        text = _strip_magics(_source(code_cells[i]))
        nodes = _definitions(_source(code_cells[i]))
        cell = _cell_name(nodes, _source(code_cells[i]), lab_id)
        for j, node in enumerate(nodes):
            if out and (j == 0 or isinstance(node, (ast.FunctionDef, ast.ClassDef))):
                out.append("")
                origins.append(None)
            emit(_segment(_lines(text), node), cell, _first_line(node), node)
    source = "\n".join(out) + "\n"
    try:  # each statement's text parses back to it alone; together they must give the same statements
        same = ast.dump(ast.Module(body=emitted, type_ignores=[])) == ast.dump(ast.parse(source))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        same = False
    if not same:
        return SubmissionSource(ast.unparse(ast.Module(body=emitted, type_ignores=[])) + "\n"), notes
    return SubmissionSource(source, origins + [None]), notes


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
    found = _policy_findings(source)
    if isinstance(found, str):
        return [found]
    return list(dict.fromkeys(f"{line_of(source, line)}: {text}" for line, text in found))


def _parse_error(source: str, error: SyntaxError) -> str:
    where = f" ({line_of(source, error.lineno)})" if error.lineno else ""
    return f"the code does not parse: {error.msg}{where}"


def _policy_findings(source: str) -> list[tuple[int, str]] | str:
    """``[(line, problem)]`` of :func:`policy_violations`, or the message of a parse error."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return _parse_error(source, error)
    problems: list[tuple[int, str]] = []

    def refuse_module(module: str, line: int) -> None:
        for banned in FORBIDDEN_LIBRARIES:
            if module == banned or module.startswith(banned + "."):
                problems.append((line, f"uses {module}, a library implementation (write it yourself)"))
                return
        top = module.split(".")[0]
        if module in ("os.path", "posixpath"):
            return
        for banned in FORBIDDEN_MODULES:
            if module == banned or module.startswith(banned + ".") or top == banned:
                problems.append((line, f"imports {module}, which the checks do not allow"))
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
                problems.append((node.lineno, "relative import"))
            elif module == "os":
                if any(a.name != "path" for a in node.names):
                    problems.append((node.lineno, "imports from os (only os.path is allowed)"))
            else:
                refuse_module(module, node.lineno)
                for alias in node.names:
                    refuse_module(f"{module}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append((node.lineno, f"uses {node.id}, which the checks do not allow"))
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in os_aliases:
                if node.attr != "path":
                    problems.append((node.lineno, f"uses os.{node.attr} (only os.path is allowed)"))
            elif node.attr in FORBIDDEN_ATTRIBUTES:
                problems.append((node.lineno, f"uses the attribute .{node.attr}, which the checks do not allow"))
            elif node.attr.startswith("__") and node.attr.endswith("__") and node.attr not in (
                "__init__", "__call__", "__len__", "__getitem__", "__name__", "__doc__"
            ):
                problems.append((node.lineno, f"uses the attribute .{node.attr}, which the checks do not allow"))
    # os.path.<x>: only plain path helpers
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "path" and isinstance(node.value.value, ast.Name)
                and node.value.value.id in os_aliases and node.attr not in _OS_PATH_OK):
            problems.append((node.lineno, f"uses os.path.{node.attr}, which the checks do not allow"))
    return list(dict.fromkeys(problems))


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _without(source: str, tree: ast.Module, dropped: set[int]) -> str:
    """``source`` without the top-level statements ``dropped`` (indices in ``tree.body``), their
    lines left blank so that every other line keeps its number (the worker's tracebacks then name
    the lines of ``source``); unparsed when a dropped statement shares a line with a kept one."""
    lines = _lines(str(source))
    blank: set[int] = set()
    for i in dropped:
        node = tree.body[i]
        blank.update(range(_first_line(node), (node.end_lineno or node.lineno) + 1))
    kept = [node for i, node in enumerate(tree.body) if i not in dropped]
    if any(line in blank for node in kept for line in range(_first_line(node), (node.end_lineno or node.lineno) + 1)):
        return ast.unparse(ast.Module(body=kept, type_ignores=[])) + "\n"
    return "\n".join("" if k + 1 in blank else line for k, line in enumerate(lines))


def scoped_violations(source: str) -> tuple[dict[str, list[str]], str]:
    """Rule violations by top-level function, and ``source`` without the offending statements.

    A function is charged with the violations inside it, with those of the top-level statements
    binding a name it uses (a forbidden import), and with those of every function of ``source`` it
    uses (transitively). The returned source (a plain string) drops the offending top-level
    statements, leaving their lines blank, so that the rest of the submission still runs with the
    same line numbers. Key ``""`` holds violations nothing could be tied to (a source that does
    not parse).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return {"": [_parse_error(source, error)]}, str(source)
    found = _policy_findings(source)
    spans = [(node, _first_line(node), node.end_lineno or node.lineno) for node in tree.body]
    own: dict[int, list[str]] = {}
    loose: list[str] = []
    for line, text in (found if isinstance(found, list) else []):
        problem = f"{line_of(source, line)}: {text}"
        for i, (_, first, last) in enumerate(spans):
            if first <= line <= last:
                own.setdefault(i, []).append(problem)
                break
        else:
            loose.append(problem)
    tainted: dict[str, list[str]] = {}
    for i, problems in own.items():
        for name in _bound_names(spans[i][0]):
            tainted.setdefault(name, []).extend(problems)
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
    result = {name: list(dict.fromkeys(problems)) for name, problems in tainted.items()}
    if loose:
        result[""] = list(dict.fromkeys(loose))
    clean = _without(source, tree, set(own)) if own else str(source)
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
            problems.append(f"{line_of(source, node.lineno)}: {kind}{where}")
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
