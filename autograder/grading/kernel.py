"""The autograde kernel inside the OS sandbox: a jupyter_client kernel manager.

:class:`SandboxedKernelManager` starts the notebook's kernel inside bubblewrap
(:class:`labtools.sandbox.Jail`). The kernel talks to nbgrader over jupyter_client's
``ipc`` transport: its connection file and its sockets live in a private folder, the only
folder of the grader's disk it can write, so it needs no network. Its working directory (the
autograded copy of the submission) is a size-limited tmpfs in which the submitted files are bound
read-only: what the notebook writes stays inside the sandbox. A ``pids`` cgroup caps its
processes where the machine allows one, and a watchdog ends the kernel when it fills its
connection folder.

:class:`autograder.grading.preprocessors.RobustExecute` uses it when its ``sandbox`` option is on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from jupyter_client import AsyncKernelManager
from traitlets import Int, List, Unicode

from labtools import sandbox

#: Bytes the kernel may leave in its connection folder before it is stopped.
RUNTIME_BYTES = 16 << 20


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in the sandbox (see the module docstring)."""

    masked = List(Unicode(), help="paths hidden from the kernel (graded deliverables)").tag(config=True)
    copy_bytes = Int(1 << 30, help="size of the tmpfs holding the kernel's working directory").tag(config=True)
    max_pids = Int(128, help="most processes of one kernel's sandbox").tag(config=True)

    async def _async_pre_start_kernel(self, **kw):
        sandbox.require()
        self._runtime = Path(tempfile.mkdtemp(prefix="kernel-"))
        self.transport = "ipc"
        self.connection_file = str(self._runtime / "kernel.json")
        self.ip = str(self._runtime / "ipc")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        workdir = Path(kw.get("cwd") or os.getcwd())
        env = {**sandbox.student_env(), "LABTOOLS_FAST": os.environ.get("LABTOOLS_FAST", "1"),
               "JUPYTER_RUNTIME_DIR": str(self._runtime), "JPY_PARENT_PID": "1"}
        jail = sandbox.Jail(writable=[self._runtime], readable=[str(p) for p in sandbox.shared_inputs()],
                            masked=list(self.masked), env=sandbox.jailed_env(env), workdir=workdir,
                            working_copy=True, copy_bytes=self.copy_bytes)
        self._forks = sandbox.ForkLimit(self.max_pids)
        kw["env"] = {"PATH": env["PATH"]}
        await super()._async_launch_kernel(self._forks.wrap(jail.command(kernel_cmd, new_session=False)), **kw)
        self._watch = threading.Event()
        threading.Thread(target=self._watchdog, daemon=True).start()

    def _watchdog(self) -> None:
        """Stop the kernel when it fills its connection folder (the one folder it writes on disk)."""
        while not self._watch.wait(0.5):
            size, entries = sandbox.disk_usage(self._runtime, limit_entries=1000)
            if size > RUNTIME_BYTES or entries > 1000:
                self.log.warning("the kernel filled its connection folder: stopped")
                process = getattr(self.provisioner, "process", None)
                if process is not None:
                    try:
                        os.killpg(process.pid, 9)
                    except (ProcessLookupError, PermissionError):
                        pass
                return

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if getattr(self, "_watch", None) is not None:
            self._watch.set()
        if getattr(self, "_forks", None) is not None:
            self._forks.close()
        if getattr(self, "_runtime", None) is not None and not restart:
            shutil.rmtree(self._runtime, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources
