"""Projection activities: validate a request and write its row; write an execution's terminal state.

They run as local activities of ToolExecutionWorkflow (cheap: no task-queue round trip) and are retried
with backoff while the database is unavailable (a failed write raises the retryable DatabaseError), so a
projection outage delays the bookkeeping, never the tool's result.

Besides the ``executions`` row they write the engine's lifecycle lines of ``execution_logs``: "validated" (or
"validation failed: ...") with the row, and the terminal line ("completed", "failed: ...", "timed out: ...",
"cancelled") with the terminal status, together with the ``duration_ms`` / ``attempts`` / ``output_bytes``
metrics (see :meth:`~stepflow.db.projection.Projection.finish_execution`).
"""

from __future__ import annotations

import structlog
from sqlalchemy.exc import IntegrityError
from temporalio import activity

from activities.names import FINISH_EXECUTION, PREPARE_EXECUTION
from activities.validation import check_request
from stepflow.config import ExecutorSettings
from stepflow.db.projection import Projection
from stepflow.errors import DatabaseError, ExecutorError, to_application_error
from stepflow.models import ExecutionStatus, PreparedExecution, RecordEndInput, RecordStartInput
from stepflow.observability import metrics as ops_metrics
from stepflow.registry import ToolRegistry
from stepflow.tools.composite import CompositeTool

log = structlog.get_logger(__name__)


class ProjectionActivities:
    """Validation against the registry and idempotent writes of the executions row."""

    def __init__(self, registry: ToolRegistry, projection: Projection, executor: ExecutorSettings) -> None:
        self._registry = registry
        self._projection = projection
        self._executor = executor

    @activity.defn(name=PREPARE_EXECUTION)
    async def prepare_execution(self, start: RecordStartInput) -> PreparedExecution:
        """Resolve the tool (ToolNotFound has no row to write), insert the row, then check the parameters.

        Invalid parameters or limits come back as ``error`` so the workflow records them on the row.
        """
        request = start.request
        ops_metrics.execution_started(start.execution_id, start, attempt=activity.info().attempt)
        try:
            checked = check_request(self._registry, self._executor, start.execution_id, request)
        except ExecutorError as error:
            raise to_application_error(error) from None
        definition = checked.definition
        plan = definition.plan if isinstance(definition, CompositeTool) else None
        await self._projection.insert_execution(
            start.execution_id,
            request,
            version=definition.version,
            start_time=start.start_time,
            # a composite runs no run_tool activity that would mark it running: it runs from the start
            status=ExecutionStatus.RUNNING if plan is not None and checked.invalid is None else ExecutionStatus.PENDING,
            log=checked.line,
        )
        return PreparedExecution(
            version=definition.version,
            kind=definition.kind,
            parameters=checked.parameters,
            error=checked.invalid,
            plan=plan,
        )

    @activity.defn(name=FINISH_EXECUTION)
    async def finish_execution(self, end: RecordEndInput) -> str | None:
        """Write the terminal status, output, error, end time and duration (once).

        With ``end.start`` (the one-activity path, whose activity may have failed before writing the row) the
        row is inserted first if it is missing, and the version on the row is returned: it goes into the
        history with this activity's result, where ``projection rebuild`` finds it.
        """
        if end.start is not None and not await self._insert_if_missing(end.execution_id, end.start):
            return None
        ops_metrics.terminal_state_pending(end.execution_id)
        await self._projection.finish_execution(
            end.execution_id, status=end.status, end_time=end.end_time, output=end.output, error=end.error
        )
        ops_metrics.terminal_state_written(end.execution_id)
        ops_metrics.execution_ended(end.execution_id, end.status, end.error, end.end_time, start=end.start)
        if end.start is None:
            return None
        row = await self._projection.get_execution(end.execution_id)
        return None if row is None else str(row.version)

    async def _insert_if_missing(self, execution_id: str, start: RecordStartInput) -> bool:
        """Insert the row unless it exists; False if it cannot exist (the tools table lacks its tool)."""
        version = start.request.version
        if version is None:
            try:
                version = self._registry.resolve(start.request.tool_id).version
            except ExecutorError:
                version = "unknown"
        try:
            await self._projection.insert_execution(
                execution_id, start.request, version=version, start_time=start.start_time
            )
        except DatabaseError as error:
            if isinstance(error.__cause__, IntegrityError):
                log.warning("execution not recorded: its tool is unknown", execution_id=execution_id)
                return False
            raise
        return True
