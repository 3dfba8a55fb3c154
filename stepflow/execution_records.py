"""An execution as Temporal's history records it, compared with its ``executions`` row, and the row restored.

Temporal's histories are the source of truth. :func:`load_record` reads one execution's history: the
workflow input (the request), the version (from a local activity's result or the workflow's), the outcome
(result, failure, or how it was terminated) and the workflow's own clock (its first and last workflow
tasks). :func:`compare` lists what its row gets wrong: status (timed out vs failed from the StepflowStatus
search attribute), start and end times, the output of a completed execution and the error of a failed one.
:func:`restore` writes the row as the record says. ``stepflow projection verify / rebuild`` and the
worker's reconciler are built on these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecution
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from stepflow import temporal_state
from stepflow.contracts import PreparedExecution, ToolExecutionInput
from stepflow.db.projection import Projection
from stepflow.db.writer import ExecutionStart
from stepflow.errors import from_failure
from stepflow.models import ErrorInfo, ExecutionResult, ExecutionStatus

TIME_SLACK = timedelta(seconds=2)


@dataclass
class Mismatch:
    """One difference between Temporal and the projection."""

    execution_id: str
    field: str
    temporal: Any
    projection: Any

    def __str__(self) -> str:
        return f"{self.execution_id}: {self.field}: Temporal has {self.temporal!r}, the projection {self.projection!r}"


@dataclass
class TemporalRecord:
    """An execution as Temporal's history tells it."""

    execution: WorkflowExecution
    status: ExecutionStatus | None  # None while running
    job: ToolExecutionInput | None = None
    result: ExecutionResult | None = None
    error: ErrorInfo | None = None
    version: str | None = None
    first_task_time: datetime | None = None  # what the workflow saw as its start (workflow.info().start_time)
    last_task_time: datetime | None = None


async def load_record(client: Client, execution: WorkflowExecution) -> TemporalRecord:
    """Read the history: the input (request), the prepare marker (version) and the outcome."""
    handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
    if temporal_state.closed_status(execution) is None:  # the list (visibility) lags: ask the execution itself
        execution = await handle.describe()
    record = TemporalRecord(execution=execution, status=temporal_state.closed_status(execution))
    converter = client.data_converter
    history = await handle.fetch_history()
    task_started: datetime | None = None
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_started = event.event_time.ToDatetime().replace(tzinfo=UTC)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and task_started is not None:
            # the workflow's clock (workflow.info().start_time, workflow.now()) is its completed tasks' start
            record.first_task_time = record.first_task_time or task_started
            record.last_task_time = task_started
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            record.job = await temporal_state.recorded_input(converter, event)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and record.version is None:
            record.version = await _marker_version(converter, event)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            payloads = event.workflow_execution_completed_event_attributes.result.payloads
            [record.result] = await converter.decode(payloads, [ExecutionResult])
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            failure = await converter.decode_failure(event.workflow_execution_failed_event_attributes.failure)
            error = from_failure(failure)
            kind = failure.type if isinstance(failure, ApplicationError) and failure.type else error.kind
            record.error = ErrorInfo(type=kind, message=error.message)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason or "no reason given"
            record.error = ErrorInfo(
                type="InternalError", message=f"the execution was terminated in Temporal: {reason}"
            )
    if record.result is not None and record.result.metadata.version:
        record.version = record.result.metadata.version
    return record


_MARKER_RESULT: Any = PreparedExecution | str | None  # what our local activities return (a type hint)


async def _marker_version(converter: DataConverter, event: HistoryEvent) -> str | None:
    """The version a local activity's result names: prepare_execution's PreparedExecution, or the version
    finish_execution returns on the one-activity path; None for any other marker."""
    details = event.marker_recorded_event_attributes.details
    if "result" not in details or not details["result"].payloads:
        return None
    try:
        [result] = await converter.decode(details["result"].payloads, [_MARKER_RESULT])
    except Exception:  # not a result of ours
        return None
    if isinstance(result, PreparedExecution):
        return result.version
    return result if isinstance(result, str) else None


def _close(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= TIME_SLACK


def compare(record: TemporalRecord, row: Any) -> list[Mismatch]:
    """Differences between one Temporal record and its row (None: no row)."""
    execution_id = record.execution.id
    found = None if row is None else ExecutionStatus(row.status)
    if record.status is None:
        if found is not None and found.is_terminal:
            return [Mismatch(execution_id, "status", "running", found.value)]
        return [] if row is not None else [Mismatch(execution_id, "row", "exists", None)]
    if row is None:
        return [Mismatch(execution_id, "row", record.status.value, None)]
    problems: list[Mismatch] = []
    if found is not record.status:
        problems.append(Mismatch(execution_id, "status", record.status.value, row.status))
    # the row holds the start the workflow saw: its first workflow task (a timed-out first task may have written it)
    latest_start = (record.first_task_time or record.execution.start_time) + TIME_SLACK
    if not (record.execution.start_time - TIME_SLACK <= row.start_time <= latest_start):
        problems.append(Mismatch(execution_id, "start_time", record.first_task_time, row.start_time))
    close_time = record.execution.close_time
    if row.end_time is None or close_time is None or not (row.start_time <= row.end_time <= close_time + TIME_SLACK):
        problems.append(Mismatch(execution_id, "end_time", close_time, row.end_time))
    completed = record.status is ExecutionStatus.COMPLETED and record.result is not None
    if completed and record.result is not None and row.result_data != record.result.output:
        problems.append(Mismatch(execution_id, "result", record.result.output, row.result_data))
    if record.error is not None and record.status in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT):
        expected = f"{record.error.type}: {record.error.message}"
        if row.error_message != expected:
            problems.append(Mismatch(execution_id, "error", expected, row.error_message))
    return problems


async def restore(projection: Projection, record: TemporalRecord) -> bool:
    """Write the row as Temporal's record says (insert or overwrite); False if the history has no input."""
    if record.job is None:
        return False
    request = record.job.request
    status = record.status
    end_time = record.last_task_time or record.execution.close_time
    if record.result is not None and record.result.timing.end_time is not None:
        end_time = record.result.timing.end_time
    error = record.error
    if status is ExecutionStatus.CANCELLED:
        error = ErrorInfo(type="ExecutionCancelled", message="the execution was cancelled")
    start = ExecutionStart(
        record.execution.id,
        request,
        record.version or request.version,
        record.first_task_time or record.execution.start_time,
        status or ExecutionStatus.RUNNING,
    )
    output = record.result.output if record.result is not None else None
    await projection.writer.restore_execution(
        start, end_time=end_time if status is not None else None, output=output, error=error
    )
    return True
