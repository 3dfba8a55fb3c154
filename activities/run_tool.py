"""The ``run_tool`` activity: runs one attempt of a tool, heartbeating, and reports typed failures.

It also writes the attempt's share of the projection: the engine events "attempt N started", "attempt N
failed: <error>; next retry in X ms" (or "no retries left") and "cancel requested", the tool's own log lines,
the row's move to ``running`` and the attempt's metrics (``attempts``, ``queue_wait_ms`` and whatever the
tool recorded). Lines are flushed with the heartbeats and once more at the end. Those writes never fail the
attempt: they go through the projection's :class:`~stepflow.db.spool.WriteSpool`, which keeps retrying while
the database is unavailable, so an outage delays the bookkeeping but neither the result nor a retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.names import RUN_TOOL
from activities.tool_context import ActivityToolContext
from stepflow.db.projection import Projection
from stepflow.errors import ExecutorError, to_application_error
from stepflow.models import LogLevel, Metric, RunToolInput
from stepflow.registry import ToolRegistry

log = structlog.get_logger(__name__)


def retry_note(run: RunToolInput, attempt: int, retryable: bool) -> str:
    """ "next retry in X ms" (the workflow's RetryPolicy: delay doubling per attempt) or "no retries left"."""
    if not retryable or attempt >= run.max_attempts:
        return "no retries left"
    return f"next retry in {max(1, run.retry_delay_ms) * 2 ** (attempt - 1)} ms"


class ToolActivities:
    """Runs tools from a registry and writes each attempt's events, lines and metrics to the projection."""

    def __init__(
        self,
        registry: ToolRegistry,
        projection: Projection,
        *,
        heartbeat_every: timedelta,
        cancel_grace: timedelta = timedelta(seconds=5),
        final_write_wait: timedelta = timedelta(seconds=2),
    ) -> None:
        self._registry = registry
        self._projection = projection
        self._heartbeat_every = heartbeat_every.total_seconds()
        self._cancel_grace = cancel_grace.total_seconds()
        self._final_write_wait = final_write_wait.total_seconds()

    @activity.defn(name=RUN_TOOL)
    async def run_tool(self, run: RunToolInput) -> Any:
        info = activity.info()
        ctx = ActivityToolContext(run, info.attempt, cancel_grace=self._cancel_grace)
        try:
            definition = self._registry.resolve(run.tool_id, run.version)
        except ExecutorError as error:
            raise to_application_error(error) from None
        queue_wait = max(0.0, (info.started_time - info.current_attempt_scheduled_time).total_seconds() * 1000)
        ctx.log.add(LogLevel.INFO, f"attempt {info.attempt} started", queue_wait_ms=round(queue_wait, 3))
        attempt_metrics = [Metric(name="attempts", value=info.attempt), Metric(name="queue_wait_ms", value=queue_wait)]
        heartbeater = asyncio.create_task(self._heartbeat(ctx))
        try:
            return await definition.run(run.parameters, ctx)
        except ExecutorError as error:
            self._failed(ctx, run, error.kind, error.message, error.retryable)
            raise to_application_error(error) from None
        except ApplicationError as error:
            self._failed(ctx, run, error.type or "Error", error.message, not error.non_retryable)
            raise
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is None or details.cancel_requested:
                ctx.log.add(LogLevel.WARNING, "cancel requested", attempt=info.attempt)
            elif details.timed_out or details.not_found:  # not_found: the server already timed the attempt out
                self._failed(ctx, run, "TimeoutExceeded", "the attempt exceeded its timeout", True)
            else:
                reason = "worker shutdown" if details.worker_shutdown else "paused or reset"
                ctx.log.add(LogLevel.WARNING, f"attempt {info.attempt} interrupted: {reason}", attempt=info.attempt)
            raise
        except Exception as error:
            self._failed(ctx, run, "ExecutionFailed", f"{type(error).__name__}: {error}", True)
            raise ApplicationError(f"{type(error).__name__}: {error}", type="ExecutionFailed") from error
        finally:
            ctx.log.add_drop_summary()
            try:  # still heartbeating while the last lines are written (a locked database must not time us out)
                await self._flush(ctx, [*attempt_metrics, *ctx.metrics], wait_s=self._final_write_wait)
            finally:
                heartbeater.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeater

    @staticmethod
    def _failed(ctx: ActivityToolContext, run: RunToolInput, kind: str, message: str, retryable: bool) -> None:
        note = retry_note(run, ctx.attempt, retryable)
        ctx.log.add(LogLevel.WARNING, f"attempt {ctx.attempt} failed: {kind}: {message}; {note}", error_type=kind)

    async def _flush(self, ctx: ActivityToolContext, metrics: list[Metric], *, wait_s: float) -> None:
        """Hand the pending lines (and metrics) to the spool; wait up to ``wait_s`` for them to commit."""
        lines = ctx.log.take()
        if not lines and not metrics:
            return
        projection, execution_id = self._projection, ctx.execution_id

        async def write() -> None:
            await projection.record_attempt(execution_id, logs=lines, metrics=metrics, mark_running=True)

        await projection.spool.submit_and_wait(write, what=f"logs of {execution_id}", wait_s=wait_s)

    async def _heartbeat(self, ctx: ActivityToolContext) -> None:
        last_flush = asyncio.get_running_loop().time()
        while True:  # the first heartbeat waits one interval: a quick tool needs none
            await asyncio.sleep(min(self._heartbeat_every, 0.2) if ctx.log.wants_flush else self._heartbeat_every)
            activity.heartbeat(ctx.progress)
            now = asyncio.get_running_loop().time()
            if ctx.log.wants_flush or now - last_flush >= 1.0:
                last_flush = now
                await self._flush(ctx, [], wait_s=0)
