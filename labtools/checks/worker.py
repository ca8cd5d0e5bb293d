"""The sandboxed side of the checks: ``python -m labtools.checks.worker <jobdir>``.

The parent (:mod:`labtools.checks.engine`) writes ``<jobdir>/job.pt``: the extracted submission
source and a list of calls. The worker limits its own resources, installs an audit hook that
refuses files outside its scratch folder, process creation and signals, executes the source as
the module ``submission`` (with a guarded ``__import__``), and performs the calls one by one.
For call ``i`` it writes ``started_<i>`` before and ``result_<i>.pt`` after: plain data only
(tensors, numbers, strings, lists, dicts of those) saved with :func:`torch.save`, which the parent
reads with ``weights_only=True``. Nothing it writes is trusted beyond its type: every comparison
happens in the parent.

:func:`perform_call` and :func:`encode` are also used in-process by ``run_public_checks``.
"""

from __future__ import annotations

import builtins
import math
import os
import sys
import time

import torch

#: Bytes of the student's stdout/stderr kept by the capped writers.
OUTPUT_CAP = 20_000
BLOCKED_IMPORTS = (
    "sys", "os", "subprocess", "importlib", "builtins", "ctypes", "inspect", "gc", "pickle", "shutil",
    "socket", "signal", "threading", "multiprocessing", "marshal", "autograder", "sklearn.metrics",
    "torchmetrics", "pytorch_metric_learning", "faiss", "resource", "pty", "runpy", "code",
    "labtools.neighbors", "labtools.losses", "labtools.metrics", "tracemalloc",
)


# ----------------------------------------------------------------------------------------------
# plain values


def encode(value, depth: int = 0):
    """A plain, ``weights_only``-loadable version of ``value`` (unknown objects become their type)."""
    if depth > 6:
        return {"__object__": "too deeply nested"}
    if isinstance(value, torch.Tensor):
        t = value.detach()
        return {"__tensor__": t.to("cpu").clone() if t.numel() <= 5_000_000 else torch.empty(0),
                "device": str(t.device), "too_large": t.numel() > 5_000_000}
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)[:1000]
    if isinstance(value, (list, tuple)):
        items = [encode(v, depth + 1) for v in list(value)[:100_000]]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in list(value.items())[:1000]]}
    try:  # numpy scalars and arrays
        import numpy

        if isinstance(value, numpy.generic):
            return encode(value.item(), depth + 1)
        if isinstance(value, numpy.ndarray):
            return {"__object__": "numpy.ndarray"}
    except Exception:
        pass
    return {"__object__": f"{type(value).__module__}.{type(value).__qualname__}"}


def decode(value):
    """Inverse of :func:`encode` in the parent: tensors, tuples, dicts; unknown objects stay markers."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value and isinstance(value["__tensor__"], torch.Tensor):
            return value["__tensor__"]
        if "__tuple__" in value and isinstance(value["__tuple__"], list):
            return tuple(decode(v) for v in value["__tuple__"])
        if "__dict__" in value and isinstance(value["__dict__"], list):
            out = {}
            for pair in value["__dict__"]:
                if isinstance(pair, list) and len(pair) == 2:
                    key = decode(pair[0])
                    try:
                        out[key] = decode(pair[1])
                    except TypeError:
                        pass
            return out
        if "__object__" in value:
            return Opaque(str(value["__object__"]))
        return Opaque("dict")
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return Opaque(type(value).__name__)


class Opaque:
    """A value the worker could not send back as plain data: only its type name is known."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


# ----------------------------------------------------------------------------------------------
# arguments


def build_arg(spec, scratch: str):
    """Arguments are plain values, or dicts ``{"__spec__": kind, ...}`` built here."""
    if isinstance(spec, list):
        return [build_arg(s, scratch) for s in spec]
    if not isinstance(spec, dict) or "__spec__" not in spec:
        return spec
    kind = spec["__spec__"]
    if kind == "convnet":
        from labtools.models import ConvNet, load_checkpoint

        if spec.get("checkpoint"):
            net, _ = load_checkpoint(spec["checkpoint"])
            return net
        torch.manual_seed(int(spec.get("seed", 0)))
        return ConvNet(num_classes=int(spec.get("num_classes", 10))).eval()
    if kind == "dataset":
        from torch.utils.data import TensorDataset

        return TensorDataset(spec["images"], spec["labels"])
    if kind == "fixed_test_set":
        from labtools.data import fixed_test_set

        return fixed_test_set(spec.get("name", "MNIST"), download=False)
    if kind == "leaf":  # a tensor that requires a gradient
        return spec["tensor"].detach().clone().requires_grad_(True)
    if kind == "generator":
        return torch.Generator().manual_seed(int(spec["seed"]))
    if kind == "scratch_path":
        return os.path.join(scratch, spec["name"])
    raise ValueError(f"unknown argument spec {kind!r}")


# ----------------------------------------------------------------------------------------------
# instrumentation


class _OpCounter(torch.overrides.TorchFunctionMode):
    """Counts torch calls and records the most elements of any tensor they return (``largest``)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        result = func(*args, **(kwargs or {}))
        for value in (result if isinstance(result, (tuple, list)) else (result,)):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return result


def _call_counted(func, args, kwargs, namespace):
    """Call ``func`` counting line events in frames of ``namespace``'s code and torch calls, and
    recording the largest tensor a torch call returned (its number of elements)."""
    lines = [0]

    def local(frame, event, arg):
        if event == "line":
            lines[0] += 1
        return local

    def tracer(frame, event, arg):
        if frame.f_globals is namespace:
            return local
        return None

    ops = _OpCounter()
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        with ops:
            value = func(*args, **kwargs)
    finally:
        sys.settrace(previous)
    return value, {"lines": lines[0], "ops": ops.count, "largest": ops.largest}


#: Sizes in bytes of the two allocations that bracket a measured call: finding both, with their
#: addresses, in the profiler's record proves that the session that saw the call is the one
#: started here (a call that stops or replaces the profiler cannot be measured).
_SENTINEL_BYTES = (4093, 4099)


def _tree(nodes):
    """Every event of the profiler's event tree (any order)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def _span_bytes(meta) -> int:
    """Bytes of memory a tensor operand spans (its view's extent: an expanded view spans no more
    than its source, a view of a large buffer spans that buffer's part it reaches)."""
    sizes, strides = list(getattr(meta, "sizes", ()) or ()), list(getattr(meta, "strides", ()) or ())
    try:
        itemsize = int(meta.dtype.itemsize)
    except Exception:
        itemsize = 8
    if any(s == 0 for s in sizes):
        return 0
    if len(strides) == len(sizes):
        return (1 + sum((s - 1) * abs(t) for s, t in zip(sizes, strides))) * itemsize
    return math.prod(sizes) * itemsize


def _memory_counts(results, first_ptr: int, last_ptr: int) -> dict | None:
    """``peak_bytes``, ``largest_operand_bytes`` of the events between the two sentinels, or ``None``
    when they are not both in ``results``."""
    allocations, operands = [], []
    for node in _tree(results.experimental_event_tree()):
        tag = str(node.tag)
        if tag.endswith("Allocation"):
            allocations.append(node)
        elif tag.endswith("TorchOp"):
            operands.append(node)
    # in time order; at equal times (not seen in practice) frees before allocations, the same every run
    allocations.sort(key=lambda n: (n.start_time_ns, n.extra_fields.alloc_size > 0))
    marks = [next((i for i, n in enumerate(allocations) if n.extra_fields.ptr == ptr
                   and n.extra_fields.alloc_size == size), None)
             for ptr, size in ((first_ptr, _SENTINEL_BYTES[0]), (last_ptr, _SENTINEL_BYTES[1]))]
    if None in marks or marks[0] >= marks[1]:
        return None
    start, end = allocations[marks[0]].start_time_ns, allocations[marks[1]].start_time_ns
    live: dict[int, int] = {}
    current = peak = 0
    for node in allocations[marks[0] + 1:marks[1]]:
        ptr, size = node.extra_fields.ptr, node.extra_fields.alloc_size
        if size > 0:
            live[ptr] = live.get(ptr, 0) + size
            current += size
        elif ptr in live:  # a block allocated before the call does not count when freed
            current -= live.pop(ptr)
        peak = max(peak, current)
    largest = 0
    for node in operands:
        if start <= node.start_time_ns <= end:
            for value in node.extra_fields.inputs:
                for meta in (value if isinstance(value, list) else [value]):
                    if hasattr(meta, "sizes") and hasattr(meta, "strides"):
                        largest = max(largest, _span_bytes(meta))
    return {"peak_bytes": peak, "largest_operand_bytes": largest}


class MeasurementError(RuntimeError):
    """The memory of a call could not be measured (the call stopped or replaced the profiler)."""


def _call_measured(run, backward: bool):
    """``run()`` -> ``(value, counts)`` measured by torch's profiler and :mod:`tracemalloc`.

    Adds to the counts ``peak_bytes``: the most bytes that torch's CPU allocator had handed out
    during the call and not yet taken back (blocks allocated before the call and freed during it
    do not count), whatever made the allocations (vmap's batched tensors, autograd, in-place and
    ``out=`` operations, ...); ``largest_operand_bytes``: the most memory one tensor read or
    written by an operator spans (a buffer allocated before the call counts here); and
    ``python_peak_bytes``: the peak of Python's own allocations above the start (numpy arrays
    included). With ``backward``, a 0-d result that requires a gradient is back-propagated inside
    the measurement. Runs on one thread, so that the figures do not depend on the thread count.
    """
    import tracemalloc

    from torch._C._profiler import _ExperimentalConfig
    from torch.autograd import (ProfilerActivity, ProfilerConfig, ProfilerState, _disable_profiler,
                                _enable_profiler, _prepare_profiler)

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # kineto's start/stop lines and GPU probing errors
    if torch.autograd._profiler_enabled():
        raise MeasurementError("a profiler is already running")
    config = ProfilerConfig(ProfilerState.KINETO, True, True, False, False, False, _ExperimentalConfig())
    activities = {ProfilerActivity.CPU}
    threads, tracing = torch.get_num_threads(), tracemalloc.is_tracing()
    torch.set_num_threads(1)
    if not tracing:
        tracemalloc.start()
    results = None
    try:
        _prepare_profiler(config, activities)
        _enable_profiler(config, activities)
        try:
            tracemalloc.reset_peak()
            python_start = tracemalloc.get_traced_memory()[0]
            first = torch.empty(_SENTINEL_BYTES[0], dtype=torch.uint8)
            value, counts = run()
            if (backward and isinstance(value, torch.Tensor) and value.requires_grad and value.numel() == 1):
                value.backward()
            last = torch.empty(_SENTINEL_BYTES[1], dtype=torch.uint8)
            if not tracemalloc.is_tracing():
                raise MeasurementError("the call stopped tracemalloc, which measures it")
            python_peak = tracemalloc.get_traced_memory()[1] - python_start
        finally:
            if torch.autograd._profiler_enabled():
                results = _disable_profiler()
    finally:
        if not tracing:
            tracemalloc.stop()
        torch.set_num_threads(threads)
    measured = _memory_counts(results, first.data_ptr(), last.data_ptr()) if results is not None else None
    if measured is None:
        raise MeasurementError("the call stopped or replaced the profiler that measures it")
    return value, {**counts, **measured, "python_peak_bytes": max(int(python_peak), 0)}


def _where(error: BaseException, own: dict) -> str:
    """``"line N of FILE"`` of the innermost frame of the submission's code in ``error``'s
    traceback: code compiled as ``<submission>`` (the worker), or code whose globals are ``own``
    (in-process: the notebook's cells); the parent turns it into the line of the cell
    (:func:`labtools.checks.submission.locate`)."""
    frames, tb = [], error.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    for frame, line in reversed(frames):
        filename = frame.f_code.co_filename
        if filename == "<submission>" or frame.f_globals is own:
            return f"line {line} of {filename}"
    return ""


def perform_call(namespace: dict, call: dict, scratch: str) -> dict:
    """Perform one call on the functions of ``namespace``; never raises."""
    name = call["function"]
    func = namespace.get(name)
    if not callable(func):
        return {"ok": False, "error": f"{name} is not defined", "value": None, "counts": {}}
    try:
        args = [build_arg(a, scratch) for a in call.get("args", [])]
        kwargs = {k: build_arg(v, scratch) for k, v in call.get("kwargs", {}).items()}
    except Exception as error:  # a grader-side problem (data missing, ...)
        return {"ok": False, "error": f"grader could not build the inputs: {type(error).__name__}: {error}",
                "value": None, "counts": {}, "grader_error": True}
    start = time.perf_counter()
    try:
        if call.get("instrument"):
            run = lambda: _call_counted(func, args, kwargs, getattr(func, "__globals__", namespace))  # noqa: E731
        else:
            run = lambda: (func(*args, **kwargs), {})  # noqa: E731
        value, counts = _call_measured(run, bool(call.get("backward"))) if call.get("memory") else run()
        for step in call.get("then", []):
            if "attr" in step:
                value = getattr(value, str(step["attr"]))
            else:
                value = value(*[build_arg(a, scratch) for a in step.get("call", [])])
    except MemoryError:
        return {"ok": False, "error": "MemoryError: ran out of memory", "value": None, "counts": {}}
    except MeasurementError as error:
        return {"ok": False, "error": f"the memory use could not be measured: {error}", "value": None, "counts": {}}
    except RecursionError:
        return {"ok": False, "error": "RecursionError: maximum recursion depth exceeded", "value": None, "counts": {}}
    except BaseException as error:  # SystemExit and KeyboardInterrupt included
        where = _where(error, getattr(func, "__globals__", namespace))
        text = f"{type(error).__name__}: {str(error)[:300]}" + (f" ({where})" if where else "")
        return {"ok": False, "error": text, "value": None, "counts": {}}
    counts["seconds"] = time.perf_counter() - start
    return {"ok": True, "error": "", "value": encode(value), "counts": counts}


# ----------------------------------------------------------------------------------------------
# the sandbox


class _CappedWriter:
    def __init__(self, stream, cap: int):
        self.stream, self.left = stream, cap

    def write(self, text):
        text = str(text)
        if self.left > 0:
            piece = text[: self.left]
            self.left -= len(piece)
            try:
                self.stream.write(piece)
                if self.left <= 0:
                    self.stream.write("\n[output truncated]\n")
                self.stream.flush()
            except Exception:
                pass
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _vm_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def _limit_resources(memory_bytes: int, cpu_seconds: int) -> None:
    import resource

    def set_limit(which, value):
        try:
            soft, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    set_limit(resource.RLIMIT_AS, _vm_bytes() + memory_bytes)
    set_limit(resource.RLIMIT_CPU, cpu_seconds)
    set_limit(resource.RLIMIT_FSIZE, 512 << 20)
    set_limit(resource.RLIMIT_NPROC, 0)  # no new processes (ignored for root: the audit hook covers it)
    set_limit(resource.RLIMIT_CORE, 0)


def _install_audit_hook(scratch: str, jobdir: str, deny_read: list[str]) -> None:
    scratch = os.path.realpath(scratch)
    jobdir = os.path.realpath(jobdir)
    deny_read = [os.path.realpath(p) for p in deny_read]
    blocked_events = {
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
        "subprocess.Popen", "os.startfile", "pty.spawn", "socket.connect", "socket.bind", "os.remove",
        "os.rmdir", "os.rename", "os.chmod", "os.chown", "os.truncate",
        "shutil.rmtree", "os.link", "os.symlink", "sys.settrace", "sys.setprofile", "ctypes.dlopen",
        "os.removexattr", "os.setxattr", "signal.pthread_kill",
    }

    def inside(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder + os.sep)

    def hook(event, args):
        if event in blocked_events:
            if event in ("os.remove", "os.rename") and args and all(
                inside(os.path.realpath(os.fsdecode(a)), scratch) or inside(os.path.realpath(os.fsdecode(a)), jobdir)
                for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))
            ):
                return  # renaming inside its own folders (save_checkpoint, results)
            if event == "sys.settrace" and getattr(_install_audit_hook, "tracing_allowed", False):
                return
            raise PermissionError(f"{event} is not allowed while checking")
        if event == "open" and args:
            path, mode, flags = args[0], args[1], args[2]
            if isinstance(path, int):
                return
            try:
                real = os.path.realpath(os.fsdecode(path))
            except Exception:
                return
            writing = (mode is not None and any(m in str(mode) for m in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            )
            if writing and not (inside(real, scratch) or inside(real, jobdir) or real == "/dev/null"):
                raise PermissionError(f"writing {real} is not allowed while checking")
            if any(inside(real, d) for d in deny_read):
                raise PermissionError(f"reading {real} is not allowed while checking")

    sys.addaudithook(hook)

    # torch.save/torch.load open files in C++, out of the audit hook's sight: check their paths here
    import torch.serialization as serialization

    real_save, real_load = serialization.save, serialization.load

    def checked(path, writing):
        if isinstance(path, (str, bytes, os.PathLike)):
            real = os.path.realpath(os.fsdecode(path))
            if writing and not (inside(real, scratch) or inside(real, jobdir)):
                raise PermissionError(f"writing {real} is not allowed while checking")
            if any(inside(real, d) for d in deny_read):
                raise PermissionError(f"reading {real} is not allowed while checking")

    def save(obj, f, *args, **kwargs):
        checked(f, True)
        return real_save(obj, f, *args, **kwargs)

    def load(f, *args, **kwargs):
        checked(f, False)
        return real_load(f, *args, **kwargs)

    torch.save = serialization.save = save
    torch.load = serialization.load = load


def _guarded_import(real_import, namespace):
    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        if globals is namespace:
            full = name or ""
            candidates = [full] + [f"{full}.{f}" for f in (fromlist or ()) if isinstance(f, str)]
            for candidate in candidates:
                if candidate in ("os.path", "posixpath") or (candidate == "os" and fromlist and set(fromlist) <= {"path"}):
                    continue
                if candidate == "os" and not fromlist:
                    continue  # ``import os``: the policy scan allows only os.path on it
                for banned in BLOCKED_IMPORTS:
                    if candidate == banned or candidate.startswith(banned + "."):
                        raise ImportError(f"importing {candidate} is not allowed while checking")
        return real_import(name, globals, locals, fromlist, level)

    return guarded


def _safe_builtins(namespace):
    safe = dict(vars(builtins))
    for name in ("open", "exec", "eval", "compile", "breakpoint", "input", "help", "exit", "quit",
                 "globals", "locals", "vars", "memoryview"):
        safe.pop(name, None)
    safe["__import__"] = _guarded_import(builtins.__import__, namespace)
    return safe


def main(jobdir: str) -> int:
    jobdir = os.path.abspath(jobdir)
    job = torch.load(os.path.join(jobdir, "job.pt"), weights_only=True)
    scratch = job["scratch"]
    os.chdir(scratch)
    torch.set_num_threads(1)
    sys.stdout = _CappedWriter(sys.__stdout__, OUTPUT_CAP)
    sys.stderr = _CappedWriter(sys.__stderr__, OUTPUT_CAP)
    # warm up what the calls need before limits and the audit hook are in place
    import labtools.data  # noqa: F401
    import labtools.models  # noqa: F401
    import torch.utils.data as _data  # noqa: F401
    from labtools.runtime import retain_freed_memory

    retain_freed_memory()  # a DeviceLoader on the CPU calls it; it opens the C library, which the hook forbids

    _limit_resources(int(job.get("memory_bytes", 4 << 30)), int(job.get("cpu_seconds", 600)))
    _install_audit_hook(scratch, jobdir, list(job.get("deny_read", [])))

    namespace = {"__name__": "submission"}
    namespace["__builtins__"] = _safe_builtins(namespace)
    try:
        code = compile(job["source"], "<submission>", "exec")
        exec(code, namespace)  # noqa: S102 (the point of the worker)
        load_error = ""
    except BaseException as error:
        load_error = f"the submission's code failed to load: {type(error).__name__}: {str(error)[:300]}"
    for i, call in enumerate(job["calls"]):
        if i < int(job.get("start", 0)) or i in set(job.get("skip", [])):
            continue
        with open(os.path.join(jobdir, f"started_{i}"), "w"):
            pass
        if load_error:
            result = {"ok": False, "error": load_error, "value": None, "counts": {}}
        else:
            _install_audit_hook.tracing_allowed = True
            result = perform_call(namespace, call, scratch)
            _install_audit_hook.tracing_allowed = False
        path = os.path.join(jobdir, f"result_{i}.pt")
        try:
            torch.save(result, path + ".tmp")
        except Exception as error:
            torch.save({"ok": False, "error": f"the result could not be saved: {type(error).__name__}",
                        "value": None, "counts": {}}, path + ".tmp")
        os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m labtools.checks.worker <jobdir>", file=sys.__stderr__)
        sys.exit(2)
    code = main(sys.argv[1])
    sys.__stdout__.flush()
    os._exit(code)
