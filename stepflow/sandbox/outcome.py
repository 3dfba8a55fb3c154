"""What a finished sandboxed run means: success, the breached limit named, or the tool's own failure.

Breaches are read from what the kernel counted wherever it could: the memory cgroup's OOM kills (``memory_mb``),
the pids cgroup's refused forks (``max_processes``), the ``SIGXCPU`` / ``SIGKILL`` of ``RLIMIT_CPU``
(``cpu_seconds``) and the worker's own byte count (``max_output_bytes``). Only where a limit fell back to an
rlimit (no cgroup controller) is the tool's error text read: ``RLIMIT_AS`` and ``RLIMIT_NPROC`` only make a call
fail, and the failure is known from what the tool prints about it.
"""

from __future__ import annotations

import signal

from stepflow.errors import ExecutionFailed, ExecutorError, InternalError, ResourceLimitExceeded
from stepflow.sandbox.limits import SandboxLimits
from stepflow.sandbox.runner import SandboxResult

_MEMORY_SIGNS = ("memoryerror", "cannot allocate memory", "out of memory", "bad_alloc", "memory exhausted")
_DISK_SIGNS = ("no space left on device", "disk quota exceeded")
_FORK_SIGNS = ("resource temporarily unavailable", "cannot fork", "can't fork", "fork: retry", "fork failed")


def _mib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**20:.1f} MiB"


def classify(result: SandboxResult, limits: SandboxLimits, program: str) -> ExecutorError | None:
    """The error a finished run means (naming the breached limit), or None when it succeeded."""
    if result.oom_kills and result.exit_code != 0:
        return ResourceLimitExceeded(
            f"memory_mb: {program} reached its memory limit of {limits.memory_mb} MiB (memory cgroup: resident "
            f"memory and files in its working directory; peak {_mib(result.memory_peak_bytes)}) and the kernel's "
            "OOM killer stopped it"
        )
    if result.setup_error is not None:
        return InternalError(f"sandbox: {result.setup_error}")
    if result.output_exceeded:
        return ResourceLimitExceeded(
            f"max_output_bytes: {program} wrote more than {limits.max_output_bytes} bytes to its outputs; "
            "its process tree was killed"
        )
    if result.exec_error is not None:
        return InternalError(f"sandbox: {result.exec_error}")
    if result.exit_code == 0:
        return None
    cpu_ms = result.cpu_time_ms or 0.0
    if result.signal == signal.SIGXCPU or (result.signal == signal.SIGKILL and cpu_ms >= limits.cpu_seconds * 500):
        return ResourceLimitExceeded(
            f"cpu_seconds: {program} reached its CPU time limit of {limits.cpu_seconds}s (RLIMIT_CPU; "
            f"{cpu_ms:.0f} ms measured) and was killed"
        )
    if result.pids_denied:
        return ResourceLimitExceeded(
            f"max_processes: {program} hit its limit of {limits.max_processes} processes and threads (pids "
            f"cgroup: {result.pids_denied} forks refused)"
        )
    return _from_text(result, limits, program)


def _from_text(result: SandboxResult, limits: SandboxLimits, program: str) -> ExecutorError:
    stderr = result.stderr_tail.decode(errors="replace")
    lowered = stderr.lower()
    if "RLIMIT_AS" in result.rlimits and any(sign in lowered for sign in _MEMORY_SIGNS):
        return ResourceLimitExceeded(
            f"memory_mb: {program} ran out of its {limits.memory_mb} MiB address space (RLIMIT_AS: this worker has "
            f"no memory cgroup): {_last_line(stderr)}"
        )
    if any(sign in lowered for sign in _DISK_SIGNS):
        return ResourceLimitExceeded(
            f"memory_mb: {program} filled its working directory, a tmpfs capped at {limits.memory_mb} MiB: "
            f"{_last_line(stderr)}"
        )
    if "RLIMIT_NPROC" in result.rlimits and any(sign in lowered for sign in _FORK_SIGNS):
        return ResourceLimitExceeded(
            f"max_processes: {program} hit its limit of {limits.max_processes} processes (RLIMIT_NPROC: this "
            f"worker has no pids cgroup): {_last_line(stderr)}"
        )
    cpu_ms = result.cpu_time_ms or 0.0
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
