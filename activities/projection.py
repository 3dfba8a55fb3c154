"""The workflow's bookkeeping activities: a composite's start, and every end its one activity did not record.

They run as local activities of ToolExecutionWorkflow (cheap: no task-queue round trip). A composite's
``prepare_execution`` is retried with backoff while the database is unavailable (a composite starts once its
row exists); ``finish_execution`` hands its write to the projection's spool, so a projection outage delays
the bookkeeping, never the execution's result.

- ``prepare_execution`` (composites): validate the request and the caller's right to run every step's tool,
  insert the row (``running``: a composite runs from its start) with its "validated" line, hand over the plan
  of steps.
- ``finish_execution``: write the terminal status, output, error, end time and duration with the terminal
  line and metrics (:meth:`~stepflow.db.writer.ProjectionWriter.record_execution_end`), inserting the row
  first if the execution never wrote one; waiting for the database only a few seconds (the spool and the
  reconciler carry on from there).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

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
        *,
        end_wait: timedelta = timedelta(seconds=5),
    ) -> None:
        self._registry = registry
        self._writer = writer
        self._executor = executor
        self._permissions = permissions
        self._end_wait = end_wait

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
        """Write the terminal state (final: it overwrites a provisional one), inserting the row if missing.

        The execution's outcome never waits on the database: the write is handed to the projection's spool and
        awaited at most ``end_wait``; past that the execution closes and the spool keeps trying (the worker's
        reconciler writes the row from the history should this worker stop first). Returns the version on the
        row: it goes into the history with this activity's result, where ``projection rebuild`` finds it.
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
        ops_metrics.execution_ended(result.execution_id, result.status, result.error, end_time, start=start)

        async def write() -> None:
            try:
                await self._writer.record_execution_end(start, result, final=True)
            except DatabaseError as error:
                if not isinstance(error.__cause__, IntegrityError):
                    raise  # the database is unavailable: the spool tries again
                log.warning("execution not recorded: its tool is unknown", execution_id=result.execution_id)
            ops_metrics.terminal_state_written(result.execution_id)

        what = f"end of {result.execution_id}"
        if not await self._writer.spool.submit_and_wait(write, what=what, wait_s=self._end_wait.total_seconds()):
            log.warning(
                "end not recorded yet: the projection database is unavailable; this worker keeps trying, and the "
                "reconciler writes it from the history if this worker stops first",
                execution_id=result.execution_id,
            )
        return version
