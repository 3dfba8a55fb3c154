"""``run_and_record``: the one activity of an atomic tool's execution (one attempt per activity attempt).

It resolves and validates the request, writes the ``executions`` row with its first flush, runs the tool
(heartbeating its progress, cancellable) and, when the tool completed, writes the terminal state in the same
transaction as the attempt's last lines and metrics: a quick execution costs the workflow one activity and
the projection one transaction. Every other end, and a completion after an earlier try, is recorded by the
workflow's ``finish_execution``.

Besides the tool's own lines the attempt writes the engine's events "attempt N started", "attempt N failed:
<error>; next retry in X ms" (or "no retries left") and "cancel requested", and its metrics (``attempts``,
``queue_wait_ms`` and whatever the tool recorded). Lines are flushed with the heartbeats and once more at
the end. Those writes never fail the attempt: they go through the projection's
:class:`~stepflow.db.spool.WriteSpool`, which keeps retrying while the database is unavailable, so an outage
delays the bookkeeping but neither the result nor a retry budget.
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

from activities.names import RUN_AND_RECORD
from activities.tool_context import ActivityToolContext, ToolRun
from activities.validation import CheckedRequest, check_request
from stepflow.config import ExecutorSettings
from stepflow.contracts import COMPOSITE, WORKER_SHUTDOWN, RecordedRun, RunAndRecordInput
from stepflow.db.writer import ExecutionStart, ProjectionWriter
from stepflow.errors import ExecutorError, InternalError, to_application_error
from stepflow.models import (
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    ExecutionTiming,
    LogEntry,
    LogLevel,
    Metric,
)
from stepflow.observability import metrics as ops_metrics
from stepflow.observability import tracing
from stepflow.registry import ToolDefinition, ToolRegistry

log = structlog.get_logger(__name__)


def retry_note(run: ToolRun, attempt: int, retryable: bool) -> str:
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
    """An attempt's share of the projection: its row (with every flush), first lines, and end once completed."""

    start: ExecutionStart
    first_lines: list[LogEntry] = field(default_factory=list)
    end: ExecutionResult | None = None
    end_committed: bool = False


class ToolActivities:
    """Runs tools from a registry and records each execution through the projection's writer."""

    def __init__(
        self,
        registry: ToolRegistry,
        writer: ProjectionWriter,
        *,
        caps: ExecutorSettings,
        heartbeat_every: timedelta,
        cancel_grace: timedelta = timedelta(seconds=5),
        final_write_wait: timedelta = timedelta(seconds=2),
    ) -> None:
        self._registry = registry
        self._writer = writer
        self._caps = caps
        self._heartbeat_every = heartbeat_every.total_seconds()
        self._cancel_grace = cancel_grace.total_seconds()
        self._final_write_wait = final_write_wait.total_seconds()

    @activity.defn(name=RUN_AND_RECORD)
    async def run_and_record(self, job: RunAndRecordInput) -> RecordedRun:
        """Validate, record and run an atomic tool's execution (one attempt); record its end if it completed.

        An invalid request fails without retries (its row and "validation failed" line are written first);
        the workflow records every end but completion with ``finish_execution``.
        """
        ops_metrics.execution_started(job.execution_id, job, attempt=activity.info().attempt)
        checked = self._check(job)
        definition, request = checked.definition, job.request
        first_lines = [checked.line] if checked.line is not None and activity.info().attempt == 1 else []
        if checked.invalid is not None:
            start = ExecutionStart(job.execution_id, request, definition.version, job.start_time)
            await self._writer.spool.submit_and_wait(
                lambda: self._writer.record_execution_start(start, lines=first_lines),
                what=f"row of {job.execution_id}",
                wait_s=self._final_write_wait,
            )
            raise ApplicationError(checked.invalid.message, type=checked.invalid.type, non_retryable=True)
        run = ToolRun(
            job.execution_id,
            request,
            definition.version,
            checked.parameters,
            retry_delay_ms=job.retry_delay_ms,
            max_attempts=job.max_attempts,
            attempts_before=job.attempts_before,
            rerun=job.rerun,
        )
        start = ExecutionStart(job.execution_id, request, definition.version, job.start_time, ExecutionStatus.RUNNING)
        recording = _Recording(start, first_lines)
        output = await self._attempt(run, definition, recording)
        assert recording.end is not None and recording.end.timing.end_time is not None
        # An earlier try (another run after a lost worker, or an attempt the server timed out just as its tool
        # completed) may have written its own provisional end, with its own output, that Temporal never
        # accepted; this write then changed nothing. So only the first try's end counts as recorded: after any
        # other, the workflow records the end it accepted with finish_execution, which overwrites the row.
        recorded = recording.end_committed and job.rerun == 0 and activity.info().attempt == 1
        if recorded:  # else finish_execution records (and counts) the end
            ops_metrics.execution_ended(
                job.execution_id, ExecutionStatus.COMPLETED, None, recording.end.timing.end_time, start=job
            )
        return RecordedRun(
            version=definition.version,
            output=output,
            end_time=recording.end.timing.end_time,
            recorded=recorded,
        )

    def _check(self, job: RunAndRecordInput) -> CheckedRequest:
        """The request checked against this worker's registry; ToolNotFound and kind mismatches are raised."""
        try:
            checked = check_request(self._registry, self._caps, job.execution_id, job.request)
            if checked.definition.kind == COMPOSITE:
                raise InternalError(
                    f"tool {job.request.tool_id!r} is a composite on this worker but was started as an atomic tool: "
                    "the workers disagree on their tools; run them with the same STEPFLOW_TOOL_MODULES/_FILES"
                )
        except ExecutorError as error:
            raise to_application_error(error) from None
        return checked

    async def _attempt(self, run: ToolRun, definition: ToolDefinition, recording: _Recording) -> Any:
        info = activity.info()
        attempt = run.tool_attempt(info.attempt)
        ops_metrics.attempt_started(run.tool_id, attempt)
        if info.attempt > 1:  # the workflow learns from the heartbeat which attempt a lost worker was running
            activity.heartbeat(None, info.attempt)
        ctx = ActivityToolContext(run, attempt, cancel_grace=self._cancel_grace)
        queue_wait = max(0.0, (info.started_time - info.current_attempt_scheduled_time).total_seconds() * 1000)
        ctx.log.add(LogLevel.INFO, _started_line(run, attempt), queue_wait_ms=round(queue_wait, 3))
        attempt_metrics = [Metric(name="attempts", value=attempt), Metric(name="queue_wait_ms", value=queue_wait)]
        heartbeater = asyncio.create_task(self._heartbeat(ctx, recording))
        began = time.monotonic()
        try:
            with tracing.span("stepflow.tool.run", run, attempt=attempt):
                output = await definition.run(run.parameters, ctx)
            recording.end = _completed(run, recording.start, output, _end_time(info, began))
            return output
        except BaseException as error:
            failure = self._failure(ctx, run, error, time.monotonic() - began)
            if failure is error:
                raise
            raise failure from failure.__cause__  # the tool's own exception for an unexpected one, else none
        finally:
            ctx.log.add_drop_summary()
            try:  # still heartbeating while the last lines are written (a locked database must not time us out)
                metrics = [*attempt_metrics, *ctx.metrics]
                committed = await self._flush(ctx, metrics, recording, wait_s=self._final_write_wait)
                recording.end_committed = committed
            finally:
                heartbeater.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeater

    def _failure(self, ctx: ActivityToolContext, run: ToolRun, error: BaseException, ran: float) -> BaseException:
        """Log how the attempt ended (it ran ``ran`` seconds) and return what the activity raises (typed)."""
        if isinstance(error, ExecutorError):
            self._failed(ctx, run, error.kind, error.message, error.retryable)
            return to_application_error(error)
        if isinstance(error, ApplicationError):
            self._failed(ctx, run, error.type or "Error", error.message, not error.non_retryable)
            return error
        if isinstance(error, asyncio.CancelledError):
            details = activity.cancellation_details()
            if details is None or details.cancel_requested:
                ctx.log.add(LogLevel.WARNING, "cancel requested", attempt=ctx.attempt)
            elif details.not_found and _heartbeat_lost(activity.info(), ran):  # the workflow decides what next
                ctx.log.add(LogLevel.WARNING, f"attempt {ctx.attempt} interrupted: {_heartbeat_note(activity.info())}")
            elif details.timed_out or details.not_found:  # not_found: the server already timed the attempt out
                self._failed(ctx, run, "TimeoutExceeded", "the attempt exceeded its timeout", True)
            elif details.worker_shutdown:  # not the tool's failure: the workflow runs it again elsewhere
                ctx.log.add(LogLevel.WARNING, f"attempt {ctx.attempt} interrupted: worker shutdown")
                return ApplicationError(
                    "the worker shut down while the tool ran", activity.info().attempt, type=WORKER_SHUTDOWN
                )
            else:
                ctx.log.add(LogLevel.WARNING, f"attempt {ctx.attempt} interrupted: paused or reset")
            return error
        if not isinstance(error, Exception):
            return error
        message = f"{type(error).__name__}: {error}"
        self._failed(ctx, run, "ExecutionFailed", message, True)
        failure = ApplicationError(message, type="ExecutionFailed")
        failure.__cause__ = error
        return failure

    @staticmethod
    def _failed(ctx: ActivityToolContext, run: ToolRun, kind: str, message: str, retryable: bool) -> None:
        note = retry_note(run, ctx.attempt, retryable)
        ctx.log.add(LogLevel.WARNING, f"attempt {ctx.attempt} failed: {kind}: {message}; {note}", error_type=kind)

    async def _flush(
        self, ctx: ActivityToolContext, metrics: list[Metric], recording: _Recording, *, wait_s: float
    ) -> bool:
        """Hand the pending lines and metrics (and the end) to the spool; wait up to ``wait_s`` for the commit.

        Every flush carries the row (inserted if missing), so lines never wait for an earlier flush that the
        spool is still retrying. True if the write committed within ``wait_s`` (else the spool keeps at it).
        """
        lines = [*recording.first_lines, *ctx.log.take()]
        recording.first_lines = []
        writer, start, end = self._writer, recording.start, recording.end
        if end is None and not lines and not metrics:
            return True
        if end is not None:
            ops_metrics.terminal_state_pending(start.execution_id)

            async def write() -> None:
                await writer.record_execution_end(start, end, lines=lines, metrics=metrics)
                ops_metrics.terminal_state_written(start.execution_id)

        else:

            async def write() -> None:
                await writer.record_attempt(start.execution_id, lines=lines, metrics=metrics, start=start)

        return await writer.spool.submit_and_wait(write, what=f"logs of {start.execution_id}", wait_s=wait_s)

    async def _heartbeat(self, ctx: ActivityToolContext, recording: _Recording) -> None:
        last_flush = asyncio.get_running_loop().time()
        while True:  # the first heartbeat waits one interval: a quick tool needs none
            await asyncio.sleep(min(self._heartbeat_every, 0.2) if ctx.log.wants_flush else self._heartbeat_every)
            activity.heartbeat(ctx.progress, activity.info().attempt)  # details: progress, this run's attempt
            now = asyncio.get_running_loop().time()
            if ctx.log.wants_flush or now - last_flush >= 1.0:
                last_flush = now
                await self._flush(ctx, [], recording, wait_s=0)


def _heartbeat_lost(info: activity.Info, ran: float) -> bool:
    """Whether the server dropped the attempt (``not_found``) well before its timeout: its heartbeat timed out.

    A worker cut off from the server (or a server that was down) is not heard from, and the server treats it
    as lost: that is not the tool exceeding its timeout. Within one heartbeat timeout of the attempt's own
    timeout the two cannot be told apart, and it is called a timeout. (On the time-skipping test server,
    whose clock jumps ahead of the worker's, a skipped-over timeout reads as a heartbeat timeout too.)"""
    timeout, heartbeat = info.start_to_close_timeout, info.heartbeat_timeout
    if heartbeat is None:
        return False
    return timeout is None or ran < (timeout - heartbeat).total_seconds()


def _heartbeat_note(info: activity.Info) -> str:
    assert info.heartbeat_timeout is not None
    seconds = info.heartbeat_timeout.total_seconds()
    return f"its heartbeat timed out (the Temporal server heard nothing from this worker for {seconds:g} s)"


def _started_line(run: ToolRun, attempt: int) -> str:
    if run.rerun == 0:
        return f"attempt {attempt} started"
    return f"attempt {attempt} started again (run {run.rerun + 1}: the worker running it before was lost)"


def _completed(run: ToolRun, start: ExecutionStart, output: Any, end_time: datetime) -> ExecutionResult:
    """The result of an attempt whose tool completed, as the workflow will report it."""
    return ExecutionResult(
        execution_id=run.execution_id,
        status=ExecutionStatus.COMPLETED,
        output=output,
        metadata=ExecutionMetadata.for_request(run.request, run.version),
        timing=ExecutionTiming(start_time=start.start_time, end_time=end_time),
    )
