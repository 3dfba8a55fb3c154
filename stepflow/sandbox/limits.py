"""Effective limits of a sandboxed run, and how this machine holds each of them.

A limit comes from the request's ``options.resource_limits`` when given, else from the tool's own defaults, else
from :data:`DEFAULT_LIMITS`. The request's values were already checked against the configured maxima
(``STEPFLOW_EXECUTOR_MAX_*``) by ``prepare_execution``; a tool's own defaults are checked against them when the
tool is registered (:func:`above_caps`).

=================  ===============================  =====================================
limit              with the cgroup controller       without it
=================  ===============================  =====================================
``memory_mb``      memory cgroup (resident memory)  ``RLIMIT_AS`` (address space)
``cpu_limit``      CFS quota of the cpu cgroup      refused: no rlimit can hold a share
``max_processes``  pids cgroup                      ``RLIMIT_NPROC`` on the run's own uid
``cpu_seconds``    ``RLIMIT_CPU`` (always)          ``RLIMIT_CPU``
=================  ===============================  =====================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from stepflow.models import ResourceLimits
from stepflow.request_checks import Caps, cap_problems
from stepflow.sandbox.cgroups import CgroupSupport


@dataclass(frozen=True)
class SandboxLimits:
    """The limits one sandboxed run is held to; every one of them is enforced (or the run is refused)."""

    memory_mb: int
    cpu_seconds: int
    max_processes: int
    max_output_bytes: int
    network: bool = False
    cpu_limit: float | None = None

    def rlimits(self, cgroups: CgroupSupport) -> dict[str, tuple[int, int]]:
        """The (soft, hard) rlimits of the tool's process: those no cgroup controller holds here.

        CPU: SIGXCPU at the limit (an unmistakable death), SIGKILL one second later should the tool catch it.
        """
        limits = {"RLIMIT_CPU": (self.cpu_seconds, self.cpu_seconds + 1), "RLIMIT_CORE": (0, 0)}
        if not cgroups.has("memory"):
            memory = self.memory_mb * 1024 * 1024
            limits["RLIMIT_AS"] = (memory, memory)
        if not cgroups.has("pids"):  # counted per real uid: the sandbox's init has the run's too
            limits["RLIMIT_NPROC"] = (self.max_processes + 1, self.max_processes + 1)
        return limits

    def unenforceable(self, cgroups: CgroupSupport) -> str | None:
        """Why these limits cannot all hold on this machine (None when they can)."""
        if self.cpu_limit is None:
            return None
        if not cgroups.has("cpu"):
            why = cgroups.missing.get("cpu", "no cpu controller")
            return f"cpu_limit needs the cgroup cpu controller, which this worker cannot use ({why})"
        cores = os.cpu_count() or 1
        if self.cpu_limit > cores:
            return f"cpu_limit={self.cpu_limit} is more than the {cores} CPUs of this machine"
        return None


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

    cpu_limit = requested.cpu_limit if requested.cpu_limit is not None else defaults.cpu_limit
    return SandboxLimits(
        memory_mb=pick("memory_mb"),
        cpu_seconds=pick("cpu_seconds"),
        max_processes=pick("max_processes"),
        max_output_bytes=pick("max_output_bytes"),
        network=requested.network or defaults.network,
        cpu_limit=cpu_limit,
    )


def above_caps(limits: ResourceLimits, caps: Caps) -> list[str]:
    """One message per limit above the engine's maximum, naming the limit and the variable that sets it, and
    a CPU share above this machine's cores."""
    problems = cap_problems(limits, caps)
    cores = os.cpu_count() or 1
    if limits.cpu_limit is not None and limits.cpu_limit > cores:
        problems.append(f"cpu_limit={limits.cpu_limit} is more than the {cores} CPUs of this machine")
    return problems
