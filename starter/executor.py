"""The Executor: the spec's six methods over the Temporal client (live state) and the SQL projection (history).

::

    async with await Executor.connect() as executor:
        result = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"message": "hi"}))

Live questions (status, result, cancel) go to Temporal; when Temporal has dropped an execution's history
the projection answers instead. Lists always come from the projection. A ``tenant_id`` given to a read or
cancel restricts it to that tenant's executions: another tenant's execution is PermissionDenied.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from types import TracebackType
from typing import Any

import structlog
from sqlalchemy.engine import Row
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    Priority as TemporalPriority,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from stepflow import search_attributes as sa
from stepflow.config import Settings, load_settings
from stepflow.db.projection import Projection
from stepflow.errors import (
    ExecutorError,
    InternalError,
    InvalidParameters,
    PermissionDenied,
    ResourceLimitExceeded,
    ToolNotFound,
    from_failure,
)
from stepflow.models import (
    ErrorInfo,
    ExecutionFilter,
    ExecutionInfo,
    ExecutionMetadata,
    ExecutionMetrics,
    ExecutionProgress,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    ExecutionTiming,
    LogEntry,
    Metric,
    MetricFilter,
    ToolExecutionInput,
    WorkflowRuntimeOptions,
)
from stepflow.monitoring import SqlMonitoring, queue_length
from stepflow.observability import metrics as ops_metrics
from stepflow.observability import tracing
from stepflow.temporal import connect
from workflows import ToolExecutionWorkflow

log = structlog.get_logger(__name__)

BACKLOG_CHECK_INTERVAL = 1.0  # seconds between two reads of the task queue's backlog (admission control)
TOOL_CACHE_SECONDS = 5.0  # how long a tool found in the tools table is taken as known without reading it again
_EXECUTION_NAMESPACE = uuid.UUID("5b0f3c1e-2d7a-4c1b-9a43-7f1f0d6a1c55")

_CLOSED_STATUS = {
    WorkflowExecutionStatus.COMPLETED: ExecutionStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: ExecutionStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: ExecutionStatus.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: ExecutionStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: ExecutionStatus.TIMED_OUT,
}


class ExecutionNotFound(InvalidParameters):
    """No execution has this id (kind: InvalidParameters)."""


def execution_id_for(tenant_id: str, request_id: str) -> str:
    """The execution id of a tenant's request: the same request id always names the same execution."""
    return f"exec-{uuid.uuid5(_EXECUTION_NAMESPACE, f'{tenant_id}/{request_id}')}"


def status_from_description(description: WorkflowExecutionDescription) -> ExecutionStatus:
    """Temporal's view of an execution's status, refined by the StepflowStatus search attribute."""
    recorded = description.typed_search_attributes.get(sa.STATUS)
    if description.status in (
        None,
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.CONTINUED_AS_NEW,
    ):
        pending = description.raw_description.pending_activities
        if any(a.state != PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED for a in pending):
            return ExecutionStatus.RUNNING
        if description.raw_description.pending_children:  # a composite whose steps run
            return ExecutionStatus.RUNNING
        return ExecutionStatus.PENDING
    status = _CLOSED_STATUS[description.status]
    if status is ExecutionStatus.FAILED and recorded == ExecutionStatus.TIMED_OUT.value:
        return ExecutionStatus.TIMED_OUT
    return status


class Executor:
    """Start, watch, cancel and list tool executions."""

    def __init__(self, client: Client, projection: Projection, settings: Settings) -> None:
        self.client = client
        self.projection = projection
        self.settings = settings
        self.monitoring = SqlMonitoring(projection, client, settings.temporal.task_queue)
        self._backlog = 0
        self._backlog_read_at = -BACKLOG_CHECK_INTERVAL
        self._backlog_lock = asyncio.Lock()
        self._tools: dict[str, tuple[float, Row[Any]]] = {}
        self._tool_reads: dict[str, asyncio.Future[Row[Any] | None]] = {}

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> Executor:
        """Connect to Temporal and the projection named by the settings (read from the environment if None)."""
        settings = settings or load_settings()
        client = await connect(settings.temporal)
        projection = await Projection.open(settings.resolved_database_url)
        return cls(client, projection, settings)

    async def close(self) -> None:
        await self.projection.close()

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- the spec's six methods -------------------------------------------------------------------

    async def execute_tool(self, request: ExecutionRequest) -> ExecutionResult:
        """Start the execution and wait for it; a failed execution raises its error kind."""
        execution_id = await self.execute_tool_async(request)
        handle = self.client.get_workflow_handle(execution_id, result_type=ExecutionResult)
        try:
            result: ExecutionResult = await handle.result()
        except WorkflowFailureError as failure:
            raise from_failure(failure) from None
        return result

    @tracing.traced("stepflow.start")
    async def execute_tool_async(self, request: ExecutionRequest) -> str:
        """Start the execution and return its id; the same (tenant, request_id) returns the same id."""
        context = request.context
        if not context.request_id:
            context = context.model_copy(update={"request_id": str(uuid.uuid4())})
            request = request.model_copy(update={"context": context})
        execution_id = execution_id_for(context.tenant_id, context.request_id)
        tracing.bind_execution(execution_id, request)
        kind = await self._check_tool(request)
        await self._admit()
        options = request.options
        scheduler = self.settings.scheduler
        try:
            await self.client.start_workflow(
                ToolExecutionWorkflow.run,
                ToolExecutionInput(execution_id=execution_id, request=request, runtime=self._runtime(), kind=kind),
                id=execution_id,
                task_queue=self.settings.temporal.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=sa.for_new_execution(
                    request, status=ExecutionStatus.PENDING if kind == "composite" else None
                ),
                priority=TemporalPriority(
                    priority_key=options.priority.priority_key if scheduler.enable_priority_queue else None,
                    fairness_key=context.tenant_id if scheduler.enable_fair_scheduling else None,
                ),
            )
        except WorkflowAlreadyStartedError:
            pass  # the same request was started before: that execution is the answer
        except RPCError as exc:
            raise InternalError(f"cannot start execution {execution_id}: {exc.message}") from exc
        return execution_id

    async def get_execution_status(self, execution_id: str, *, tenant_id: str | None = None) -> ExecutionStatus:
        """The execution's current status."""
        return (await self.get_execution_progress(execution_id, tenant_id=tenant_id)).status

    async def get_execution_progress(self, execution_id: str, *, tenant_id: str | None = None) -> ExecutionProgress:
        """Status plus the current attempt and the tool's last reported progress (from its heartbeats)."""
        description = await self._describe(execution_id, tenant_id)
        if description is None:
            row = await self._row(execution_id, tenant_id)
            return ExecutionProgress(execution_id=execution_id, status=ExecutionStatus(row.status))
        progress = ExecutionProgress(execution_id=execution_id, status=status_from_description(description))
        for pending in description.raw_description.pending_activities:
            progress.attempt = pending.attempt
            if pending.heartbeat_details.payloads:
                details = await self.client.data_converter.decode(pending.heartbeat_details.payloads)
                progress.progress = details[0] if details else None
            if pending.HasField("last_failure"):
                progress.last_failure = pending.last_failure.message
        return progress

    async def cancel_execution(self, execution_id: str, *, tenant_id: str | None = None) -> None:
        """Ask Temporal to cancel the execution; the tool is stopped and the status becomes cancelled."""
        description = await self._describe(execution_id, tenant_id)
        if description is None:
            await self._row(execution_id, tenant_id)
            return
        if description.status == WorkflowExecutionStatus.RUNNING:
            await self.client.get_workflow_handle(execution_id).cancel()

    async def get_execution_result(self, execution_id: str, *, tenant_id: str | None = None) -> ExecutionResult:
        """The execution's result so far: output when completed, the typed error when not."""
        description = await self._describe(execution_id, tenant_id)
        if description is None:
            return self._result_from_row(await self._row(execution_id, tenant_id))
        status = status_from_description(description)
        timing = ExecutionTiming(start_time=description.start_time, end_time=description.close_time)
        if description.close_time is not None:
            timing.duration_ms = int((description.close_time - description.start_time).total_seconds() * 1000)
        handle: WorkflowHandle[Any, ExecutionResult] = self.client.get_workflow_handle(
            execution_id, result_type=ExecutionResult
        )
        if not status.is_terminal:
            metadata = await self._metadata(handle)
            return ExecutionResult(execution_id=execution_id, status=status, metadata=metadata, timing=timing)
        try:
            return await handle.result()
        except WorkflowFailureError as failure:
            error = from_failure(failure)
            # a failed composite carries its per-step report as the error's details
            details = failure.cause.details if isinstance(failure.cause, ApplicationError) else ()
            return ExecutionResult(
                execution_id=execution_id,
                status=status,
                output=details[0] if details else None,
                error=ErrorInfo(type=error.kind, message=error.message),
                metadata=await self._metadata(handle),
                timing=timing,
            )

    async def list_executions(self, execution_filter: ExecutionFilter | None = None) -> list[ExecutionInfo]:
        """Executions from the SQL projection, newest first."""
        return await self.projection.list_executions(execution_filter)

    async def list_steps(self, execution_id: str, *, tenant_id: str | None = None) -> list[ExecutionInfo]:
        """The child executions of a composite (its steps), in the order they started; [] for other tools."""
        rows = await self.projection.list_executions(
            ExecutionFilter(parent_execution_id=execution_id, tenant_id=tenant_id, limit=10_000)
        )
        return sorted(rows, key=lambda row: (row.start_time, row.execution_id))

    # --- monitoring (projection) -------------------------------------------------------------------

    async def get_metrics(self, metric_filter: MetricFilter | None = None) -> ExecutionMetrics:
        """ExecutionMetrics: counts from the projection, queue length from the task queue's backlog."""
        return await self.monitoring.execution_metrics(metric_filter)

    async def get_metric_rows(self, metric_filter: MetricFilter | None = None) -> list[Metric]:
        """Rows of execution_metrics (the spec's ``Monitoring.get_metrics``)."""
        return await self.monitoring.get_metrics(metric_filter)

    async def get_logs(self, execution_id: str, *, after_id: int = 0, tenant_id: str | None = None) -> list[LogEntry]:
        """An execution's log lines (tool lines and lifecycle events), oldest first."""
        if tenant_id is not None:
            await self._row(execution_id, tenant_id)
        return await self.projection.get_logs(execution_id, after_id=after_id)

    # --- helpers ----------------------------------------------------------------------------------

    def _runtime(self) -> WorkflowRuntimeOptions:
        executor = self.settings.executor
        return WorkflowRuntimeOptions(
            default_timeout=executor.default_timeout_delta,
            default_retry_delay=executor.retry_delay_delta,
            max_retry_count=executor.max_retry_count,
            heartbeat_timeout=executor.heartbeat_timeout_delta,
            cancel_grace=executor.cancel_grace_delta,
        )

    @tracing.traced("stepflow.admission")
    async def _admit(self) -> None:
        """Refuse new executions while the task queue's backlog is at STEPFLOW_SCHEDULER_QUEUE_SIZE.

        Temporal's own backlog statistics are the queue length. They are read at most once a second, and
        concurrent starts share that one reading (a burst of starts must not become a burst of RPCs).
        """
        limit = self.settings.scheduler.queue_size
        if limit == 0:
            return
        if time.monotonic() - self._backlog_read_at >= BACKLOG_CHECK_INTERVAL:
            async with self._backlog_lock:
                if time.monotonic() - self._backlog_read_at >= BACKLOG_CHECK_INTERVAL:
                    await self._read_backlog()
        if self._backlog >= limit:
            ops_metrics.admission_refused(self.settings.temporal.task_queue)
            raise ResourceLimitExceeded(
                f"the task queue {self.settings.temporal.task_queue!r} has {self._backlog} tasks waiting for a "
                f"worker, at or above STEPFLOW_SCHEDULER_QUEUE_SIZE={limit}; retry later, start more workers or "
                "raise the limit"
            )

    async def _read_backlog(self) -> None:
        try:
            self._backlog = await queue_length(self.client, self.settings.temporal.task_queue)
        except InternalError as error:
            cause = error.__cause__
            if isinstance(cause, RPCError) and cause.status == RPCStatusCode.UNIMPLEMENTED:
                log.warning("admission control off: this Temporal server reports no task-queue backlog")
                self._backlog, self._backlog_read_at = 0, float("inf")  # never ask again
                return
            raise
        self._backlog_read_at = time.monotonic()

    @tracing.traced("stepflow.check_tool")
    async def _check_tool(self, request: ExecutionRequest) -> str:
        """ToolNotFound unless the tools table lists the tool (and the version asked for); else its kind.

        A tool found is remembered for TOOL_CACHE_SECONDS (tools are only ever added), and concurrent starts
        share one read, so a burst of starts does not read the same row each time; a tool or version not
        found is always looked up afresh.
        """
        found_at, known = self._tools.get(request.tool_id, (-TOOL_CACHE_SECONDS, None))
        fresh = time.monotonic() - found_at < TOOL_CACHE_SECONDS
        if known is None or not fresh or (request.version is not None and request.version not in known.versions):
            known = await self._read_tool(request.tool_id)
        if known is None:
            raise ToolNotFound(
                f"unknown tool {request.tool_id!r}; `stepflow tools` lists the registered ones "
                "(a tool is registered when a worker that has it starts)"
            )
        if request.version is not None and request.version not in known.versions:
            raise ToolNotFound(
                f"tool {request.tool_id!r} has no version {request.version!r}; versions: {', '.join(known.versions)}"
            )
        kind: str = known.kind
        return kind

    async def _read_tool(self, tool_id: str) -> Row[Any] | None:
        """The tool's row, read once for all the callers waiting for it at the same time."""
        reading = self._tool_reads.get(tool_id)
        if reading is None:
            reading = asyncio.ensure_future(self.projection.get_tool(tool_id))
            self._tool_reads[tool_id] = reading
            reading.add_done_callback(lambda _: self._tool_reads.pop(tool_id, None))
        row = await asyncio.shield(reading)
        if row is not None:
            self._tools[tool_id] = (time.monotonic(), row)
        return row

    async def _describe(self, execution_id: str, tenant_id: str | None) -> WorkflowExecutionDescription | None:
        try:
            description = await self.client.get_workflow_handle(execution_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise InternalError(f"cannot describe execution {execution_id}: {exc.message}") from exc
        owner = description.typed_search_attributes.get(sa.TENANT_ID)
        if tenant_id is not None and owner != tenant_id:
            raise PermissionDenied(f"execution {execution_id} belongs to another tenant")
        return description

    async def _row(self, execution_id: str, tenant_id: str | None) -> Any:
        row = await self.projection.get_execution(execution_id)
        if row is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}; `stepflow list` shows recent ones")
        if tenant_id is not None and row.tenant_id != tenant_id:
            raise PermissionDenied(f"execution {execution_id} belongs to another tenant")
        return row

    async def _metadata(self, handle: WorkflowHandle[Any, Any]) -> ExecutionMetadata:
        """Who runs what, from the workflow's input (its first history event) when there is no result to say it."""
        async for event in handle.fetch_history_events(page_size=1):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [job] = await self.client.data_converter.decode(payloads, [ToolExecutionInput])
            return ExecutionMetadata.for_request(job.request, job.request.version)
        raise InternalError(f"execution {handle.id} has no history")

    @staticmethod
    def _result_from_row(row: Any) -> ExecutionResult:
        error = None
        if row.error_message:
            kind, _, message = row.error_message.partition(": ")
            error = ErrorInfo(type=kind, message=message)
        return ExecutionResult(
            execution_id=row.id,
            status=ExecutionStatus(row.status),
            output=row.result_data,
            error=error,
            metadata=ExecutionMetadata(
                tool_id=row.tool_id,
                version=row.version,
                tenant_id=row.tenant_id,
                user_id=row.user_id,
                session_id=row.session_id,
                parent_execution_id=row.parent_execution_id,
            ),
            timing=ExecutionTiming(start_time=row.start_time, end_time=row.end_time, duration_ms=row.duration_ms),
        )


__all__ = ["ExecutionNotFound", "Executor", "ExecutorError", "execution_id_for"]
