"""The functions of a submission as the similarity report compares them: k-grams of normalized tokens.

A function is read from the code :func:`labtools.checks.submission.extract_submission` keeps of a
notebook (its solution cells' definitions; nothing is run), then tokenized with :mod:`tokenize` and
normalized so that what a copier changes cheaply changes nothing:

- comments, docstrings, blank lines, line breaks and indentation are dropped (reformatting);
- the names the function binds (parameters, locals, loop and comprehension variables, nested
  functions) become ``V`` and the student's own helper functions ``F`` (renaming); names read from
  outside (``torch``, ``len``), attributes (``.cumsum``) and keyword arguments (``dim=``) are kept,
  because they say what the code does; a module imported under another name is read under its own
  (``import torch as T`` gives ``torch``); every string is ``S``, every number its value;
- the k-grams (:data:`K` tokens) are taken within each statement, never across two, so that
  reordering independent statements keeps every k-gram (reordering).

A helper function the student wrote (not one of the lab's) is compared as part of each graded
function that calls it, its lines shown after the function's.
"""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
from dataclasses import dataclass
from pathlib import Path

from labtools.checks.submission import _reachable, defined_functions, extract_submission

#: Tokens per k-gram. Five normalized tokens ("V = V [ :") are still common to independent
#: solutions; a statement shorter than K is one k-gram of its own.
K = 5
#: A statement of fewer normalized tokens (``return V``, ``else :``, ``pass``) is no evidence of copying.
MIN_STATEMENT_TOKENS = 3
#: A function (or a helper it calls) of more characters is not compared, and says so (a lab's are 1 to 3 kB).
MAX_FUNCTION_CHARS = 100_000
#: Keywords that open a compound statement: after its ``:`` on the same line a new statement starts.
_COMPOUND = {"if", "elif", "else", "for", "while", "with", "try", "except", "finally", "def", "class", "async"}
_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+: an f-string is many tokens
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


class UncomparableError(ValueError):
    """A function that cannot be compared: the message says why, in the instructor's terms."""


@dataclass(frozen=True)
class Function:
    """One function of one submission, ready to compare.

    ``lines``: the source lines shown in the report, the function's then its helpers';
    ``where``: for each line, ``(cell, line)`` where the student sees it (``cell`` as
    :class:`~labtools.checks.submission.SubmissionSource` names it) or ``None``;
    ``grams``: each k-gram (a tuple of :data:`K` normalized tokens, or a shorter statement's
    tokens) with the indexes into ``lines`` of the lines it covers.
    """

    name: str
    lines: tuple[str, ...]
    where: tuple[tuple[str, int] | None, ...]
    grams: dict[tuple[str, ...], frozenset[int]]


def read_functions(notebook: Path, lab: str, names: tuple[str, ...]) -> tuple[dict[str, Function], list[str]]:
    """``({name: Function}, notes)`` of the functions ``names`` a saved notebook defines.

    Raises :class:`~labtools.checks.submission.SubmissionError` when the file is not a readable
    notebook; a function that cannot be compared is left out with a note saying why.
    """
    return source_functions(extract_submission(notebook, lab), names)


def source_functions(source: str, names: tuple[str, ...]) -> tuple[dict[str, Function], list[str]]:
    """``({name: Function}, notes)`` of the functions ``names`` that ``source`` defines at top level."""
    defined = defined_functions(source)
    lines = str(source).split("\n")
    origins = getattr(source, "origins", ())
    aliases = _module_aliases(source)
    helpers = {name for name in defined if name not in names}
    found, notes = {}, []
    for name in names:
        if name not in defined:
            continue
        parts = [name] + (sorted(_reachable(defined, name) & helpers) if helpers else [])
        shown, where, grams = [], [], {}
        try:
            for part in parts:
                node = defined[part]
                first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                text = "\n".join(lines[first:node.end_lineno])
                who = "it" if part == name else f"its helper {part}"
                if len(text) > MAX_FUNCTION_CHARS:
                    raise UncomparableError(f"{who} is {len(text) / 1000:,.0f} kB of code, more than the "
                                            f"{MAX_FUNCTION_CHARS // 1000} kB compared")
                offset = len(shown)
                try:
                    part_grams = function_grams(text, node, aliases, helpers)
                except UncomparableError as error:
                    raise UncomparableError(f"{who} {error}") from None
                for gram, covered in part_grams.items():
                    grams[gram] = grams.get(gram, frozenset()) | {offset + i for i in covered}
                shown += lines[first:node.end_lineno] + [""]
                where += [origins[i] if i < len(origins) else None for i in range(first, node.end_lineno)] + [None]
        except UncomparableError as error:
            notes.append(f"{name} not compared: {error}")
            continue
        found[name] = Function(name, tuple(shown[:-1]), tuple(where[:-1]), grams)
    return found, notes


def function_grams(text: str, node: ast.AST, aliases: dict[str, str],
                   helpers: set[str]) -> dict[tuple[str, ...], set[int]]:
    """The k-grams of one top-level definition ``node`` whose source is ``text`` (its first line
    is line 1), each with the 0-based lines of ``text`` it covers."""
    grams: dict[tuple[str, ...], set[int]] = {}
    for statement in normalized_statements(text, node, aliases, helpers):
        if len(statement) < MIN_STATEMENT_TOKENS:
            continue
        for start in range(max(1, len(statement) - K + 1)):
            window = statement[start:start + K]
            grams.setdefault(tuple(token for token, _ in window), set()).update(line for _, line in window)
    return grams


def normalized_statements(text: str, node: ast.AST, aliases: dict[str, str],
                          helpers: set[str]) -> list[list[tuple[str, int]]]:
    """The normalized tokens of each statement of ``text``, with the 0-based line of each."""
    bound = _bound_names(node)
    local_aliases = {**aliases, **_module_aliases(ast.Module(body=[n for n in ast.walk(node) if isinstance(
        n, (ast.Import, ast.ImportFrom))], type_ignores=[]))}
    bound -= set(local_aliases)
    docstrings = _docstring_lines(node)
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type not in _SKIPPED]
    except (tokenize.TokenError, SyntaxError) as error:  # extract_submission keeps only code that parses
        raise UncomparableError(f"cannot be tokenized ({error})") from None
    statements: list[list[tuple[str, int]]] = [[]]
    depth, fstrings, header = 0, 0, False
    for i, token in enumerate(tokens):
        line = token.start[0] - 1
        current = statements[-1]
        if fstrings:  # inside an f-string (3.12+): already one S
            fstrings += (token.type == _FSTRING_START) - (token.type == _FSTRING_END)
            continue
        if token.type == tokenize.NEWLINE or (token.type == tokenize.OP and token.string == ";"):
            statements.append([])
            header = False
            continue
        if token.type == tokenize.NAME:
            previous = tokens[i - 1].string if i else ""
            following = tokens[i + 1].string if i + 1 < len(tokens) else ""
            if not current and token.string in _COMPOUND:
                header = True
            if keyword.iskeyword(token.string) or previous == ".":
                word = token.string
            elif depth and following == "=" and not (current and current[0][0] in ("def", "async", "lambda")):
                word = token.string  # a keyword argument of a call
            elif token.string in bound:
                word = "V"
            elif token.string in helpers:
                word = "F"
            else:
                word = local_aliases.get(token.string, token.string)
        elif token.type == tokenize.STRING:
            if line in docstrings:
                continue
            word = "S"
        elif token.type == _FSTRING_START:
            fstrings, word = 1, "S"
        elif token.type == tokenize.NUMBER:
            word = _number(token.string)
        else:
            word = token.string
            depth += (word in "([{") - (word in ")]}") if len(word) == 1 else 0
        current.append((word, line))
        if header and word == ":" and depth == 0 and i + 1 < len(tokens) and tokens[i + 1].type != tokenize.NEWLINE:
            statements.append([])  # ``if x: y = 1``: the body is a statement of its own
            header = False
    return [s for s in statements if s]


def _number(text: str) -> str:
    """A number literal by its value: ``2.``, ``2.0`` and ``2_0e-1`` read alike."""
    try:
        return repr(ast.literal_eval(text))
    except (ValueError, SyntaxError, MemoryError, OverflowError):
        return text


def _bound_names(node: ast.AST) -> set[str]:
    """Names that ``node`` binds inside itself: parameters, assigned and deleted names, loop and
    comprehension variables, nested functions and classes, exception and import names."""
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not node:
            names.add(n.name)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
        elif isinstance(n, ast.alias):
            names.add((n.asname or n.name).split(".")[0])
    return names


def _module_aliases(source) -> dict[str, str]:
    """``{name: what it names}`` of imports under another name: ``import torch as T`` gives
    ``{"T": "torch"}``, ``from torch import nn as N`` gives ``{"N": "torch.nn"}``."""
    tree = source if isinstance(source, ast.AST) else _parse(str(source))
    aliases = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname})
        elif isinstance(node, ast.ImportFrom) and node.module:
            aliases.update({a.asname: f"{node.module}.{a.name}" for a in node.names if a.asname})
    return aliases


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return ast.Module(body=[], type_ignores=[])


def _docstring_lines(node: ast.AST) -> set[int]:
    """0-based lines (counted from ``node``'s first line) of the docstrings of ``node`` and its nested definitions."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    lines = set()
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            lines.update(range(body[0].lineno - first, body[0].end_lineno - first + 1))
    return lines
