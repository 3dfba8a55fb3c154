"""The workflow's bookkeeping activities: a composite's start, and every end its one activity did not record.

They run as local activities of ToolExecutionWorkflow (cheap: no task-queue round trip) and are retried
with backoff while the database is unavailable (a failed write raises the retryable DatabaseError), so a
projection outage delays the bookkeeping, never the execution's result.

- ``prepare_execution`` (composites): validate the request and the caller's right to run every step's tool,
  insert the row (``running``: a composite runs from its start) with its "validated" line, hand over the plan
  of steps.
- ``finish_execution``: write the terminal status, output, error, end time and duration with the terminal
  line and metrics (:meth:`~stepflow.db.writer.ProjectionWriter.record_execution_end`), inserting the row
  first if the execution never wrote one.
"""

from __future__ import annotations

from dataclasses import replace

import structlog
from sqlalchemy.exc import IntegrityError
from temporalio import activity

from activities.names import FINISH_EXECUTION, PREPARE_EXECUTION
from activities.validation import check_request
from stepflow.config import ExecutorSettings
from stepflow.contracts import FinishInput, PreparedExecution, PrepareInput
from stepflow.db.writer import ExecutionStart, ProjectionWriter
from stepflow.errors import DatabaseError, ExecutorError, InternalError, to_application_error
from stepflow.identity import ExecutionPermissionChecker, Principal
from stepflow.models import ErrorInfo, ExecutionStatus
from stepflow.observability import metrics as ops_metrics
from stepflow.registry import ToolRegistry
from stepflow.tools.composite import CompositeTool

log = structlog.get_logger(__name__)


class ProjectionActivities:
    """Validation against the registry and the workflow's idempotent writes of the executions row."""

    def __init__(
        self,
        registry: ToolRegistry,
        writer: ProjectionWriter,
        executor: ExecutorSettings,
        permissions: ExecutionPermissionChecker,
    ) -> None:
        self._registry = registry
        self._writer = writer
        self._executor = executor
        self._permissions = permissions

    @activity.defn(name=PREPARE_EXECUTION)
    async def prepare_execution(self, job: PrepareInput) -> PreparedExecution:
        """Resolve the composite (ToolNotFound has no row to write), insert its row, check its parameters.

        Invalid parameters or limits come back as ``error`` so the workflow records them on the row.
        """
        request = job.request
        ops_metrics.execution_started(job.execution_id, job, attempt=activity.info().attempt)
        try:
            checked = check_request(self._registry, self._executor, job.execution_id, request)
            definition = checked.definition
            if not isinstance(definition, CompositeTool):
                raise InternalError(
                    f"tool {request.tool_id!r} is not a composite on this worker but was started as one: the "
                    "workers disagree on their tools; run them with the same STEPFLOW_TOOL_MODULES/_FILES"
                )
        except ExecutorError as error:
            raise to_application_error(error) from None
        if checked.invalid is None and job.principal is not None:
            checked = replace(checked, invalid=await self._denied_step(job.principal, definition))
        status = ExecutionStatus.RUNNING if checked.invalid is None else ExecutionStatus.PENDING
        start = ExecutionStart(job.execution_id, request, definition.version, job.start_time, status)
        await self._writer.record_execution_start(start, lines=[] if checked.line is None else [checked.line])
        return PreparedExecution(
            version=definition.version,
            kind=definition.kind,
            parameters=checked.parameters,
            error=checked.invalid,
            plan=definition.plan,
        )

    async def _denied_step(self, principal: Principal, composite: CompositeTool) -> ErrorInfo | None:
        """PermissionDenied for the first step whose tool the caller may not run: a composite runs no tool its
        caller could not run itself (a nested composite checks its own steps when it starts)."""
        for step in composite.plan.steps:
            if not await self._permissions.can_execute_tool(principal, step.tool_id):
                message = (
                    f"{principal} may not run tool {step.tool_id!r}, which step {step.id!r} of composite "
                    f"{composite.id!r} runs; an admin can grant it with stepflow grants add"
                )
                return ErrorInfo(type="PermissionDenied", message=message)
        return None

    @activity.defn(name=FINISH_EXECUTION)
    async def finish_execution(self, end: FinishInput) -> str | None:
        """Write the terminal state (once), inserting the row first if it is missing.

        Returns the version on the row: it goes into the history with this activity's result, where
        ``projection rebuild`` finds it; None when the execution cannot have a row (its tool is unknown to
        the tools table, so the row's foreign key has nothing to point at).
        """
        request, result = end.request, end.result
        version = result.metadata.version or request.version
        if version is None:
            try:
                version = self._registry.resolve(request.tool_id).version
            except ExecutorError:
                version = "unknown"
        start_time, end_time = result.timing.start_time, result.timing.end_time
        assert start_time is not None and end_time is not None, "a workflow's result always has its timing"
        start = ExecutionStart(result.execution_id, request, version, start_time)
        ops_metrics.terminal_state_pending(result.execution_id)
        try:
            await self._writer.record_execution_end(start, result, final=True)
        except DatabaseError as error:
            if isinstance(error.__cause__, IntegrityError):
                log.warning("execution not recorded: its tool is unknown", execution_id=result.execution_id)
                ops_metrics.terminal_state_written(result.execution_id)
                return None
            raise
        ops_metrics.terminal_state_written(result.execution_id)
        ops_metrics.execution_ended(result.execution_id, result.status, result.error, end_time, start=start)
        return version
