"""``stepflow projection verify`` / ``rebuild``: the SQL projection checked against, and rebuilt from, Temporal.

Temporal's histories are the source of truth. :func:`verify` lists every ToolExecutionWorkflow (optionally of
one task queue) and compares it with its ``executions`` row: status (timed out vs failed comes from the
StepflowStatus search attribute), start and end times, the output of a completed execution and the error of a
failed one. Executions rejected with ToolNotFound have no row by design (the row's tool must exist), so they
are skipped and counted. :func:`rebuild` rewrites the missing or wrong rows from the histories: the workflow
input holds the request, the result or failure holds the outcome; it is idempotent, and a wiped database
comes back (tools rows from the registry, or minimal ones from the histories).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
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
from stepflow.models import ErrorInfo, ExecutionResult, ExecutionStatus, ToolInfo

WORKFLOW_TYPE = "ToolExecutionWorkflow"
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
class VerifyReport:
    """What verify found: executions checked, mismatches, and those skipped with the reason."""

    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def wrong_ids(self) -> list[str]:
        return sorted({m.execution_id for m in self.mismatches})


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


async def list_executions(client: Client, task_queue: str | None = None) -> list[WorkflowExecution]:
    query = f'WorkflowType = "{WORKFLOW_TYPE}"'
    if task_queue:
        query += f' AND TaskQueue = "{task_queue}"'
    return [execution async for execution in client.list_workflows(query)]


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


async def _records(client: Client, executions: list[WorkflowExecution], concurrency: int) -> list[TemporalRecord]:
    gate = asyncio.Semaphore(concurrency)

    async def one(execution: WorkflowExecution) -> TemporalRecord:
        async with gate:
            return await load_record(client, execution)

    return list(await asyncio.gather(*(one(execution) for execution in executions)))


async def verify(
    client: Client, projection: Projection, *, task_queue: str | None = None, concurrency: int = 20
) -> tuple[VerifyReport, list[TemporalRecord]]:
    """Compare every execution Temporal knows with its row."""
    report = VerifyReport()
    records = await _records(client, await list_executions(client, task_queue), concurrency)
    for record in records:
        row = await projection.reader.get_execution(record.execution.id)
        if row is None and record.error is not None and record.error.type == "ToolNotFound":
            report.skipped[record.execution.id] = "rejected with ToolNotFound: no row by design"
            continue
        report.checked += 1
        report.mismatches.extend(compare(record, row))
    return report, records


async def rebuild(
    client: Client,
    projection: Projection,
    *,
    tools: list[ToolInfo] | None = None,
    task_queue: str | None = None,
    concurrency: int = 20,
) -> tuple[int, VerifyReport]:
    """Rewrite every missing or wrong row from Temporal's histories; returns (rows written, report before)."""
    if tools:
        await projection.writer.upsert_tools(tools)
    report, records = await verify(client, projection, task_queue=task_queue, concurrency=concurrency)
    wrong = set(report.wrong_ids)
    known_tools = {tool.id for tool in await projection.reader.list_tools()}
    written = 0
    for record in sorted(records, key=lambda r: r.execution.start_time):
        if record.execution.id not in wrong or record.job is None:
            continue
        request = record.job.request
        if request.tool_id not in known_tools:
            version = record.version or request.version or "unknown"
            await projection.writer.upsert_tools([ToolInfo(id=request.tool_id, version=version, kind="unknown")])
            known_tools.add(request.tool_id)
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
        written += 1
    return written, report
