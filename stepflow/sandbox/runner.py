"""Run one program in the sandbox: spawn the launcher, stream its output, enforce the output limit, kill the tree.

:func:`run_sandboxed` is the whole life of one sandboxed process:

- a fresh working directory ``<sandbox root>/run-*/work`` owned by a uid of its own (removed afterwards);
- the launcher (:mod:`stepflow.sandbox.launcher`) in a new session, so the launcher, the namespace's init and the
  tool share one process group;
- stdout and stderr read as they are produced, split into bounded lines handed to ``on_line``; more than
  ``max_output_bytes`` in total kills the tree at once;
- on ``asyncio.CancelledError`` (a cancel, or the activity's timeout) and on the optional ``deadline``: SIGTERM to
  the process group, ``cancel_grace`` seconds, SIGKILL, and a wait until neither the namespace's init nor any
  process of the execution's uid is alive; only then is the cancel re-raised.

:func:`classify` turns a finished :class:`SandboxResult` into the error it means, naming the breached limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepflow.errors import ExecutionFailed, ExecutorError, InternalError, ResourceLimitExceeded
from stepflow.sandbox.limits import SandboxLimits
from stepflow.sandbox.streams import LineSplitter
from stepflow.sandbox.uids import UID_POOL, is_alive, pids_of_uid

LineSink = Callable[[str, str], None]
"""Called with ``("stdout" | "stderr", line)`` for each line the tool writes (bounded)."""

SANDBOX_ROOT = Path(tempfile.gettempdir()) / "stepflow-sandbox"
LAUNCHER = Path(__file__).with_name("launcher.py")
STDERR_TAIL_BYTES = 4096
CHUNK = 65536
_GONE_TIMEOUT = 10.0
_MEMORY_SIGNS = ("memoryerror", "cannot allocate memory", "out of memory", "bad_alloc", "memory exhausted")
_DISK_SIGNS = ("no space left on device", "disk quota exceeded")
_FORK_SIGNS = ("resource temporarily unavailable", "cannot fork", "can't fork", "fork: retry", "fork failed")


@dataclass
class SandboxResult:
    """How a sandboxed process ended, what it wrote and what it used."""

    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr_tail: bytes = b""
    cpu_time_ms: float | None = None
    max_rss_kb: int | None = None
    output_exceeded: bool = False
    deadline_exceeded: bool = False
    setup_error: str | None = None
    exec_error: str | None = None
    wall_ms: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.output_exceeded or self.deadline_exceeded)


def launcher_argv(spec_path: Path) -> list[str]:
    """How the worker starts the launcher: its own interpreter, isolated mode, no site-packages."""
    return [sys.executable, "-I", "-S", str(LAUNCHER), str(spec_path)]


def write_spec(
    root: Path, argv: Sequence[str], env: Mapping[str, str], uid: int, limits: SandboxLimits, *, status_fd: int
) -> Path:
    """Create ``root/work`` for ``uid`` and write the launcher's spec (root-only) beside it."""
    workdir = root / "work"
    workdir.mkdir(mode=0o700)
    spec = {
        "argv": list(argv),
        "env": dict(env),
        "path": env.get("PATH", os.defpath),
        "uid": uid,
        "gid": uid,
        "workdir": str(workdir),
        "workdir_bytes": limits.memory_mb * 1024 * 1024,
        "hide": hidden_paths(),
        "network": limits.network,
        "rlimits": limits.rlimits,
        "status_fd": status_fd,
        "worker_pid": os.getpid(),
    }
    spec_path = root / "spec.json"
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(spec, file)
    return spec_path


def hidden_paths() -> list[str]:
    """What the tool must not even read: the worker's working directory (its code, ``.stepflow`` data, config),
    unless that is ``/`` or holds the sandbox root."""
    cwd = Path.cwd().resolve()
    if cwd == Path("/") or SANDBOX_ROOT.resolve().is_relative_to(cwd):
        return []
    return [str(cwd)]


@functools.cache
def _sandbox_root() -> Path:
    """The sandbox root, created on first use, with the run directories of dead workers removed."""
    SANDBOX_ROOT.mkdir(mode=0o711, exist_ok=True)
    for entry in SANDBOX_ROOT.glob("run-*-*"):
        owner = entry.name.split("-")[1]
        if owner.isdigit() and int(owner) != os.getpid() and not is_alive(int(owner)):
            shutil.rmtree(entry, ignore_errors=True)
    return SANDBOX_ROOT


def _signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def _read_status(fd: int) -> list[dict[str, Any]]:
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, CHUNK):
            data += chunk
    lines = []
    for line in data.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


async def _wait_gone(init_pid: int | None, uid: int) -> None:
    """Until the namespace's init and every process of ``uid`` are gone (SIGKILLing stragglers)."""
    deadline = time.monotonic() + _GONE_TIMEOUT
    while True:
        alive = pids_of_uid(uid)
        if init_pid is not None and is_alive(init_pid):
            alive.append(init_pid)
        if not alive:
            return
        if time.monotonic() > deadline:
            raise InternalError(f"sandbox processes {alive} of uid {uid} survived SIGKILL")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.01)


class _Run:
    """One sandboxed process: its pumps, its counters and how to stop it."""

    def __init__(self, limits: SandboxLimits, on_line: LineSink | None) -> None:
        self.limits = limits
        self.on_line = on_line
        self.result = SandboxResult()
        self.total_output = 0
        self.process: asyncio.subprocess.Process | None = None

    async def pump(self, stream: asyncio.StreamReader, name: str) -> None:
        splitter = LineSplitter()
        stdout = bytearray()
        tail = bytearray()
        while chunk := await stream.read(CHUNK):
            if self.result.output_exceeded:
                continue
            self.total_output += len(chunk)
            if self.total_output > self.limits.max_output_bytes:
                self.result.output_exceeded = True
                assert self.process is not None
                _signal_group(self.process, signal.SIGKILL)
                continue
            if name == "stdout":
                stdout += chunk
            else:
                tail = (tail + chunk)[-STDERR_TAIL_BYTES:]
            for line in splitter.feed(chunk):
                self.emit(name, line)
        for line in splitter.close():
            self.emit(name, line)
        if name == "stdout":
            self.result.stdout = bytes(stdout)
        else:
            self.result.stderr_tail = bytes(tail)

    def emit(self, name: str, line: str) -> None:
        if self.on_line is not None:
            self.on_line(name, line)

    async def stop(self, waiter: asyncio.Future[int], grace: float) -> None:
        """SIGTERM the group, wait ``grace`` seconds, SIGKILL it; not interruptible by a further cancel."""
        assert self.process is not None
        _signal_group(self.process, signal.SIGTERM)
        stopping = asyncio.ensure_future(asyncio.wait({waiter}, timeout=grace))
        while not stopping.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stopping)
        _signal_group(self.process, signal.SIGKILL)
        while not waiter.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(waiter)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    stdin.close()


async def run_sandboxed(
    argv: Sequence[str],
    env: Mapping[str, str],
    limits: SandboxLimits,
    *,
    stdin: bytes | None = None,
    on_line: LineSink | None = None,
    cancel_grace: float = 5.0,
    deadline: float | None = None,
) -> SandboxResult:
    """Run ``argv`` in a fresh sandbox under ``limits``; see the module docstring for what is guaranteed."""
    started = time.monotonic()
    uid = UID_POOL.acquire()
    root = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=_sandbox_root()))
    read_fd, write_fd = os.pipe()
    run = _Run(limits, on_line)
    result = run.result
    init_pid: int | None = None
    try:
        spec_path = write_spec(root, argv, env, uid, limits, status_fd=write_fd)
        process = await asyncio.create_subprocess_exec(
            *launcher_argv(spec_path),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,
            env={},
            cwd=root,
        )
        run.process = process
        os.close(write_fd)
        write_fd = -1
        assert process.stdout is not None and process.stderr is not None
        tasks = [
            asyncio.ensure_future(run.pump(process.stdout, "stdout")),
            asyncio.ensure_future(run.pump(process.stderr, "stderr")),
        ]
        if stdin is not None:
            assert process.stdin is not None
            tasks.append(asyncio.ensure_future(_feed(process.stdin, stdin)))
        waiter = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=deadline)
            if not done:
                result.deadline_exceeded = True
                await run.stop(waiter, cancel_grace)
        except asyncio.CancelledError:
            await run.stop(waiter, cancel_grace)
            raise
        finally:
            status = _read_status(read_fd)
            init_pid = next((line["init_pid"] for line in status if "init_pid" in line), None)
            await _wait_gone(init_pid, uid)
            for task in tasks:
                if not task.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(task)
        for line in status:
            result.status.update(line)
        result.exit_code = result.status.get("exit")
        result.signal = result.status.get("signal")
        result.cpu_time_ms = result.status.get("cpu_ms")
        result.max_rss_kb = result.status.get("max_rss_kb")
        result.setup_error = result.status.get("error")
        result.exec_error = result.status.get("exec_error")
        ended_by_us = result.deadline_exceeded or result.output_exceeded
        if "exit" not in result.status and result.setup_error is None and not ended_by_us:
            stderr = result.stderr_tail.decode(errors="replace").strip()
            result.setup_error = f"the launcher exited with {process.returncode} without a status: {stderr}"
        return result
    finally:
        result.wall_ms = (time.monotonic() - started) * 1000
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        shutil.rmtree(root, ignore_errors=True)
        UID_POOL.release(uid)


def classify(result: SandboxResult, limits: SandboxLimits, program: str) -> ExecutorError | None:
    """The error a finished run means (naming the breached limit), or None when it succeeded."""
    if result.setup_error is not None:
        return InternalError(f"sandbox: {result.setup_error}")
    if result.output_exceeded:
        return ResourceLimitExceeded(
            f"max_output_bytes: {program} wrote more than {limits.max_output_bytes} bytes to stdout/stderr; "
            "its process tree was killed"
        )
    if result.exec_error is not None:
        return InternalError(f"sandbox: {result.exec_error}")
    if result.exit_code == 0:
        return None
    stderr = result.stderr_tail.decode(errors="replace")
    lowered = stderr.lower()
    cpu_ms = result.cpu_time_ms or 0.0
    if result.signal == signal.SIGXCPU or (result.signal == signal.SIGKILL and cpu_ms >= limits.cpu_seconds * 500):
        return ResourceLimitExceeded(
            f"cpu_seconds: {program} reached its CPU time limit of {limits.cpu_seconds}s (RLIMIT_CPU; "
            f"{cpu_ms:.0f} ms measured) and was killed"
        )
    if any(sign in lowered for sign in _MEMORY_SIGNS):
        return ResourceLimitExceeded(
            f"memory_mb: {program} ran out of its {limits.memory_mb} MiB address space (RLIMIT_AS): "
            f"{_last_line(stderr)}"
        )
    if any(sign in lowered for sign in _DISK_SIGNS):
        return ResourceLimitExceeded(
            f"memory_mb: {program} filled its working directory, a tmpfs capped at {limits.memory_mb} MiB: "
            f"{_last_line(stderr)}"
        )
    if any(sign in lowered for sign in _FORK_SIGNS):
        return ResourceLimitExceeded(
            f"max_processes: {program} hit its limit of {limits.max_processes} processes (RLIMIT_NPROC): "
            f"{_last_line(stderr)}"
        )
    how = (
        f"was killed by signal {result.signal} after {cpu_ms:.0f} ms of CPU time"
        if result.signal
        else f"exited with status {result.exit_code}"
    )
    detail = f": {stderr.strip()[-1000:]}" if stderr.strip() else ""
    return ExecutionFailed(f"{program} {how}{detail}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""
