"""The ``run_tool`` and ``run_and_record`` activities: one attempt of a tool, heartbeating, typed failures.

``run_and_record`` is the one activity of an atomic tool's execution: it also resolves and validates the
request (as ``prepare_execution`` does), inserts the ``executions`` row with its first flush and, when the
tool completed, writes the terminal state in the same transaction as the attempt's last lines and metrics.
A quick execution thus costs the workflow one activity and the projection one transaction.

Both write the attempt's share of the projection: the engine events "attempt N started", "attempt N
failed: <error>; next retry in X ms" (or "no retries left") and "cancel requested", the tool's own log lines,
the row's move to ``running`` and the attempt's metrics (``attempts``, ``queue_wait_ms`` and whatever the
tool recorded). Lines are flushed with the heartbeats and once more at the end. Those writes never fail the
attempt: they go through the projection's :class:`~stepflow.db.spool.WriteSpool`, which keeps retrying while
the database is unavailable, so an outage delays the bookkeeping but neither the result nor a retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.names import RUN_AND_RECORD, RUN_TOOL
from activities.tool_context import ActivityToolContext
from activities.validation import check_request
from stepflow.config import ExecutorSettings
from stepflow.db.projection import ExecutionEnd, NewExecution, Projection
from stepflow.errors import ExecutorError, InternalError, to_application_error
from stepflow.models import (
    ExecutionStatus,
    LogEntry,
    LogLevel,
    Metric,
    RecordedRun,
    RunAndRecordInput,
    RunToolInput,
)
from stepflow.observability import metrics as ops_metrics
from stepflow.observability import tracing
from stepflow.registry import ToolDefinition, ToolRegistry
from stepflow.tools.composite import CompositeTool

log = structlog.get_logger(__name__)


def retry_note(run: RunToolInput, attempt: int, retryable: bool) -> str:
    """ "next retry in X ms" (the workflow's RetryPolicy: delay doubling per attempt) or "no retries left"."""
    if not retryable or attempt >= run.max_attempts:
        return "no retries left"
    return f"next retry in {max(1, run.retry_delay_ms) * 2 ** (attempt - 1)} ms"


def _end_time(info: activity.Info, began: float) -> datetime:
    """When the attempt ended: on the server's clock, like the workflow's start time it is measured from (a
    time-skipping test server's clock runs ahead), yet never before the worker's clock that stamped the
    attempt's lines, so the terminal line sorts after them."""
    on_server_clock = info.started_time + timedelta(seconds=time.monotonic() - began)
    return max(on_server_clock, datetime.now(UTC))


@dataclass
class _Recording:
    """What the one-activity path adds to an attempt's writes: the row (with the first flush), then the end."""

    new: NewExecution
    first_lines: list[LogEntry] = field(default_factory=list)
    row_written: bool = False  # handed to the spool with a flush (which retries it until it lands)
    end: ExecutionEnd | None = None
    end_committed: bool = False


class ToolActivities:
    """Runs tools from a registry and writes each attempt's events, lines and metrics to the projection."""

    def __init__(
        self,
        registry: ToolRegistry,
        projection: Projection,
        *,
        caps: ExecutorSettings,
        heartbeat_every: timedelta,
        cancel_grace: timedelta = timedelta(seconds=5),
        final_write_wait: timedelta = timedelta(seconds=2),
    ) -> None:
        self._registry = registry
        self._projection = projection
        self._caps = caps
        self._heartbeat_every = heartbeat_every.total_seconds()
        self._cancel_grace = cancel_grace.total_seconds()
        self._final_write_wait = final_write_wait.total_seconds()

    @activity.defn(name=RUN_TOOL)
    async def run_tool(self, run: RunToolInput) -> Any:
        """One attempt of a tool whose row ``prepare_execution`` wrote; ``finish_execution`` records the end."""
        try:
            definition = self._registry.resolve(run.tool_id, run.version)
        except ExecutorError as error:
            raise to_application_error(error) from None
        return await self._attempt(run, definition, None)

    @activity.defn(name=RUN_AND_RECORD)
    async def run_and_record(self, job: RunAndRecordInput) -> RecordedRun:
        """Validate, record and run an atomic tool's execution (one attempt); record its end if it completed.

        An invalid request fails without retries (its row and "validation failed" line are written first);
        the workflow records every end but completion with ``finish_execution``.
        """
        request = job.request
        ops_metrics.execution_started(job.execution_id, job, attempt=activity.info().attempt)
        try:
            checked = check_request(self._registry, self._caps, job.execution_id, request)
            if isinstance(checked.definition, CompositeTool):
                raise InternalError(
                    f"tool {request.tool_id!r} is a composite on this worker but was started as an atomic tool: "
                    "the workers disagree on their tools; run them with the same STEPFLOW_TOOL_MODULES/_FILES"
                )
        except ExecutorError as error:
            raise to_application_error(error) from None
        definition = checked.definition
        first_lines = [checked.line] if checked.line is not None and activity.info().attempt == 1 else []
        new = NewExecution(job.execution_id, request, definition.version, job.start_time, ExecutionStatus.RUNNING)
        if checked.invalid is not None:
            invalid = checked.invalid
            pending = NewExecution(job.execution_id, request, definition.version, job.start_time)

            async def write() -> None:
                await self._projection.record_attempt(job.execution_id, logs=first_lines, new=pending)

            await self._projection.spool.submit_and_wait(
                write, what=f"row of {job.execution_id}", wait_s=self._final_write_wait
            )
            raise ApplicationError(invalid.message, type=invalid.type, non_retryable=True)
        run = RunToolInput.for_request(
            job.execution_id,
            request,
            version=definition.version,
            parameters=checked.parameters,
            retry_delay_ms=job.retry_delay_ms,
            max_attempts=job.max_attempts,
        )
        recording = _Recording(new, first_lines)
        output = await self._attempt(run, definition, recording)
        assert recording.end is not None
        if recording.end_committed:  # else finish_execution records (and counts) the end
            ops_metrics.execution_ended(
                job.execution_id, ExecutionStatus.COMPLETED, None, recording.end.end_time, start=job
            )
        return RecordedRun(
            version=definition.version,
            output=output,
            end_time=recording.end.end_time,
            recorded=recording.end_committed,
        )

    async def _attempt(self, run: RunToolInput, definition: ToolDefinition, recording: _Recording | None) -> Any:
        info = activity.info()
        ops_metrics.attempt_started(run.tool_id, info.attempt)
        ctx = ActivityToolContext(run, info.attempt, cancel_grace=self._cancel_grace)
        queue_wait = max(0.0, (info.started_time - info.current_attempt_scheduled_time).total_seconds() * 1000)
        ctx.log.add(LogLevel.INFO, f"attempt {info.attempt} started", queue_wait_ms=round(queue_wait, 3))
        attempt_metrics = [Metric(name="attempts", value=info.attempt), Metric(name="queue_wait_ms", value=queue_wait)]
        heartbeater = asyncio.create_task(self._heartbeat(ctx, recording))
        began = time.monotonic()
        try:
            with tracing.span("stepflow.tool.run", run, attempt=info.attempt):
                output = await definition.run(run.parameters, ctx)
            if recording is not None:
                recording.end = ExecutionEnd(ExecutionStatus.COMPLETED, _end_time(info, began), output=output)
            return output
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
                committed = await self._flush(
                    ctx, [*attempt_metrics, *ctx.metrics], recording, wait_s=self._final_write_wait
                )
                if recording is not None:
                    recording.end_committed = committed
            finally:
                heartbeater.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeater

    @staticmethod
    def _failed(ctx: ActivityToolContext, run: RunToolInput, kind: str, message: str, retryable: bool) -> None:
        note = retry_note(run, ctx.attempt, retryable)
        ctx.log.add(LogLevel.WARNING, f"attempt {ctx.attempt} failed: {kind}: {message}; {note}", error_type=kind)

    async def _flush(
        self, ctx: ActivityToolContext, metrics: list[Metric], recording: _Recording | None, *, wait_s: float
    ) -> bool:
        """Hand the pending lines (and metrics, row, end) to the spool; wait up to ``wait_s`` for them to commit.

        True if they committed within ``wait_s`` (else the spool keeps retrying them).
        """
        lines = ctx.log.take()
        new, end = None, None
        if recording is not None:
            if not recording.row_written:
                lines = [*recording.first_lines, *lines]
                new, recording.row_written = recording.new, True
            if recording.end is not None:
                new, end = recording.new, recording.end  # the end is written with its row: inserted if missing
                ops_metrics.terminal_state_pending(ctx.execution_id)
        if not lines and not metrics and new is None:
            return True
        projection, execution_id = self._projection, ctx.execution_id

        async def write() -> None:
            await projection.record_attempt(
                execution_id, logs=lines, metrics=metrics, mark_running=recording is None, new=new, end=end
            )
            if end is not None:
                ops_metrics.terminal_state_written(execution_id)

        return await projection.spool.submit_and_wait(write, what=f"logs of {execution_id}", wait_s=wait_s)

    async def _heartbeat(self, ctx: ActivityToolContext, recording: _Recording | None) -> None:
        last_flush = asyncio.get_running_loop().time()
        while True:  # the first heartbeat waits one interval: a quick tool needs none
            await asyncio.sleep(min(self._heartbeat_every, 0.2) if ctx.log.wants_flush else self._heartbeat_every)
            activity.heartbeat(ctx.progress)
            now = asyncio.get_running_loop().time()
            if ctx.log.wants_flush or now - last_flush >= 1.0:
                last_flush = now
                await self._flush(ctx, [], recording, wait_s=0)
