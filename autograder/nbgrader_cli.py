"""Running nbgrader (and the kit) as child processes of the interpreter that runs the kit."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def tool_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default ``os.environ``) plus ``extra``, with this interpreter's scripts first on PATH.

    nbgrader runs ``alembic`` (its gradebook migrations) as a command. In a virtual environment
    that is not activated (``make`` calls ``.venv/bin/python`` directly) that command is only
    found in the interpreter's own ``bin`` folder.
    """
    env = dict(os.environ if base is None else base)
    env.update(extra)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([scripts, env.get("PATH", "")]) if env.get("PATH") else scripts
    return env


def skip_slow_optional_imports() -> None:
    """Mark ``rfc3987_syntax`` absent in this process, before nbformat or nbgrader is imported.

    jsonschema imports that optional package (its "iri" format checks, which no notebook schema
    uses) whenever it is installed, and it compiles 38 lark grammars on import: about 2 s of CPU in
    every process that reads a notebook. jsonschema skips those checks when the import fails.
    """
    sys.modules.setdefault("rfc3987_syntax", None)
