"""The worker's side of an isolated Python tool (``@tool(..., isolation="sandbox")``): one sandboxed run.

The tool's process is forked from the ``python`` zygote (:mod:`stepflow.sandbox.pytool` is its inside), so no
interpreter starts and no module is imported per execution. Its parameters, identity and limits travel in the
run's spec; what it sends back on its channel reaches the execution as if it ran in the worker: log lines through
``ctx.logger``, progress through ``ctx.report_progress`` (and so with the next heartbeat), metrics through
``ctx.record_metric``, then its result or its typed error. What it prints becomes log lines, as a command tool's
output does. Its limits are the sandbox's: a breach ends it with ``ResourceLimitExceeded`` naming the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepflow.errors import ERROR_KINDS, ExecutionFailed, ExecutorError, InternalError
from stepflow.models import JsonDict
from stepflow.sandbox import classify
from stepflow.tool_interface import ToolContext
from stepflow.tools.sandboxed import Isolation, run_in_sandbox

_LEVELS = ("debug", "info", "warning", "error")


class _Outcome:
    """Channel messages handed to the context as they arrive; the final one kept."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.final: dict[str, Any] = {}

    def __call__(self, message: dict[str, Any]) -> None:
        ctx = self.ctx
        if "log" in message:
            level, event, context = message["log"]
            log = getattr(ctx.logger, level if level in _LEVELS else "info")
            log(str(event), **(context if isinstance(context, dict) else {}))
        elif "progress" in message:
            ctx.report_progress(message["progress"])
        elif "metric" in message:
            name, value, unit = message["metric"]
            ctx.record_metric(str(name), float(value), unit)
        elif {"result", "error", "cancelled"} & set(message):
            self.final = message

    def error(self) -> ExecutorError | None:
        error = self.final.get("error")
        if not isinstance(error, dict):
            return None
        kind = ERROR_KINDS.get(str(error.get("type")), ExecutionFailed)
        return kind(str(error.get("message", "")))


async def run_isolated(
    tool_id: str,
    function: Callable[..., Any] | None,
    isolation: Isolation | None,
    parameters: JsonDict,
    ctx: ToolContext,
) -> Any:
    """Run the tool ``function`` for ``parameters`` in the sandbox; its output, or its error (limits named)."""
    assert function is not None and isolation is not None
    python = {
        "module": function.__module__,
        "function": function.__name__,
        "parameters": parameters,
        "context": ctx.context.model_dump(mode="json"),
        "resource_limits": ctx.resource_limits.model_dump(mode="json"),
        "execution_id": ctx.execution_id,
        "attempt": ctx.attempt,
        "cancel_grace": ctx.cancel_grace,
    }
    outcome = _Outcome(ctx)
    result, limits = await run_in_sandbox(tool_id, [tool_id], ctx, isolation, python=python, on_message=outcome)
    error = classify(result, limits, tool_id)
    if error is None or isinstance(error, ExecutionFailed):  # not a limit: the tool's own outcome tells more
        error = outcome.error() or error
        if error is None and "result" in outcome.final:
            return outcome.final["result"]
    raise error or InternalError(f"tool {tool_id!r} ended without a result")
