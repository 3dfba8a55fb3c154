"""Run one tool in the sandbox: hand it to the zygote, stream its output, enforce the output limit, stop the tree.

:func:`run_sandboxed` is the whole life of one sandboxed run, seen from the worker:

- a uid of its own and pipes for stdin, stdout, stderr and the launcher's status (and a channel for a Python
  tool), handed with the run's spec to a pre-forked launcher of the zygote (:mod:`stepflow.sandbox.client`),
  whose init already sits in cgroups of its own and writes the run's limits into them;
- stdout and stderr read as they are produced, split into bounded lines handed to ``on_line``; a Python tool's
  channel lines handed to ``on_message``; more than ``max_output_bytes`` in total kills the tree at once;
- on ``asyncio.CancelledError`` (a cancel, or the activity's timeout) and on the optional ``deadline``: SIGTERM to
  the launcher's process group (the tool gets it; launcher and init ignore it), up to ``cancel_grace`` seconds,
  SIGKILL; a tool that exits on SIGTERM is gone as soon as it has exited;
- the end: the launcher's status pipe closes once the tool has been reaped; then every process left in the run's
  cgroup (or, without one, of its uid) is killed and waited for, the cgroup's accounting read and the cgroup
  removed. Only then does the run return (or re-raise the cancel).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import itertools
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepflow.errors import InternalError
from stepflow.sandbox import cgroups
from stepflow.sandbox.client import ZygoteClient
from stepflow.sandbox.limits import SandboxLimits
from stepflow.sandbox.pipes import Pipes, feed
from stepflow.sandbox.streams import LineSplitter
from stepflow.sandbox.uids import UID_POOL, pids_of_uid

LineSink = Callable[[str, str], None]
"""Called with ``("stdout" | "stderr", line)`` for each line the tool writes (bounded)."""
MessageSink = Callable[[dict[str, Any]], None]
"""Called with each JSON object an isolated Python tool sends on its channel."""

SANDBOX_ROOT = Path(tempfile.gettempdir()) / "stepflow-sandbox"
STDERR_TAIL_BYTES = 4096
CHUNK = 65536
_GONE_TIMEOUT = 10.0
_RUN_NUMBERS = itertools.count(1)


@dataclass
class SandboxResult:
    """How a sandboxed run ended, what it wrote and what it used."""

    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr_tail: bytes = b""
    cpu_time_ms: float | None = None
    max_rss_kb: int | None = None
    memory_peak_bytes: int | None = None
    oom_kills: int = 0
    pids_denied: int = 0
    output_exceeded: bool = False
    deadline_exceeded: bool = False
    setup_error: str | None = None
    exec_error: str | None = None
    wall_ms: float = 0.0
    start_seconds: float | None = None  # from the request to the tool's process started (CLOCK_MONOTONIC)
    status: dict[str, Any] = field(default_factory=dict)
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.output_exceeded or self.deadline_exceeded)


@functools.cache
def zygote(kind: str) -> ZygoteClient:
    """This worker's zygote of ``kind`` (``command`` or ``python``), started on first use."""
    SANDBOX_ROOT.mkdir(mode=0o711, exist_ok=True)
    client = ZygoteClient(kind, SANDBOX_ROOT / f"root-{kind}", cgroups.support().hierarchies)
    atexit.register(client.close)  # its launchers see the socket close and exit, then the zygote
    return client


class _Run:
    """One sandboxed run as the worker sees it: its readers, its counters and how to stop it."""

    def __init__(self, limits: SandboxLimits, on_line: LineSink | None, on_message: MessageSink | None) -> None:
        self.limits = limits
        self.on_line = on_line
        self.on_message = on_message
        self.result = SandboxResult()
        self.began = time.monotonic()
        self.total_output = 0
        self.loop = asyncio.get_running_loop()
        self.eof: dict[str, asyncio.Future[None]] = {}
        self.launcher_pid: int | None = None
        self.gone = False
        self.status_fd: int | None = None
        self.started = self.loop.create_future()
        self.splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self.partial: dict[str, bytearray] = {"status": bytearray(), "channel": bytearray()}
        self.stdout = bytearray()
        self.tail = bytearray()

    def read(self, name: str, fd: int) -> None:
        if name == "status":
            self.status_fd = fd
        self.eof[name] = self.loop.create_future()
        self.loop.add_reader(fd, self._readable, name, fd)

    def _readable(self, name: str, fd: int) -> None:
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self.loop.remove_reader(fd)
            if not self.eof[name].done():
                self._closed(name)
            return
        if name == "status":
            self._lines(name, chunk, self._status)
        elif not self.result.output_exceeded:
            self._output(name, chunk)

    def _closed(self, name: str) -> None:
        if name in self.splitters:
            for line in self.splitters[name].close():
                self._emit(name, line)
        if not self.started.done():
            self.started.set_result(None)
        self.eof[name].set_result(None)

    def _output(self, name: str, chunk: bytes) -> None:
        self.total_output += len(chunk)
        if self.total_output > self.limits.max_output_bytes:
            self.result.output_exceeded = True
            self.kill(signal.SIGKILL)
            return
        if name == "channel":
            self._lines(name, chunk, self._message)
            return
        if name == "stdout":
            self.stdout += chunk
        else:
            self.tail = (self.tail + chunk)[-STDERR_TAIL_BYTES:]
        for line in self.splitters[name].feed(chunk):
            self._emit(name, line)

    def _lines(self, name: str, chunk: bytes, handle: Callable[[dict[str, Any]], None]) -> None:
        buffer = self.partial[name]
        buffer += chunk
        *lines, rest = buffer.split(b"\n")
        self.partial[name] = bytearray(rest)
        for line in lines:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    handle(message)

    def _status(self, message: dict[str, Any]) -> None:
        self.result.status.update(message)
        if "spawned_at" in message:
            self.result.start_seconds = max(0.0, float(message["spawned_at"]) - self.began)
        if "launcher_pid" in message:
            self.launcher_pid = int(message["launcher_pid"])
            if not self.started.done():
                self.started.set_result(None)

    def _message(self, message: dict[str, Any]) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def _emit(self, name: str, line: str) -> None:
        if self.on_line is not None:
            self.on_line(name, line)

    @property
    def done(self) -> asyncio.Future[None]:
        return self.eof["status"]

    def kill(self, sig: int) -> None:
        """Signal the launcher's process group (launcher, init, tool) while it may still exist."""
        if self.launcher_pid is None and self.status_fd is not None:
            self._readable("status", self.status_fd)  # its first line may be waiting unread
        if self.launcher_pid is not None and not self.done.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.launcher_pid, sig)

    async def stop(self, grace: float) -> None:
        """SIGTERM, up to ``grace`` seconds for the tool to exit, SIGKILL; not interruptible by a further cancel."""
        stopping = asyncio.ensure_future(self._stop(grace))
        while not stopping.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stopping)

    async def _stop(self, grace: float) -> None:
        began = time.monotonic()
        if self.launcher_pid is None:  # not yet reported: the launcher is just taking the run
            await asyncio.wait({self.started}, timeout=grace)
        self.kill(signal.SIGTERM)
        await asyncio.wait({self.done}, timeout=max(0.0, grace - (time.monotonic() - began)))
        self.kill(signal.SIGKILL)
        await asyncio.wait({self.done}, timeout=_GONE_TIMEOUT)


async def _wait_gone(run_cgroup: cgroups.RunCgroup | None, uid: int, *, init: int | None) -> None:
    """Until no process of the tool is left (SIGKILLing any): its cgroup holds none, or (without cgroups) none
    runs as ``uid``. ``init``: the sandbox's init, which reported that only itself was left and is exiting (it
    runs under another effective uid, and its cgroups are removed once it is gone)."""
    deadline = time.monotonic() + _GONE_TIMEOUT
    pause = 0.0002
    while True:
        alive = run_cgroup.pids() if run_cgroup is not None and run_cgroup.dirs else pids_of_uid(uid)
        alive = [pid for pid in alive if pid != init]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise InternalError(f"sandbox processes {alive} of uid {uid} survived SIGKILL")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.005)


def build_spec(
    argv: Sequence[str],
    env: Mapping[str, str],
    uid: int,
    limits: SandboxLimits,
    support: cgroups.CgroupSupport,
    mounts: Sequence[tuple[str, str]],
    python: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "argv": list(argv),
        "env": dict(env),
        "path": env.get("PATH", os.defpath),
        "uid": uid,
        "gid": uid,
        "workdir_bytes": limits.memory_mb << 20,
        "memory_bytes": limits.memory_mb << 20,
        "cpu_limit": limits.cpu_limit,
        "pids": limits.max_processes + 1,  # the sandbox's init is in the pids cgroup too
        "network": limits.network,
        "rlimits": limits.rlimits(support),
        "mounts": [list(mount) for mount in mounts],
        "python": python,
    }


def _collect(run: _Run, stats: cgroups.CgroupStats | None) -> None:
    result, status = run.result, run.result.status
    result.stdout, result.stderr_tail = bytes(run.stdout), bytes(run.tail)
    result.exit_code, result.signal = status.get("exit"), status.get("signal")
    result.cpu_time_ms, result.max_rss_kb = status.get("cpu_ms"), status.get("max_rss_kb")
    result.setup_error, result.exec_error = status.get("error"), status.get("exec_error")
    if stats is not None:
        if stats.cpu_ns is not None:
            result.cpu_time_ms = round(stats.cpu_ns / 1e6, 3)
        result.memory_peak_bytes = stats.memory_peak_bytes
        result.oom_kills, result.pids_denied = stats.oom_kills, stats.pids_denied
    ended_by_us = result.deadline_exceeded or result.output_exceeded
    if "exit" not in status and result.setup_error is None and not ended_by_us:
        stderr = result.stderr_tail.decode(errors="replace").strip()
        result.setup_error = f"the sandbox's launcher ended without reporting the tool's exit: {stderr}"


async def run_sandboxed(
    argv: Sequence[str],
    env: Mapping[str, str],
    limits: SandboxLimits,
    *,
    stdin: bytes | None = None,
    on_line: LineSink | None = None,
    cancel_grace: float = 5.0,
    deadline: float | None = None,
    mounts: Sequence[tuple[str, str]] = (),
    python: dict[str, Any] | None = None,
    on_message: MessageSink | None = None,
) -> SandboxResult:
    """Run ``argv`` (or, with ``python``, an isolated Python tool) in a fresh sandbox under ``limits``."""
    started = time.monotonic()
    support = cgroups.support()
    uid = UID_POOL.acquire()
    run = _Run(limits, on_line, on_message)
    pipes = Pipes(stdin is not None, python is not None)
    try:
        spec = build_spec(argv, env, uid, limits, support, mounts, python)
        run.result.rlimits = spec["rlimits"]
        try:
            zygote("python" if python is not None else "command").send(spec, pipes.theirs)
        finally:
            pipes.close_theirs()
        for name, fd in pipes.ours.items():
            if name != "stdin":
                run.read(name, fd)
        feeding = asyncio.ensure_future(feed(pipes, stdin)) if stdin is not None else None
        try:
            await _supervise(run, deadline, cancel_grace)
        finally:
            await _uninterruptible(_finish(run, support, uid, feeding))
        return run.result
    finally:
        run.result.wall_ms = (time.monotonic() - started) * 1000
        for name, fd in pipes.ours.items():
            if name != "stdin":
                run.loop.remove_reader(fd)
        pipes.close()
        UID_POOL.release(uid, clean=run.gone)


async def _finish(run: _Run, support: cgroups.CgroupSupport, uid: int, feeding: asyncio.Future[None] | None) -> None:
    """After the end (or the stop): the rest of the output, no process left, the accounting, the cgroup removed."""
    await asyncio.gather(*run.eof.values())
    if feeding is not None:
        feeding.cancel()
    name = run.result.status.get("cgroup")
    run_cgroup = cgroups.RunCgroup.named(support, name) if name and support.hierarchies else None
    try:
        init = run.result.status.get("init_pid") if run.result.status.get("alone") else None
        await _wait_gone(run_cgroup, uid, init=init if isinstance(init, int) else None)
        run.gone = True
        _collect(run, run_cgroup.stats() if run_cgroup is not None else None)
    finally:
        if run_cgroup is not None:  # after the run has returned: the result does not wait for the removal
            asyncio.get_running_loop().call_soon(_remove_when_empty, run_cgroup)


def _remove_when_empty(run_cgroup: cgroups.RunCgroup, attempt: int = 0) -> None:
    """Remove the run's cgroups, retrying in the background while its init is still on its way out."""
    if not run_cgroup.remove() and attempt < 50:
        asyncio.get_running_loop().call_later(0.002 * 2 ** min(attempt, 8), _remove_when_empty, run_cgroup, attempt + 1)


async def _uninterruptible(awaitable: Any) -> None:
    """Await to the end even if cancelled meanwhile (the cancel is re-raised by the caller's own await)."""
    task = asyncio.ensure_future(awaitable)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
    task.result()


async def _supervise(run: _Run, deadline: float | None, grace: float) -> None:
    """Until the launcher reports the end: stop the run at the deadline, or when cancelled (then re-raise)."""
    try:
        done, _ = await asyncio.wait({run.done}, timeout=deadline)
        if not done:
            run.result.deadline_exceeded = True
            await run.stop(grace)
    except asyncio.CancelledError:
        await run.stop(grace)
        raise
