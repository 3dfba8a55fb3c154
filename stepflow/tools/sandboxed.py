"""What every sandboxed tool kind shares: its declared isolation (default limits, environment allow-list, read-only
mounts), the check that its limits can hold here, and one run in the sandbox with its logs, metrics and timeout.

Command tools (:mod:`stepflow.tools.command`) and isolated Python tools (:mod:`stepflow.tools.isolated`) both run
through :func:`run_in_sandbox`; see docs/command-tools.md for what each limit means on which machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepflow.errors import ResourceLimitExceeded, TimeoutExceeded
from stepflow.models import ResourceLimits
from stepflow.observability import metrics as ops_metrics
from stepflow.observability import tracing
from stepflow.sandbox import (
    SandboxLimits,
    SandboxResult,
    classify,
    resolve_limits,
    run_sandboxed,
    sandbox_unavailable,
)
from stepflow.sandbox.cgroups import support
from stepflow.sandbox.rootfs import check_mount
from stepflow.sandbox.runner import MessageSink
from stepflow.sandbox.streams import LineBudget
from stepflow.tool_interface import ToolContext

_TIMEOUT_MARGIN = 0.25
_TIMEOUT_FALLBACK = 10.0


@dataclass(frozen=True)
class Isolation:
    """What a sandboxed tool declares: default limits, the worker variables it may see, read-only mounts."""

    limits: ResourceLimits = field(default_factory=ResourceLimits)
    env: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The allow-listed variables of the worker's environment, then the execution's own."""
        env = {name: os.environ[name] for name in self.env if name in os.environ}
        env.update(extra)
        return env


def parse_mounts(entries: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    """``"/host/path"`` or ``"/host/path:/path/in/sandbox"`` entries, each checked (ValueError says why not)."""
    mounts = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"mounts: {entry!r} is not a path (use '/host/path' or '/host/path:/sandbox/path')")
        source, _, target = entry.partition(":")
        problem = check_mount(source, target or source, private=[os.getcwd()])
        if problem is not None:
            raise ValueError(f"mounts: {problem}")
        mounts.append((source, target or source))
    return tuple(mounts)


def check_sandbox(tool_id: str, requested: ResourceLimits, isolation: Isolation) -> None:
    """ResourceLimitExceeded when this machine cannot build the sandbox, or cannot hold one of the limits."""
    reason = sandbox_unavailable()
    if reason is None:
        reason = resolve_limits(requested, isolation.limits).unenforceable(support())
    if reason is not None:
        raise ResourceLimitExceeded(f"tool {tool_id!r} cannot run with its limits enforced: {reason}")


def activity_deadline(grace: float) -> tuple[float, float] | None:
    """(when to stop the tool, when the activity's start-to-close timeout fires), in seconds from now.

    The tool is stopped ``grace`` + a margin before Temporal's timeout, so that it is dead when the timeout fires.
    """
    from temporalio import activity

    if not activity.in_activity():
        return None
    info = activity.info()
    timeout = info.start_to_close_timeout
    if timeout is None:
        return None
    elapsed = max(0.0, time.time() - info.started_time.timestamp())
    remaining = max(0.1, timeout.total_seconds() - elapsed)
    return max(remaining * 0.5, remaining - grace - _TIMEOUT_MARGIN), remaining


def _record(ctx: ToolContext, result: SandboxResult) -> None:
    if result.cpu_time_ms is not None:
        ctx.record_metric("cpu_time_ms", result.cpu_time_ms, "ms")
    if result.max_rss_kb is not None:
        ctx.record_metric("max_rss_kb", float(result.max_rss_kb), "kB")
    if result.memory_peak_bytes is not None:
        ctx.record_metric("memory_peak_kb", result.memory_peak_bytes / 1024, "kB")


async def run_in_sandbox(
    tool_id: str,
    argv: Sequence[str],
    ctx: ToolContext,
    isolation: Isolation,
    *,
    stdin: bytes | None = None,
    python: dict[str, Any] | None = None,
    on_message: MessageSink | None = None,
) -> tuple[SandboxResult, SandboxLimits]:
    """One run with the request's limits: output lines logged (bounded), metrics recorded, the timeout kept."""
    check_sandbox(tool_id, ctx.resource_limits, isolation)
    limits = resolve_limits(ctx.resource_limits, isolation.limits)
    logger = ctx.logger
    budget = LineBudget(
        lambda stream, line: (logger.info if stream == "stdout" else logger.warning)(line, stream=stream)
    )
    deadline = activity_deadline(ctx.cancel_grace)
    started = time.monotonic()
    result = await run_sandboxed(
        argv,
        isolation.environment(ctx.context.environment),
        limits,
        stdin=stdin,
        on_line=budget,
        cancel_grace=ctx.cancel_grace,
        deadline=deadline[0] if deadline else None,
        mounts=isolation.mounts,
        python=python,
        on_message=on_message,
    )
    if budget.dropped:
        logger.warning("output lines not logged", dropped=budget.dropped, logged=budget.passed)
    _record(ctx, result)
    ops_metrics.sandbox_finished(result.start_seconds, classify(result, limits, argv[0]))
    tracing.sandbox_spans(result.wall_ms, result.start_seconds)
    if result.deadline_exceeded and deadline is not None:
        # The tree is dead; Temporal's own start-to-close timeout now ends this attempt (retried under the
        # request's retry policy, timed_out when none is left), so that status is only ever reported after
        # the processes are gone. The raise below is a fallback should that cancel not arrive.
        logger.warning("timeout reached: the process tree was killed", stream="engine")
        await asyncio.sleep(max(0.0, deadline[1] - (time.monotonic() - started)) + _TIMEOUT_FALLBACK)
        raise TimeoutExceeded(f"tool {tool_id!r} ran past its timeout; its process tree was killed")
    return result, limits
