"""ToolExecutionWorkflow: one workflow per execution; the workflow id is the execution id.

The steps, each one command in the history:

1. ``prepare_execution`` (local activity): resolve the tool, insert the ``executions`` row, validate
   parameters and limits. An invalid request ends here, recorded as ``failed``.
2. ``run_tool`` (activity): start-to-close = the request's timeout (config default otherwise), a heartbeat
   timeout, retries from ``retry_count`` / ``retry_delay`` capped by the configured maximum, and
   ``WAIT_CANCELLATION_COMPLETED`` so a cancel reaches the tool and the workflow waits until it stopped.
3. ``finish_execution`` (local activity): write the terminal status, output, error and duration.

A composite tool (``prepared.plan`` set) runs its steps as child executions of this same workflow
instead of step 2 (:mod:`workflows.composite`); steps 1 and 3 are the same.

A failure is raised as an ``ApplicationError`` whose ``type`` is the spec's error kind; a cancellation
ends the workflow cancelled. Nothing here reads config, clocks or the network: all of it travels in
:class:`~stepflow.models.ToolExecutionInput`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.names import FINISH_EXECUTION, PREPARE_EXECUTION, RUN_TOOL
    from stepflow import search_attributes
    from stepflow.errors import NON_RETRYABLE_KINDS, TimeoutExceeded, from_failure
    from stepflow.models import (
        ErrorInfo,
        ExecutionMetadata,
        ExecutionResult,
        ExecutionStatus,
        ExecutionTiming,
        PreparedExecution,
        RecordEndInput,
        RecordStartInput,
        RunToolInput,
        ToolExecutionInput,
    )

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
        request = job.request
        start_time = workflow.info().start_time
        prepared: PreparedExecution = await workflow.execute_local_activity(
            PREPARE_EXECUTION,
            RecordStartInput(execution_id=job.execution_id, request=request, start_time=start_time),
            result_type=PreparedExecution,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )
        metadata = ExecutionMetadata(
            tool_id=request.tool_id,
            version=prepared.version,
            tenant_id=request.context.tenant_id,
            user_id=request.context.user_id,
            session_id=request.context.session_id,
            parent_execution_id=request.context.parent_execution_id,
        )
        if prepared.error is not None:
            await self._finish(job, metadata, ExecutionStatus.FAILED, error=prepared.error)
            raise ApplicationError(prepared.error.message, type=prepared.error.type, non_retryable=True)

        if prepared.plan is not None:
            return await self._run_composite(job, metadata, prepared)

        self._set_status(ExecutionStatus.RUNNING)
        options = request.options
        max_attempts = 1 + min(options.retry_count, job.runtime.max_retry_count)
        retry_delay = options.retry_delay if options.retry_delay is not None else job.runtime.default_retry_delay
        try:
            output = await workflow.execute_activity(
                RUN_TOOL,
                RunToolInput(
                    execution_id=job.execution_id,
                    tool_id=request.tool_id,
                    version=prepared.version,
                    parameters=prepared.parameters,
                    context=request.context,
                    resource_limits=options.resource_limits,
                    logging_level=options.logging_level,
                    retry_delay_ms=int(retry_delay.total_seconds() * 1000),
                    max_attempts=max_attempts,
                ),
                start_to_close_timeout=options.timeout or job.runtime.default_timeout,
                heartbeat_timeout=job.runtime.heartbeat_timeout,
                retry_policy=RetryPolicy(
                    initial_interval=max(retry_delay, timedelta(milliseconds=1)),
                    backoff_coefficient=2.0,
                    maximum_attempts=max_attempts,
                    non_retryable_error_types=list(NON_RETRYABLE_KINDS),
                ),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except (ActivityError, asyncio.CancelledError, CancelledError) as failure:
            error = from_failure(failure)
            if error.kind == "ExecutionCancelled":
                await self._finish(job, metadata, ExecutionStatus.CANCELLED, error=_info(error))
                raise
            status = ExecutionStatus.TIMED_OUT if isinstance(error, TimeoutExceeded) else ExecutionStatus.FAILED
            await self._finish(job, metadata, status, error=_info(error))
            raise ApplicationError(error.message, type=error.kind, non_retryable=True) from None
        return await self._finish(job, metadata, ExecutionStatus.COMPLETED, output=output)

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
    ) -> ExecutionResult:
        end_time = workflow.now()
        await workflow.execute_local_activity(
            FINISH_EXECUTION,
            RecordEndInput(execution_id=job.execution_id, status=status, output=output, error=error, end_time=end_time),
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )
        self._set_status(status)
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

    def _set_status(self, status: ExecutionStatus) -> None:
        self._status = status
        workflow.upsert_search_attributes([search_attributes.STATUS.value_set(status.value)])


def _info(error: Exception) -> ErrorInfo:
    return ErrorInfo(type=getattr(error, "kind", "InternalError"), message=str(error))
