"""The Python tools the sandbox benchmark compares: one body, run in-process and in the sandbox.

A module of its own: a sandboxed tool is found again by module and name in the zygote, which a script's
``__main__`` cannot be.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from stepflow.models import ExecutionContext, ResourceLimits
from stepflow.registry import ToolContext, tool


class Message(BaseModel):
    message: str = "hi"


async def _echo(params: Message, ctx: ToolContext) -> dict[str, str]:
    return {"message": params.message}


@tool("bench-echo")
async def echo_in_process(params: Message, ctx: ToolContext) -> dict[str, str]:
    """Return the message, inside the worker process."""
    return await _echo(params, ctx)


@tool("bench-echo-sandboxed", isolation="sandbox")
async def echo_sandboxed(params: Message, ctx: ToolContext) -> dict[str, str]:
    """Return the message, in the sandbox."""
    return await _echo(params, ctx)


class _Logger:
    def debug(self, event: str, **kw: Any) -> None: ...
    def info(self, event: str, **kw: Any) -> None: ...
    def warning(self, event: str, **kw: Any) -> None: ...
    def error(self, event: str, **kw: Any) -> None: ...


class QuietContext:
    """A ToolContext outside Temporal: no logs kept, progress and metrics dropped."""

    execution_id = "benchmark"
    attempt = 1
    context = ExecutionContext()
    resource_limits = ResourceLimits()
    logger = _Logger()
    cancel_grace = 1.0

    def report_progress(self, progress: Any) -> None: ...
    def record_metric(self, name: str, value: float, unit: str | None = None) -> None: ...
