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

from datetime import UTC, datetime

from temporalio import activity

from activities.names import FINISH_EXECUTION, PREPARE_EXECUTION
from stepflow.config import ExecutorSettings
from stepflow.db.projection import Projection
from stepflow.errors import ExecutorError, InvalidParameters, ResourceLimitExceeded, to_application_error
from stepflow.models import (
    ErrorInfo,
    ExecutionStatus,
    LogEntry,
    LogLevel,
    PreparedExecution,
    RecordEndInput,
    RecordStartInput,
    ResourceLimits,
)
from stepflow.registry import ToolRegistry
from stepflow.tools.composite import CompositeTool


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
        try:
            definition = self._registry.resolve(request.tool_id, request.version)
        except ExecutorError as error:
            raise to_application_error(error) from None
        plan = definition.plan if isinstance(definition, CompositeTool) else None
        invalid: ErrorInfo | None = None
        parameters: dict[str, object] = {}
        try:
            parameters = definition.validate_parameters(request.parameters)
            self._check_limits(request.options.resource_limits)
            definition.check_resource_limits(request.options.resource_limits)
        except (InvalidParameters, ResourceLimitExceeded) as problem:
            invalid = ErrorInfo(type=problem.kind, message=problem.message)
        level, message = (
            (LogLevel.INFO, "validated")
            if invalid is None
            else (LogLevel.ERROR, f"validation failed: {invalid.message}")
        )
        line = None
        if level.rank >= request.options.logging_level.rank:
            line = LogEntry(
                execution_id=start.execution_id,
                level=level,
                message=message,
                timestamp=datetime.now(UTC),
                metadata={"seq": "prepare", "tool_id": definition.id, "version": definition.version, "attempt": 0},
            )
        await self._projection.insert_execution(
            start.execution_id,
            request,
            version=definition.version,
            start_time=start.start_time,
            # a composite runs no run_tool activity that would mark it running: it runs from the start
            status=ExecutionStatus.RUNNING if plan is not None and invalid is None else ExecutionStatus.PENDING,
            log=line,
        )
        return PreparedExecution(
            version=definition.version, kind=definition.kind, parameters=parameters, error=invalid, plan=plan
        )

    def _check_limits(self, limits: ResourceLimits) -> None:
        caps = {
            "memory_mb": self._executor.max_memory_mb,
            "cpu_seconds": self._executor.max_cpu_seconds,
            "max_processes": self._executor.max_processes,
            "max_output_bytes": self._executor.max_output_bytes,
        }
        for name, cap in caps.items():
            value = getattr(limits, name)
            if value is not None and value > cap:
                raise ResourceLimitExceeded(
                    f"resource_limits.{name}={value} is above this engine's maximum of {cap}; ask for less "
                    f"or raise STEPFLOW_EXECUTOR_MAX_{name.upper().removeprefix('MAX_')}"
                )

    @activity.defn(name=FINISH_EXECUTION)
    async def finish_execution(self, end: RecordEndInput) -> None:
        """Write the terminal status, output, error, end time and duration (once)."""
        await self._projection.finish_execution(
            end.execution_id, status=end.status, end_time=end.end_time, output=end.output, error=end.error
        )
