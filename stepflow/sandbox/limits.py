"""Effective limits of a sandboxed process, and whether this machine can enforce them at all.

A limit comes from the request's ``options.resource_limits`` when given, else from the tool's own defaults, else
from :data:`DEFAULT_LIMITS`. The request's values were already checked against the configured maxima
(``STEPFLOW_EXECUTOR_MAX_*``) by ``prepare_execution``.

Enforcement needs root (to create namespaces, mount and switch to an unprivileged uid) and a Linux kernel with
``mount_setattr`` (5.12+). :func:`sandbox_unavailable` probes once per worker process by running ``true`` in a
full sandbox; when it fails every command tool is refused with ResourceLimitExceeded and the probe's reason,
rather than run without its limits.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stepflow.models import ResourceLimits


@dataclass(frozen=True)
class SandboxLimits:
    """The limits one sandboxed process runs under; every one of them is enforced."""

    memory_mb: int
    cpu_seconds: int
    max_processes: int
    max_output_bytes: int
    network: bool = False

    @property
    def rlimits(self) -> dict[str, tuple[int, int]]:
        """The (soft, hard) rlimits the launcher sets on the tool's process.

        CPU: SIGXCPU at the limit (an unmistakable death), SIGKILL one second later should the tool catch it.
        """
        memory = self.memory_mb * 1024 * 1024
        return {
            "RLIMIT_AS": (memory, memory),
            "RLIMIT_CPU": (self.cpu_seconds, self.cpu_seconds + 1),
            "RLIMIT_NPROC": (self.max_processes, self.max_processes),
            "RLIMIT_CORE": (0, 0),
        }


DEFAULT_LIMITS = SandboxLimits(memory_mb=1024, cpu_seconds=60, max_processes=64, max_output_bytes=1024 * 1024)


def resolve_limits(requested: ResourceLimits, tool_defaults: ResourceLimits | None = None) -> SandboxLimits:
    """Request value, else the tool's default, else :data:`DEFAULT_LIMITS`, limit by limit."""
    defaults = tool_defaults or ResourceLimits()

    def pick(name: str) -> int:
        value = getattr(requested, name)
        if value is None:
            value = getattr(defaults, name)
        if value is None:
            value = getattr(DEFAULT_LIMITS, name)
        return int(value)

    return SandboxLimits(
        memory_mb=pick("memory_mb"),
        cpu_seconds=pick("cpu_seconds"),
        max_processes=pick("max_processes"),
        max_output_bytes=pick("max_output_bytes"),
        network=requested.network or defaults.network,
    )


LAUNCHER = Path(__file__).with_name("launcher.py")


def launcher_argv(spec_path: Path) -> list[str]:
    """How the worker starts the launcher: its own interpreter, isolated mode, no site-packages."""
    return [sys.executable, "-I", "-S", str(LAUNCHER), str(spec_path)]


@functools.cache
def sandbox_unavailable() -> str | None:
    """None when this machine can enforce every sandbox limit, else the reason it cannot (probed once)."""
    if not sys.platform.startswith("linux"):
        return f"command tools need Linux namespaces; this is {sys.platform}"
    if os.geteuid() != 0:
        return (
            "command tools need a worker running as root (to create namespaces, confine the file system and run "
            "the tool as an unprivileged uid); this worker runs as uid "
            f"{os.geteuid()}"
        )
    from stepflow.sandbox.runner import write_spec
    from stepflow.sandbox.uids import UID_POOL

    uid = UID_POOL.acquire()
    read_fd, write_fd = os.pipe()
    try:
        with tempfile.TemporaryDirectory(prefix="stepflow-probe-") as root:
            spec_path = write_spec(
                Path(root), ["true"], {"PATH": "/usr/bin:/bin"}, uid, DEFAULT_LIMITS, status_fd=write_fd
            )
            completed = subprocess.run(
                launcher_argv(spec_path),
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
            os.close(write_fd)
            write_fd = -1
            status = os.read(read_fd, 65536).decode(errors="replace")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the sandbox probe could not run: {exc}"
    finally:
        UID_POOL.release(uid)
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if completed.returncode != 0 or '"exit": 0' not in status:
        detail = (status + completed.stderr.decode(errors="replace")).strip()[-500:]
        return f"this machine cannot create the sandbox (namespaces, read-only mounts, setuid): {detail}"
    return None
