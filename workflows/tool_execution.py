"""ToolExecutionWorkflow: one workflow per execution; the workflow id is the execution id.

An atomic tool's execution (the starter passed the tool's ``kind`` and it is not ``composite``) is one
activity, ``run_and_record``: it validates the request, writes the ``executions`` row, runs the tool with the
same timeout, heartbeat and retries as ``run_tool`` below and, if the tool completed, writes the terminal
state; the workflow then only sets the StepflowStatus search attribute and returns. On any other end (invalid,
failed, timed out, cancelled) ``finish_execution`` records it as in step 3. This is the fast path: as many
workflow tasks as a bare workflow with one activity, and one projection transaction for a quick tool.

Composites, and executions started without a kind (older starters, histories recorded before the fast
path existed), take three steps, each one command in the history:

1. ``prepare_execution`` (local activity): resolve the tool, insert the ``executions`` row, validate
   parameters and limits. An invalid request ends here, recorded as ``failed``.
2. ``run_tool`` (activity): start-to-close = the request's timeout (config default otherwise), a heartbeat
   timeout, retries from ``retry_count`` / ``retry_delay`` capped by the configured maximum, and
   ``WAIT_CANCELLATION_COMPLETED`` so a cancel reaches the tool and the workflow waits until it stopped.
3. ``finish_execution`` (local activity): write the terminal status, output, error and duration.

A composite tool (``prepared.plan`` set) runs its steps as child executions of this same workflow
instead of step 2 (:mod:`workflows.composite`); steps 1 and 3 are the same.

Why the path is chosen by the input and not by ``workflow.patched()``: every history recorded before the
one-activity path has an input without ``kind``, so it replays the three-step path unchanged (the committed
``tool_*.json`` histories prove it), and an input with ``kind`` can only have been started by a worker that
knows the field: the models forbid unknown fields, so an older worker fails the first workflow task on such
an input instead of running the three-step path that a newer worker would not replay. A patch would buy the
same safety for a marker and a TemporalChangeVersion upsert (a visibility write) in every execution.

A failure is raised as an ``ApplicationError`` whose ``type`` is the spec's error kind; a cancellation
ends the workflow cancelled. Nothing here reads config, clocks or the network: all of it travels in
:class:`~stepflow.models.ToolExecutionInput`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.names import FINISH_EXECUTION, PREPARE_EXECUTION, RUN_AND_RECORD, RUN_TOOL
    from stepflow import search_attributes
    from stepflow.contracts import (
        PreparedExecution,
        RecordedRun,
        RecordEndInput,
        RecordStartInput,
        RunAndRecordInput,
        RunToolInput,
        ToolExecutionInput,
    )
    from stepflow.errors import NON_RETRYABLE_KINDS, TimeoutExceeded, from_failure
    from stepflow.models import ErrorInfo, ExecutionMetadata, ExecutionResult, ExecutionStatus, ExecutionTiming

from workflows.composite import CompositeRunner

PROJECTION_TIMEOUT = timedelta(seconds=30)
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=list(NON_RETRYABLE_KINDS),
)


@workflow.defn(name="ToolExecutionWorkflow")
class ToolExecutionWorkflow:
    """Runs one tool execution: validate and record, run with retries and timeout, record the outcome."""

    def __init__(self) -> None:
        self._status = ExecutionStatus.PENDING

    @workflow.query(name="status")
    def status(self) -> ExecutionStatus:
        return self._status

    @workflow.run
    async def run(self, job: ToolExecutionInput) -> ExecutionResult:
        if job.kind not in (None, "composite"):  # decided by the input alone: see the module's docstring
            return await self._run_and_record(job)
        request = job.request
        start_time = workflow.info().start_time
        prepared: PreparedExecution = await workflow.execute_local_activity(
            PREPARE_EXECUTION,
            RecordStartInput(execution_id=job.execution_id, request=request, start_time=start_time),
            result_type=PreparedExecution,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )
        metadata = ExecutionMetadata.for_request(request, prepared.version)
        if prepared.error is not None:
            await self._finish(job, metadata, ExecutionStatus.FAILED, error=prepared.error)
            raise ApplicationError(prepared.error.message, type=prepared.error.type, non_retryable=True)

        if prepared.plan is not None:
            return await self._run_composite(job, metadata, prepared)

        self._set_status(ExecutionStatus.RUNNING)
        attempts = _Attempts(job)
        try:
            output = await workflow.execute_activity(
                RUN_TOOL,
                RunToolInput.for_request(
                    job.execution_id,
                    request,
                    version=prepared.version,
                    parameters=prepared.parameters,
                    retry_delay_ms=attempts.retry_delay_ms,
                    max_attempts=attempts.max_attempts,
                ),
                **attempts.activity_options(),
            )
        except (ActivityError, asyncio.CancelledError, CancelledError) as failure:
            await self._record_failure(job, metadata, failure)
        return await self._finish(job, metadata, ExecutionStatus.COMPLETED, output=output)

    async def _run_and_record(self, job: ToolExecutionInput) -> ExecutionResult:
        """The fast path: one ``run_and_record`` activity; ``finish_execution`` only for an end other than success."""
        request = job.request
        start_time = workflow.info().start_time
        self._status = ExecutionStatus.RUNNING  # for the status query; StepflowStatus is set at the end only
        attempts = _Attempts(job)
        record_start = RecordStartInput(execution_id=job.execution_id, request=request, start_time=start_time)
        try:
            run: RecordedRun = await workflow.execute_activity(
                RUN_AND_RECORD,
                RunAndRecordInput(
                    execution_id=job.execution_id,
                    request=request,
                    start_time=start_time,
                    retry_delay_ms=attempts.retry_delay_ms,
                    max_attempts=attempts.max_attempts,
                ),
                result_type=RecordedRun,
                **attempts.activity_options(),
            )
        except (ActivityError, asyncio.CancelledError, CancelledError) as failure:
            asked = ExecutionMetadata.for_request(request, request.version)
            await self._record_failure(job, asked, failure, start=record_start)
        metadata = ExecutionMetadata.for_request(request, run.version)
        if not run.recorded:  # the database was unavailable: record the end durably, retrying until it is back
            return await self._finish(job, metadata, ExecutionStatus.COMPLETED, output=run.output, start=record_start)
        self._set_status(ExecutionStatus.COMPLETED)
        return _result(job, metadata, ExecutionStatus.COMPLETED, run.end_time, output=run.output)

    async def _record_failure(
        self,
        job: ToolExecutionInput,
        metadata: ExecutionMetadata,
        failure: BaseException,
        *,
        start: RecordStartInput | None = None,
    ) -> NoReturn:
        """Record how the tool's activity ended (cancelled, timed out, failed), then raise that end."""
        error = from_failure(failure)
        if error.kind == "ExecutionCancelled":
            await self._finish(job, metadata, ExecutionStatus.CANCELLED, error=_info(error), start=start)
            raise failure
        status = ExecutionStatus.TIMED_OUT if isinstance(error, TimeoutExceeded) else ExecutionStatus.FAILED
        await self._finish(job, metadata, status, error=_info(error), start=start)
        raise ApplicationError(error.message, type=error.kind, non_retryable=True) from None

    async def _run_composite(
        self, job: ToolExecutionInput, metadata: ExecutionMetadata, prepared: PreparedExecution
    ) -> ExecutionResult:
        """Run a composite's steps as child executions (see :mod:`workflows.composite`), then record it."""
        assert prepared.plan is not None
        self._set_status(ExecutionStatus.RUNNING)
        runner = CompositeRunner(job, prepared.plan, prepared.parameters)
        try:
            outcome = await runner.run()
        except (asyncio.CancelledError, CancelledError):
            error = ErrorInfo(type="ExecutionCancelled", message="the execution was cancelled")
            await self._finish(job, metadata, ExecutionStatus.CANCELLED, output={"steps": runner.report()}, error=error)
            raise
        if outcome.error is not None:
            await self._finish(job, metadata, outcome.status, output=outcome.output, error=_info(outcome.error))
            raise ApplicationError(outcome.error.message, outcome.output, type=outcome.error.kind, non_retryable=True)
        return await self._finish(job, metadata, ExecutionStatus.COMPLETED, output=outcome.output)

    async def _finish(
        self,
        job: ToolExecutionInput,
        metadata: ExecutionMetadata,
        status: ExecutionStatus,
        *,
        output: Any = None,
        error: ErrorInfo | None = None,
        start: RecordStartInput | None = None,
    ) -> ExecutionResult:
        end_time = workflow.now()
        await workflow.execute_local_activity(
            FINISH_EXECUTION,
            RecordEndInput(
                execution_id=job.execution_id, status=status, output=output, error=error, end_time=end_time, start=start
            ),
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )
        self._set_status(status)
        return _result(job, metadata, status, end_time, output=output, error=error)

    def _set_status(self, status: ExecutionStatus) -> None:
        self._status = status
        workflow.upsert_search_attributes([search_attributes.STATUS.value_set(status.value)])


class _Attempts:
    """The tool activity's retries and timeouts, from the request's options capped by the engine's settings."""

    def __init__(self, job: ToolExecutionInput) -> None:
        options, runtime = job.request.options, job.runtime
        self.max_attempts = 1 + min(options.retry_count, runtime.max_retry_count)
        self.retry_delay = options.retry_delay if options.retry_delay is not None else runtime.default_retry_delay
        self.retry_delay_ms = int(self.retry_delay.total_seconds() * 1000)
        self._timeout = options.timeout or runtime.default_timeout
        self._heartbeat_timeout = runtime.heartbeat_timeout

    def activity_options(self) -> dict[str, Any]:
        return {
            "start_to_close_timeout": self._timeout,
            "heartbeat_timeout": self._heartbeat_timeout,
            "retry_policy": RetryPolicy(
                initial_interval=max(self.retry_delay, timedelta(milliseconds=1)),
                backoff_coefficient=2.0,
                maximum_attempts=self.max_attempts,
                non_retryable_error_types=list(NON_RETRYABLE_KINDS),
            ),
            "cancellation_type": workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        }


def _result(
    job: ToolExecutionInput,
    metadata: ExecutionMetadata,
    status: ExecutionStatus,
    end_time: datetime,
    *,
    output: Any = None,
    error: ErrorInfo | None = None,
) -> ExecutionResult:
    start_time = workflow.info().start_time
    return ExecutionResult(
        execution_id=job.execution_id,
        status=status,
        output=output,
        error=error,
        metadata=metadata,
        timing=ExecutionTiming(
            start_time=start_time,
            end_time=end_time,
            duration_ms=int((end_time - start_time).total_seconds() * 1000),
        ),
    )


def _info(error: Exception) -> ErrorInfo:
    return ErrorInfo(type=getattr(error, "kind", "InternalError"), message=str(error))
