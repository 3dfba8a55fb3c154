"""ToolExecutionWorkflow: one workflow per execution; the workflow id is the execution id.

An atomic tool (Python or command) runs as one activity, ``run_and_record``: it validates the request,
writes the row, runs the tool with the request's timeout, heartbeat, retries and cancellation, and records
a completion itself. Any other end (invalid, failed, timed out, cancelled, or a completion whose write did
not commit in time) is recorded by the ``finish_execution`` local activity.

A composite is validated and recorded by ``prepare_execution`` (local activity), runs its steps as child
executions of this same workflow (:mod:`workflows.composite`) and is recorded by ``finish_execution``.
When the starter could not tell the tool's kind (its tools table was unreachable), the ``resolve_tool``
local activity asks the worker first. A lost worker is not the tool's failure (:mod:`workflows.attempts`).

Everything the workflow needs travels in its input; a failure is an ``ApplicationError`` typed with the
spec's error kind. A change to the commands goes behind ``workflow.patched()``, with a replay test of the
history recorded before it (``tests/replay``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.names import FINISH_EXECUTION, PREPARE_EXECUTION, RESOLVE_TOOL, RUN_AND_RECORD
    from stepflow import search_attributes
    from stepflow.contracts import (
        COMPOSITE,
        FinishInput,
        PreparedExecution,
        PrepareInput,
        RecordedRun,
        ResolvedTool,
        ToolExecutionInput,
    )
    from stepflow.errors import NON_RETRYABLE_KINDS, ExecutorError, TimeoutExceeded, from_failure
    from stepflow.models import ErrorInfo, ExecutionMetadata, ExecutionResult, ExecutionStatus, ExecutionTiming
    from stepflow.workflow_start import WORKFLOW_NAME

from workflows.attempts import INFRASTRUCTURE_RETRIES, Attempts, lost_attempt
from workflows.composite import CompositeRunner

PROJECTION_TIMEOUT = timedelta(seconds=30)
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=list(NON_RETRYABLE_KINDS),
)
CANCELLED = ErrorInfo(type="ExecutionCancelled", message="the execution was cancelled")


@workflow.defn(name=WORKFLOW_NAME)
class ToolExecutionWorkflow:
    """Runs one tool execution: an atomic tool as one activity, a composite as child executions."""

    def __init__(self) -> None:
        self._status = ExecutionStatus.PENDING

    @workflow.query(name="status")
    def status(self) -> ExecutionStatus:
        return self._status

    @workflow.run
    async def run(self, job: ToolExecutionInput) -> ExecutionResult:
        if job.kind is None:  # the starter could not read the tools table: ask a worker what the tool is
            resolved: ResolvedTool = await workflow.execute_local_activity(
                RESOLVE_TOOL,
                job.request,
                result_type=ResolvedTool,
                start_to_close_timeout=PROJECTION_TIMEOUT,
                retry_policy=PROJECTION_RETRY,
            )
            job = job.model_copy(update={"kind": resolved.kind, "idempotent": resolved.idempotent})
        if job.kind == COMPOSITE:
            return await self._run_composite(job)
        return await self._run_atomic(job)

    async def _run_atomic(self, job: ToolExecutionInput) -> ExecutionResult:
        self._status = ExecutionStatus.RUNNING  # for the status query; StepflowStatus is set at the end only
        attempts = Attempts(job)
        while True:
            try:
                run: RecordedRun = await workflow.execute_activity(
                    RUN_AND_RECORD,
                    attempts.activity_input(job, workflow.info().start_time),
                    result_type=RecordedRun,
                    **attempts.activity_options(),
                )
                break
            except (ActivityError, asyncio.CancelledError, CancelledError) as failure:
                lost = lost_attempt(failure)  # a lost worker is not the tool's failure (workflows/attempts.py)
                if lost is None or not workflow.patched(INFRASTRUCTURE_RETRIES):
                    await self._end_unsuccessful(job, job.request.version, failure)
                elif not attempts.run_again_after(lost):
                    await self._end_unsuccessful(job, job.request.version, attempts.worker_lost(job))
        result = _result(job, run.version, ExecutionStatus.COMPLETED, run.end_time, output=run.output)
        if not run.recorded:  # the database was unavailable, or an earlier try may have ended the row: record it
            await self._finish(job, result)
        self._set_status(ExecutionStatus.COMPLETED)
        return result

    async def _run_composite(self, job: ToolExecutionInput) -> ExecutionResult:
        prepared: PreparedExecution = await workflow.execute_local_activity(
            PREPARE_EXECUTION,
            PrepareInput(
                execution_id=job.execution_id,
                request=job.request,
                start_time=workflow.info().start_time,
                principal=job.principal,
            ),
            result_type=PreparedExecution,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )
        version = prepared.version
        if prepared.error is not None or prepared.plan is None:
            error = prepared.error or ErrorInfo(type="InternalError", message="the composite has no plan")
            await self._end(job, _result(job, version, ExecutionStatus.FAILED, workflow.now(), error=error))
            raise ApplicationError(error.message, type=error.type, non_retryable=True)
        self._set_status(ExecutionStatus.RUNNING)
        runner = CompositeRunner(job, prepared.plan, prepared.parameters)
        try:
            outcome = await runner.run()
        except (asyncio.CancelledError, CancelledError):
            output = {"steps": runner.report()}
            await self._end(job, _result(job, version, ExecutionStatus.CANCELLED, workflow.now(), output, CANCELLED))
            raise
        result = _result(job, version, outcome.status, workflow.now(), outcome.output, _info(outcome.error))
        await self._end(job, result)
        if outcome.error is not None:
            raise ApplicationError(outcome.error.message, outcome.output, type=outcome.error.kind, non_retryable=True)
        return result

    async def _end_unsuccessful(self, job: ToolExecutionInput, version: str | None, failure: BaseException) -> NoReturn:
        """Record how the tool's activity ended (cancelled, timed out, failed), then raise that end."""
        error = from_failure(failure)
        if error.kind == "ExecutionCancelled":
            await self._end(job, _result(job, version, ExecutionStatus.CANCELLED, workflow.now(), error=CANCELLED))
            raise failure
        status = ExecutionStatus.TIMED_OUT if isinstance(error, TimeoutExceeded) else ExecutionStatus.FAILED
        await self._end(job, _result(job, version, status, workflow.now(), error=_info(error)))
        raise ApplicationError(error.message, type=error.kind, non_retryable=True) from None

    async def _end(self, job: ToolExecutionInput, result: ExecutionResult) -> None:
        await self._finish(job, result)
        self._set_status(result.status)

    async def _finish(self, job: ToolExecutionInput, result: ExecutionResult) -> None:
        await workflow.execute_local_activity(
            FINISH_EXECUTION,
            FinishInput(request=job.request, result=result),
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )

    def _set_status(self, status: ExecutionStatus) -> None:
        self._status = status
        workflow.upsert_search_attributes([search_attributes.STATUS.value_set(status.value)])


def _result(
    job: ToolExecutionInput,
    version: str | None,
    status: ExecutionStatus,
    end_time: datetime,
    output: Any = None,
    error: ErrorInfo | None = None,
) -> ExecutionResult:
    start_time = workflow.info().start_time
    return ExecutionResult(
        execution_id=job.execution_id,
        status=status,
        output=output,
        error=error,
        metadata=ExecutionMetadata.for_request(job.request, version),
        timing=ExecutionTiming(
            start_time=start_time,
            end_time=end_time,
            duration_ms=max(0, int((end_time - start_time).total_seconds() * 1000)),
        ),
    )


def _info(error: ExecutorError | None) -> ErrorInfo | None:
    return None if error is None else ErrorInfo(type=error.kind, message=error.message)
