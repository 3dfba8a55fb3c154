"""The Executor: the spec's methods over the Temporal client (live state) and the SQL projection (history).

::

    async with await Executor.connect() as executor:
        result = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"message": "hi"}))

Live questions (status, result, cancel) go to Temporal; when Temporal has dropped an execution's history
the projection answers instead. Lists, logs and metrics come from the projection. Every Executor acts as one
principal (:mod:`stepflow.identity`): its requests run for it, and another tenant's execution is
PermissionDenied to a member or viewer (:mod:`starter.access`).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starter.access import Access
from starter.admission import AdmissionControl
from starter.tool_catalog import ToolCatalog
from stepflow import request_checks, temporal_state
from stepflow import search_attributes as sa
from stepflow.config import Settings, load_settings
from stepflow.contracts import SchedulingOptions, ToolExecutionInput, WorkflowRuntimeOptions
from stepflow.db import rows
from stepflow.db.projection import Projection
from stepflow.errors import (
    ExecutionNotFound,
    InternalError,
    InvalidParameters,
    PermissionDenied,
    from_failure,
)
from stepflow.identity import ExecutionPermissionChecker, Principal, load_permission_checker
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
)
from stepflow.monitoring import queue_length
from stepflow.observability import tracing
from stepflow.temporal import connect
from stepflow.workflow_start import WORKFLOW_NAME, execution_id_for, start_options


@dataclass
class _Connections:
    """What every view of one Executor shares: the clients, the caches, admission control, the checker."""

    client: Client
    projection: Projection
    settings: Settings
    permissions: ExecutionPermissionChecker
    admission: AdmissionControl
    tools: ToolCatalog


class Executor:
    """Start, watch, cancel and list tool executions, as one principal.

    ``Executor.connect(principal=...)`` opens the connections; :meth:`for_principal` gives a view that shares
    them and acts as another principal (the API server's one per request). Only the Executor that opened the
    connections closes them.
    """

    def __init__(
        self,
        client: Client,
        projection: Projection,
        settings: Settings,
        *,
        principal: Principal,
        permissions: ExecutionPermissionChecker | None = None,
    ) -> None:
        self._shared = _Connections(
            client=client,
            projection=projection,
            settings=settings,
            permissions=permissions or load_permission_checker(settings.permission_checker, projection.reader),
            admission=AdmissionControl(client, settings.temporal.task_queue, settings.scheduler.queue_size),
            tools=ToolCatalog(projection.reader),
        )
        self._access = Access(principal, self._shared.permissions)
        self._owner = True

    @classmethod
    async def connect(cls, settings: Settings | None = None, *, principal: Principal) -> Executor:
        """Connect to Temporal and the projection named by the settings (read from the environment if None)."""
        settings = settings or load_settings()
        client = await connect(settings.temporal)
        projection = await Projection.open(settings.resolved_database_url, required=False)
        return cls(client, projection, settings, principal=principal)

    def for_principal(self, principal: Principal) -> Executor:
        """This Executor's connections, acting as ``principal``."""
        view = copy.copy(self)
        view._access = Access(principal, self._shared.permissions)
        view._owner = False
        return view

    @property
    def principal(self) -> Principal:
        return self._access.principal

    @property
    def client(self) -> Client:
        return self._shared.client

    @property
    def projection(self) -> Projection:
        return self._shared.projection

    @property
    def settings(self) -> Settings:
        return self._shared.settings

    async def close(self) -> None:
        if self._owner:
            await self.projection.close()

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- the spec's methods ---------------------------------------------------------------------------

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
        """Start the execution and return its id; the same (tenant, request_id) returns the same id.

        Nothing starts for a request that fails a check: the models' constraints, this engine's caps
        (InvalidParameters, ResourceLimitExceeded), the principal's rights (PermissionDenied), the tools table
        (ToolNotFound), the tool's parameter schema.
        """
        request = request_checks.revalidated(self._access.bind(request))
        request_checks.check_caps(self.settings.executor, request)
        if not request.context.request_id:
            context = request.context.model_copy(update={"request_id": str(uuid.uuid4())})
            request = request.model_copy(update={"context": context})
        execution_id = execution_id_for(request.context.tenant_id, request.context.request_id)
        tracing.bind_execution(execution_id, request)
        await self._access.check_start(request)
        tool = await self._shared.tools.find(request)
        request_checks.check_schema(tool, request)
        if request.context.parent_execution_id is not None:
            await self._check_parent(request.context.parent_execution_id, request.context.tenant_id)
        await self._shared.admission.admit()
        job = ToolExecutionInput(
            execution_id=execution_id,
            request=request,
            runtime=self._runtime(),
            kind=tool.kind,
            idempotent=tool.idempotent,
            principal=self.principal,
        )
        try:
            await self.client.start_workflow(
                WORKFLOW_NAME,
                job,
                task_queue=self.settings.temporal.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                **start_options(job).as_kwargs(),
            )
        except WorkflowAlreadyStartedError:
            pass  # the same request was started before: that execution is the answer
        except RPCError as exc:
            raise InternalError(f"cannot start execution {execution_id}: {exc.message}") from exc
        return execution_id

    async def get_execution_status(self, execution_id: str) -> ExecutionStatus:
        """The execution's current status."""
        return (await self.get_execution_progress(execution_id)).status

    async def cancel_execution(self, execution_id: str) -> None:
        """Ask Temporal to cancel the execution; the tool is stopped and the status becomes cancelled."""
        description = await self._describe(execution_id)
        tenant = _owner(description) if description is not None else (await self._row(execution_id)).tenant_id
        await self._access.check_cancel(execution_id, tenant)
        if description is not None and description.status == WorkflowExecutionStatus.RUNNING:
            await self.client.get_workflow_handle(execution_id).cancel()

    async def get_execution_result(self, execution_id: str) -> ExecutionResult:
        """The execution's result so far: output when completed, the typed error when not."""
        description = await self._describe(execution_id)
        if description is None:
            return rows.execution_result(await self._row(execution_id))
        status = temporal_state.live_status(description)
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
        """Executions from the SQL projection, newest first (the principal's tenant's, unless an admin's)."""
        return await self.projection.reader.list_executions(self._access.executions(execution_filter))

    # --- beyond the spec's six: progress, steps, logs and metrics -----------------------------------------

    async def get_execution_progress(self, execution_id: str) -> ExecutionProgress:
        """Status plus the current attempt and the tool's last reported progress (from its heartbeats)."""
        description = await self._describe(execution_id)
        if description is None:
            row = await self._row(execution_id)
            return ExecutionProgress(execution_id=execution_id, status=ExecutionStatus(row.status))
        return await temporal_state.progress(self.client.data_converter, description)

    async def list_steps(self, execution_id: str) -> list[ExecutionInfo]:
        """The child executions of a composite (its steps), in the order they started; [] for other tools."""
        request_checks.checked_execution_id(execution_id)
        scoped = self._access.executions(ExecutionFilter(parent_execution_id=execution_id, limit=10_000))
        found = await self.projection.reader.list_executions(scoped)
        return sorted(found, key=lambda row: (row.start_time, row.execution_id))

    async def get_logs(self, execution_id: str, *, after_id: int = 0) -> list[LogEntry]:
        """An execution's log lines (tool lines and lifecycle events), oldest first."""
        request_checks.checked_execution_id(execution_id)
        tenant = self._access.tenant_scope(None)
        if tenant is not None:
            await self._row(execution_id)  # another tenant's execution is PermissionDenied, not an empty list
        return await self.projection.reader.get_logs(execution_id, after_id=after_id, tenant_id=tenant)

    async def get_metrics(self, metric_filter: MetricFilter | None = None) -> ExecutionMetrics:
        """ExecutionMetrics: counts from the projection, queue length from the task queue's backlog."""
        scoped = self._access.metrics(metric_filter)
        backlog = await queue_length(self.client, self.settings.temporal.task_queue)
        return await self.projection.reader.execution_metrics(scoped, queue_length=backlog)

    async def get_metric_rows(self, metric_filter: MetricFilter | None = None) -> list[Metric]:
        """Rows of execution_metrics (the spec's ``Monitoring.get_metrics``)."""
        return await self.projection.reader.get_metrics(self._access.metrics(metric_filter))

    # --- helpers ----------------------------------------------------------------------------------------

    def _runtime(self) -> WorkflowRuntimeOptions:
        executor, scheduler = self.settings.executor, self.settings.scheduler
        return WorkflowRuntimeOptions(
            default_timeout=executor.default_timeout_delta,
            default_retry_delay=executor.retry_delay_delta,
            max_retry_count=executor.max_retry_count,
            heartbeat_timeout=executor.heartbeat_timeout_delta,
            cancel_grace=executor.cancel_grace_delta,
            max_infrastructure_retries=executor.max_infrastructure_retries,
            scheduling=SchedulingOptions(
                priority_levels=scheduler.priority_levels,
                send_priority=scheduler.enable_priority_queue,
                send_fairness=scheduler.enable_fair_scheduling,
            ),
        )

    async def _check_parent(self, parent_id: str, tenant_id: str) -> None:
        """InvalidParameters unless ``parent_id`` names an execution of ``tenant_id`` (in Temporal or SQL)."""
        try:
            description = await self._describe(parent_id)
            owner = _owner(description) if description is not None else (await self._row(parent_id)).tenant_id
        except (ExecutionNotFound, PermissionDenied):
            owner = None
        if owner != tenant_id:
            raise InvalidParameters(
                f"context.parent_execution_id {parent_id!r} names no execution of tenant {tenant_id!r}; "
                "leave it empty, or give the id of an execution that exists"
            )

    async def _describe(self, execution_id: str) -> WorkflowExecutionDescription | None:
        """Temporal's description of the execution (None if Temporal has no such execution), if readable."""
        request_checks.checked_execution_id(execution_id)
        try:
            description = await self.client.get_workflow_handle(execution_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise InternalError(f"cannot describe execution {execution_id}: {exc.message}") from exc
        await self._access.check_read(execution_id, _owner(description))
        return description

    async def _row(self, execution_id: str) -> Any:
        """The execution's row, if it exists and is readable."""
        row = await self.projection.reader.get_execution(execution_id)
        if row is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}; `stepflow list` shows recent ones")
        await self._access.check_read(execution_id, row.tenant_id)
        return row

    async def _metadata(self, handle: WorkflowHandle[Any, Any]) -> ExecutionMetadata:
        """Who runs what, from the workflow's input (its first history event) when there is no result to say it."""
        async for event in handle.fetch_history_events(page_size=1):
            job = await temporal_state.recorded_input(self.client.data_converter, event)
            return ExecutionMetadata.for_request(job.request, job.request.version)
        raise InternalError(f"execution {handle.id} has no history")


def _owner(description: WorkflowExecutionDescription) -> str:
    return description.typed_search_attributes.get(sa.TENANT_ID) or ""


__all__ = ["Executor"]
