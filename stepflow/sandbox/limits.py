"""Effective limits of a sandboxed process.

A limit comes from the request's ``options.resource_limits`` when given, else from the tool's own defaults, else
from :data:`DEFAULT_LIMITS`. The request's values were already checked against the configured maxima
(``STEPFLOW_EXECUTOR_MAX_*``) by ``prepare_execution``. Whether this machine can enforce them at all is
:mod:`stepflow.sandbox.probe`'s question.
"""

from __future__ import annotations

from dataclasses import dataclass

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
