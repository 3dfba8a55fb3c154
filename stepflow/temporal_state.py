"""An execution as Temporal tells it: its status from a description or a listing, and its recorded input.

Used by the Executor (live status, progress, metadata of an unfinished execution) and by
``stepflow projection verify / rebuild`` (the expected row of a closed execution).
"""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecution, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.converter import DataConverter

from stepflow import search_attributes as sa
from stepflow.contracts import ToolExecutionInput
from stepflow.models import ExecutionProgress, ExecutionStatus

CLOSED_STATUS = {
    WorkflowExecutionStatus.COMPLETED: ExecutionStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: ExecutionStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: ExecutionStatus.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: ExecutionStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: ExecutionStatus.TIMED_OUT,
}
_OPEN = (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW)


def closed_status(execution: WorkflowExecution) -> ExecutionStatus | None:
    """The terminal status of a closed execution (timed out vs failed from StepflowStatus); None while open."""
    if execution.status in _OPEN:
        return None
    assert execution.status is not None
    status = CLOSED_STATUS[execution.status]
    if status is ExecutionStatus.FAILED and execution.typed_search_attributes.get(sa.STATUS) == "timed_out":
        return ExecutionStatus.TIMED_OUT
    return status


def live_status(description: WorkflowExecutionDescription) -> ExecutionStatus:
    """The status of a described execution: pending until its activity (or a composite's step) runs."""
    closed = closed_status(description)
    if closed is not None:
        return closed
    pending = description.raw_description.pending_activities
    if any(a.state != PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED for a in pending):
        return ExecutionStatus.RUNNING
    if description.raw_description.pending_children:  # a composite whose steps run
        return ExecutionStatus.RUNNING
    return ExecutionStatus.PENDING


async def progress(converter: DataConverter, description: WorkflowExecutionDescription) -> ExecutionProgress:
    """Status plus the current attempt, the tool's last reported progress and the last attempt's failure."""
    found = ExecutionProgress(execution_id=description.id, status=live_status(description))
    for pending in description.raw_description.pending_activities:
        found.attempt = pending.attempt
        if pending.heartbeat_details.payloads:
            details: list[Any] = await converter.decode(pending.heartbeat_details.payloads)
            found.progress = details[0] if details else None
        if pending.HasField("last_failure"):
            found.last_failure = pending.last_failure.message
    return found


async def recorded_input(converter: DataConverter, started: HistoryEvent) -> ToolExecutionInput:
    """The workflow's input, from its first history event (WorkflowExecutionStarted)."""
    payloads = started.workflow_execution_started_event_attributes.input.payloads
    [job] = await converter.decode(payloads, [ToolExecutionInput])
    assert isinstance(job, ToolExecutionInput)
    return job
