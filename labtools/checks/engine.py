"""Running checks: in-process (``run_public_checks``) or in a sandboxed worker process.

:func:`evaluate` is the common part: it refuses code that breaks the rules (forbidden libraries,
escape hatches), gives zero to checks of missing functions, prepares each check's calls, has a
runner perform them, and judges the outcomes in this process. :func:`run_sandboxed` is the runner
of the grader and of ``python -m labtools.checks``: one worker process at a time, a wall-clock
limit per call enforced here (the process group is killed), and a fresh worker for the calls left
after a crash or a timeout.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from labtools import sandbox
from labtools.checks.registry import Call, Check, CheckResult, Context, Outcome, checks_for
from labtools.checks.submission import (SubmissionSource, _reachable, defined_functions, is_cell_file, locate,
                                       scoped_violations)
from labtools.checks.worker import decode, perform_call
from labtools.labs import lab, lab_ids

__all__ = ["evaluate", "run_sandboxed", "run_public_checks", "SandboxLimits"]



class SandboxLimits:
    """Limits of a worker: seconds per call, memory on top of the interpreter's, CPU seconds, bytes
    of files it may leave, processes.

    ``os_sandbox``: ``"required"`` runs the worker inside bubblewrap (:mod:`labtools.sandbox`)
    and fails where it cannot; ``"auto"`` (students checking their own work) uses it where it
    works; ``"off"`` never. ``readable`` adds read-only folders to the jail and ``masked`` hides
    paths inside them.
    """

    def __init__(self, call_seconds: float = 60.0, memory_bytes: int = 4 << 30, cpu_seconds: int = 600,
                 startup_seconds: float = 120.0, deny_read: list[str] | None = None, os_sandbox: str = "auto",
                 readable: list[str] | None = None, masked: list[str] | None = None, disk_bytes: int = 1 << 30,
                 max_pids: int = 64):
        if os_sandbox not in ("required", "auto", "off"):
            raise ValueError(f"os_sandbox must be 'required', 'auto' or 'off', got {os_sandbox!r}")
        self.call_seconds = call_seconds
        self.memory_bytes = memory_bytes
        self.cpu_seconds = cpu_seconds
        self.startup_seconds = startup_seconds
        self.deny_read = list(deny_read or [])
        self.os_sandbox = os_sandbox
        self.readable = list(readable or [])
        self.masked = list(masked or [])
        self.disk_bytes = disk_bytes
        self.max_pids = max_pids

    def sandboxed(self) -> bool:
        """Whether workers run inside bubblewrap (raises SandboxUnavailable when required but absent)."""
        if self.os_sandbox == "required":
            sandbox.require()
            return True
        return self.os_sandbox == "auto" and sandbox.unavailable_reason() is None


def evaluate(checks: list[Check], ctx: Context, runner: Callable[[list[Call]], list[Outcome]],
             defined: set[str] | None = None) -> list[CheckResult]:
    """Judge ``checks``; ``runner`` performs the calls of those that may run, all at once."""
    results: dict[str, CheckResult] = {}
    refused, _ = scoped_violations(ctx.source) if ctx.source is not None else ({}, None)
    everywhere = refused.get("", [])
    planned: list[tuple[Check, list[int], object]] = []
    calls: list[Call] = []
    keys: dict[str, int] = {}
    for check in checks:
        if check.kind == "code":
            broken = everywhere + refused.get(check.function, [])
            if broken:
                results[check.id] = CheckResult(check, 0.0, f"{check.function} breaks the rules of the checks: "
                                                + "; ".join(broken[:3]))
                continue
            if defined is not None and check.function not in defined:
                results[check.id] = CheckResult(check, 0.0, f"{check.function} is not defined in the notebook")
                continue
        try:
            check_calls, state = check.prepare()
        except Exception as error:
            results[check.id] = CheckResult(check, 0.0, f"grader error preparing the check: {error}",
                                            grader_error=True)
            continue
        indices = []
        for call in check_calls:
            if call.key is not None and call.key in keys:
                indices.append(keys[call.key])
                continue
            calls.append(call)
            indices.append(len(calls) - 1)
            if call.key is not None:
                keys[call.key] = len(calls) - 1
        planned.append((check, indices, state))
    outcomes = runner(calls) if calls else []
    # a traceback's "(line N of <submission>)" names the line of the cell instead
    outcomes = [dataclasses.replace(o, error=locate(o.error, ctx.source)) if o.error else o for o in outcomes]
    for check, indices, state in planned:
        mine = [outcomes[i] for i in indices]
        try:
            passed, message = check.judge(mine, state, ctx)
        except Exception as error:  # a malformed value the judge did not expect
            passed, message = False, f"the result could not be checked: {type(error).__name__}: {error}"
        results[check.id] = CheckResult(check, check.points if passed else 0.0, message,
                                        grader_error=not passed and any(o.grader_error for o in mine))
    if callable(getattr(runner, "cleanup", None)):
        runner.cleanup()
    return [results[c.id] for c in checks]


# ----------------------------------------------------------------------------------------------
# in-process


def _global_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_names(const)
    return names


def _source_of(obj) -> str | None:
    """Source of a function and of the functions of its namespace it calls (transitively), as a
    :class:`SubmissionSource` whose lines name their notebook cell and line there (IPython compiles
    each cell as a file of its own: the line in that file is the line in the cell)."""
    import textwrap

    namespace = getattr(obj, "__globals__", {})
    parts, seen, stack = [], set(), [obj]
    files: dict[str, str] = {}
    while stack:
        func = stack.pop()
        if id(func) in seen:
            continue
        seen.add(id(func))
        try:
            lines, first = inspect.getsourcelines(func)
        except (OSError, TypeError):
            if func is obj:
                return None
            continue
        try:
            filename = inspect.getfile(func)
        except TypeError:
            filename = ""
        if filename and filename not in files:
            files[filename] = (f"the cell defining {func.__name__}" if is_cell_file(filename)
                               else os.path.basename(filename))
        text = textwrap.dedent("".join(lines)).rstrip("\n")
        origin = files.get(filename)
        parts.append([(line, (origin, first + k) if origin and first else None)
                      for k, line in enumerate(text.split("\n"))])
        codes = ([m.__code__ for m in vars(func).values() if inspect.isfunction(m)] if inspect.isclass(func)
                 else [func.__code__])
        for name in set().union(*map(_global_names, codes)):
            value = namespace.get(name)
            if inspect.isfunction(value) and value.__globals__ is namespace:
                stack.append(value)
    lines, origins = [], []
    for k, part in enumerate(reversed(parts)):
        if k:
            lines.extend(["", ""])
            origins.extend([None, None])
        lines.extend(line for line, _ in part)
        origins.extend(origin for _, origin in part)
    return SubmissionSource("\n".join(lines) + "\n", origins + [None], files)


def _run_inprocess(namespace: dict, scratch: Path) -> Callable[[list[Call]], list[Outcome]]:
    def runner(calls):
        outcomes = []
        for call in calls:
            raw = perform_call(namespace, call.as_job(), str(scratch))
            outcomes.append(Outcome(raw["ok"], decode(raw["value"]), raw["error"], raw["counts"], scratch,
                                    raw.get("grader_error", False)))
        return outcomes

    return runner


def run_public_checks(lab_id: str, name: str, obj) -> list[CheckResult]:
    """Run the public checks of ``name`` on ``obj`` in this process (the notebook's test cells).

    ``obj`` is the function, or for ``"checkpoint"`` the path of the checkpoint file. Prints a line
    per check with its points and raises AssertionError listing the failures.
    """
    checks = checks_for(lab_id, name, hidden=False)
    if not checks:
        raise ValueError(f"no public checks for {name!r} in {lab_id!r}")
    scratch = Path(tempfile.mkdtemp(prefix="labtools-check-"))
    try:
        if name == "checkpoint":
            ctx = Context(lab_id, obj=Path(obj))
            results = evaluate(checks, ctx, _run_inprocess({}, scratch))
        else:
            if not callable(obj):
                raise AssertionError(f"{name} should be a function, got {type(obj).__name__}")
            ctx = Context(lab_id, source=_source_of(obj), obj=obj)
            results = evaluate(checks, ctx, _run_inprocess({name: obj}, scratch), defined={name})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for result in results:
        print(result.line())
    earned = sum(r.earned for r in results)
    total = sum(r.check.points for r in results)
    print(f"public checks of {name}: {earned:g}/{total:g} points (the grader also runs hidden checks)")
    failures = [r for r in results if not r.passed]
    if failures:
        raise AssertionError(f"{len(failures)} public check(s) of {name} failed:\n"
                             + "\n".join(f"- {r.check.id}: {r.message}" for r in failures))
    return results


# ----------------------------------------------------------------------------------------------
# sandboxed


def _drop_links(folder: Path) -> None:
    """Remove the symbolic links in ``folder``: what sandboxed code left there is read by the
    trusted side, which must not be led to a file outside the sandbox."""
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                os.unlink(path)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


#: A worker's result file larger than this is not read (plain values of a check are far smaller).
MAX_RESULT_BYTES = 256 << 20


def _read_result(path: Path, scratch: Path) -> Outcome | None:
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_RESULT_BYTES:
        return Outcome(False, error=f"the result is larger than {MAX_RESULT_BYTES >> 20} MB", scratch=scratch)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        return Outcome(False, error=f"the worker's result could not be read: {type(error).__name__}", scratch=scratch)
    if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
        return Outcome(False, error="the worker's result is malformed", scratch=scratch)
    counts = raw.get("counts") if isinstance(raw.get("counts"), dict) else {}
    counts = {k: v for k, v in counts.items() if isinstance(k, str) and isinstance(v, (int, float))}
    error = raw.get("error") if isinstance(raw.get("error"), str) else ""
    try:
        value = decode(raw.get("value"))
    except Exception:
        value = None
    return Outcome(raw["ok"], value, error[:500], counts, scratch, bool(raw.get("grader_error", False)))


def _death(code: int | None, limits: SandboxLimits, timed_out: bool, stderr_tail: str) -> str:
    if timed_out:
        return f"timed out: no answer within {limits.call_seconds:g} s (an infinite loop?)"
    if code is not None and code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return f"used more than {limits.cpu_seconds} s of CPU time"
        if sig == signal.SIGKILL:
            return "the process was killed (out of memory?)"
        return f"the process died of signal {name}"
    hint = ""
    if "MemoryError" in stderr_tail or "bad_alloc" in stderr_tail or "can't allocate memory" in stderr_tail:
        hint = f" (ran out of memory: limit {limits.memory_bytes / 2**30:g} GB)"
    return f"the process exited with status {code} before finishing the call{hint}"


def run_sandboxed(source: str, limits: SandboxLimits | None = None,
                  workroot: str | os.PathLike | None = None) -> Callable[[list[Call]], list[Outcome]]:
    """A runner performing calls of ``source``'s functions in sandboxed worker processes."""
    limits = limits or SandboxLimits()
    jailed = limits.sandboxed()
    bases: list[Path] = []
    functions = defined_functions(source)

    def callees(name: str) -> set[str]:
        return _reachable(functions, name) | {name}

    def runner(calls: list[Call]) -> list[Outcome]:
        base = Path(tempfile.mkdtemp(prefix="labtools-sandbox-", dir=workroot)).resolve()
        bases.append(base)
        jobdir, scratch = base / "job", base / "scratch"
        jobdir.mkdir()
        scratch.mkdir()
        outcomes: list[Outcome | None] = [None] * len(calls)
        start = 0
        attempt = 0
        skip: set[int] = set()
        while start < len(calls):
            attempt += 1
            for stale in jobdir.glob("started_*"):
                stale.unlink()
            torch.save({"source": source, "calls": [c.as_job() for c in calls], "start": start,
                        "scratch": str(scratch), "memory_bytes": int(limits.memory_bytes),
                        "cpu_seconds": int(limits.cpu_seconds), "deny_read": limits.deny_read, "skip": sorted(skip)},
                       jobdir / "job.pt")
            out_path, err_path = jobdir / f"stdout_{attempt}.txt", jobdir / f"stderr_{attempt}.txt"
            command = [sys.executable, "-m", "labtools.checks.worker", str(jobdir)]
            env = sandbox.student_env()
            forks = None
            if jailed:
                forks = sandbox.ForkLimit(limits.max_pids)
                readable = [str(p) for p in sandbox.shared_inputs()] + limits.readable
                jail = sandbox.Jail(writable=[base], readable=readable, masked=limits.masked,
                                    env=sandbox.jailed_env(env), workdir=scratch)
                command, env = forks.wrap(jail.command(command)), {"PATH": env["PATH"]}
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(command, cwd=scratch, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        env=env, start_new_session=True)
            launched = time.monotonic()
            current, since, timed_out, overflow, measured = None, launched, False, "", launched
            while proc.poll() is None:
                started = [i for i in range(start, len(calls)) if (jobdir / f"started_{i}").exists()]
                if started and started[-1] != current:
                    current, since = started[-1], time.monotonic()
                limit = limits.call_seconds if current is not None else limits.startup_seconds
                if time.monotonic() - since > limit:
                    timed_out = True
                    _kill_group(proc)
                    break
                if time.monotonic() - measured > 0.2:
                    measured = time.monotonic()
                    size, entries = sandbox.disk_usage(base)
                    if size > limits.disk_bytes or entries > 10_000:
                        overflow = (f"wrote more than {limits.disk_bytes / 2**30:g} GB or 10,000 files "
                                    f"({size / 2**20:.0f} MB in {entries} entries)")
                        _kill_group(proc)
                        break
                time.sleep(0.02)
            _kill_group(proc)  # whatever it left behind in its group
            if forks is not None:
                forks.close()
            code = proc.returncode
            _drop_links(base)
            if overflow:
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir()
            finished = start
            for i in range(start, len(calls)):
                if i in skip:
                    finished = i + 1
                    continue
                outcome = _read_result(jobdir / f"result_{i}.pt", scratch)
                if outcome is None:
                    break
                outcomes[i] = outcome
                finished = i + 1
            if finished >= len(calls):
                break
            try:
                tail = err_path.read_bytes()[-4000:].decode("utf-8", "replace")
            except OSError:
                tail = ""
            reason = overflow or _death(code, limits, timed_out, tail)
            jail_failed = jailed and any(line.startswith("bwrap:") for line in tail.splitlines())
            if not (jobdir / f"started_{finished}").exists() and not timed_out:
                reason = "the checking process failed to start: " + (tail.strip().splitlines() or ["?"])[-1][:300]
            outcomes[finished] = Outcome(False, error=reason, scratch=scratch, grader_error=jail_failed)
            if timed_out or overflow:  # the other calls of that function, and of its callers, would do the same
                hanging = calls[finished].function
                for i in range(finished + 1, len(calls)):
                    if hanging in callees(calls[i].function) and i not in skip:
                        skip.add(i)
                        outcomes[i] = Outcome(False, error=reason + " (an earlier call of the function)",
                                              scratch=scratch)
            if not timed_out and not (jobdir / f"started_{finished}").exists():
                # the worker cannot even start: give up on the rest with the same reason
                for i in range(finished + 1, len(calls)):
                    outcomes[i] = Outcome(False, error=reason, scratch=scratch, grader_error=jail_failed)
                break
            start = finished + 1
        return outcomes

    runner.cleanup = lambda: [shutil.rmtree(b, ignore_errors=True) for b in bases]
    return runner


def check_source(source: str, lab_id: str, files: Path | None = None, hidden: bool = False,
                 limits: SandboxLimits | None = None, extra_checks: list[Check] | None = None,
                 workroot=None) -> list[CheckResult]:
    """All public checks of ``lab_id`` (plus ``extra_checks``) on extracted ``source``, sandboxed."""
    checks = checks_for(lab_id, hidden=False)
    checks = _by_function(lab_id, checks + list(extra_checks or []))
    defined = set(defined_functions(source))
    ctx = Context(lab_id, source=source, files=files)
    _, runnable = scoped_violations(source)  # the offending statements left out: the rest still runs
    return evaluate(checks, ctx, run_sandboxed(runnable, limits, workroot), defined=defined)


def _by_function(lab_id: str, checks: list[Check]) -> list[Check]:
    order = list(lab(lab_id).test_points)
    return sorted(checks, key=lambda c: (order.index(c.function) if c.function in order else 99, c.hidden))


def lab_of(notebook: Path) -> str:
    for lab_id in lab_ids():
        if lab_id in notebook.name or lab_id in str(notebook.parent):
            return lab_id
    raise ValueError(f"cannot tell the lab of {notebook}; pass --lab")
