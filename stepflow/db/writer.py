"""ProjectionWriter: every write of the SQL projection, and the spec's Monitoring interface.

An execution is written in three moments, each one idempotent (see :mod:`stepflow.db.statements`):

- :meth:`~ProjectionWriter.record_execution_start`: its row (inserted once) and its first lines;
- :meth:`~ProjectionWriter.record_attempt`: an attempt's buffered lines and metrics, the move to ``running``;
- :meth:`~ProjectionWriter.record_execution_end`: the terminal status, output, error, end time and duration,
  the terminal lifecycle line and the ``duration_ms`` / ``attempts`` / ``output_bytes`` metrics; the row is
  inserted first if it is missing, so an end is never lost for want of a start. An end written by the
  activity is provisional; the workflow's record (``final``) overwrites it when the two differ.

Writes go through a :class:`~stepflow.db.group_commit.GroupCommitter`, so concurrent writers share
transactions; writes that must land but may not block go through its :class:`~stepflow.db.spool.WriteSpool`.
``write_logs`` / ``write_metrics`` (STEPFLOW_EXECUTOR_ENABLE_LOGGING / _MONITORING) drop every
``execution_logs`` / ``execution_metrics`` row. Every database failure is a retryable DatabaseError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from stepflow.db import statements as sql
from stepflow.db.group_commit import GroupCommitter
from stepflow.db.reader import DB_ERRORS, ProjectionReader
from stepflow.db.schema import tool_grants
from stepflow.db.spool import WriteSpool
from stepflow.errors import DatabaseError
from stepflow.models import (
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    LogEntry,
    Metric,
    MetricFilter,
    ToolGrant,
    ToolInfo,
)
from stepflow.observability import tracing


@dataclass(frozen=True)
class ExecutionStart:
    """An ``executions`` row to insert once: what runs for whom, since when, in which first status."""

    execution_id: str
    request: ExecutionRequest
    version: str | None
    start_time: datetime
    status: ExecutionStatus = ExecutionStatus.PENDING

    def row(self) -> dict[str, Any]:
        return sql.execution_row(
            self.execution_id, self.request, version=self.version, start_time=self.start_time, status=self.status
        )


class ProjectionWriter:
    """Idempotent, group-committed writes of executions, their lines and metrics, and tools."""

    def __init__(
        self,
        committer: GroupCommitter,
        reader: ProjectionReader,
        *,
        spool: WriteSpool | None = None,
        write_logs: bool = True,
        write_metrics: bool = True,
    ) -> None:
        self._committer = committer
        self._reader = reader
        self.spool = spool or WriteSpool()
        self.write_logs = write_logs
        self.write_metrics = write_metrics

    # --- the spec's Monitoring ----------------------------------------------------------------------

    @tracing.traced("stepflow.projection.record_execution_start")
    async def record_execution_start(self, start: ExecutionStart, *, lines: Sequence[LogEntry] = ()) -> None:
        """Insert the execution's row (a repeated insert changes nothing) with its first lines."""
        await self._write(self._start_rows(start, lines))

    @tracing.traced("stepflow.projection.record_execution_end")
    async def record_execution_end(
        self,
        start: ExecutionStart,
        result: ExecutionResult,
        *,
        lines: Sequence[LogEntry] = (),
        metrics: Sequence[Metric] = (),
        final: bool = False,
    ) -> None:
        """Write the terminal state with its line and metrics, inserting the row first if it is missing.

        A provisional end (``final=False``: the activity's) leaves a row that is terminal already as it is (a
        retry of a committed write, or a late duplicate); the final one (the workflow's record) overwrites it.
        ``lines`` and ``metrics`` (an attempt's last ones) go in the same transaction. The terminal line's seq
        names the status, so the same end twice is one line and a corrected end adds its own.
        """
        if not result.status.is_terminal:
            raise ValueError(f"record_execution_end needs a terminal status, got {result.status}")
        execution_id, timing = start.execution_id, result.timing
        end_time = timing.end_time or start.start_time
        duration_ms = timing.duration_ms
        if duration_ms is None:
            duration_ms = max(0, int((end_time - start.start_time).total_seconds() * 1000))
        level, message = sql.terminal_event(result.status, result.error)
        last_lines = list(lines)
        if level.rank >= start.request.options.logging_level.rank:
            metadata = {
                "seq": f"finish.{result.status.value}",
                "tool_id": start.request.tool_id,
                "version": start.version,
            }
            last_lines.append(
                LogEntry(
                    execution_id=execution_id,
                    level=level,
                    message=message,
                    timestamp=end_time,
                    metadata={**metadata, "status": result.status.value},
                )
            )
        # ``attempts`` 0 only makes sure the metric exists: the attempt's own value (given after it) wins
        end_metrics = [Metric(name="duration_ms", value=duration_ms), Metric(name="attempts", value=0)]
        if result.status is ExecutionStatus.COMPLETED:
            end_metrics.append(Metric(name="output_bytes", value=sql.output_size(result.output)))
        end_metrics += metrics
        finish = sql.finish_row(
            execution_id,
            result.status,
            end_time=end_time,
            duration_ms=duration_ms,
            output=result.output,
            error=result.error,
        )
        rows = self._start_rows(start, last_lines) + self._telemetry_rows(execution_id, (), end_metrics)
        await self._write([*rows, (sql.FINISH_FINAL if final else sql.FINISH_UPDATE, [finish])])

    async def record_metric(self, execution_id: str, metric: Metric) -> None:
        """Record one value (recording the same name again replaces it; ``attempts`` only grows)."""
        await self._write(self._telemetry_rows(execution_id, (), [metric]))

    async def get_metrics(self, metric_filter: MetricFilter | None = None) -> list[Metric]:
        """Metric rows matching the filter (read through the projection's reader)."""
        return await self._reader.get_metrics(metric_filter)

    # --- the rest of an execution's writes ----------------------------------------------------------

    @tracing.traced("stepflow.projection.record_attempt")
    async def record_attempt(
        self,
        execution_id: str,
        *,
        lines: Sequence[LogEntry] = (),
        metrics: Sequence[Metric] = (),
        start: ExecutionStart | None = None,
    ) -> None:
        """An attempt's buffered lines and metrics and the row's move to ``running``, in one transaction.

        With ``start`` (an attempt's first flush) the row is inserted first if it is missing.
        """
        rows: sql.Rows = []
        if start is not None:  # the row may have been written as pending: this attempt runs it
            rows += [*self._start_rows(start, ()), (sql.MARK_RUNNING, [{"running_id": execution_id}])]
        await self._write([*rows, *self._telemetry_rows(execution_id, lines, metrics)])

    async def upsert_tools(self, infos: Sequence[ToolInfo]) -> None:
        """Write every tool id with its latest version, all versions and the latest schema."""
        await self._write([(sql.TOOLS_UPSERT, sql.tool_rows(infos))])

    async def add_grant(self, grant: ToolGrant) -> None:
        """Let ``grant.subject`` of ``grant.tenant_id`` run ``grant.tool_id`` (a repeated grant changes nothing)."""
        row: dict[str, Any] = {"tenant_id": grant.tenant_id, "tool_id": grant.tool_id, "subject": grant.subject}
        row["created_at"] = grant.created_at or datetime.now(UTC)
        await self._write([(sql.GRANT_INSERT, [row])])

    async def remove_grant(self, grant: ToolGrant) -> bool:
        """Withdraw the grant; False if there was none."""

        async def write(connection: AsyncConnection) -> bool:
            result = await connection.execute(
                delete(tool_grants).where(
                    tool_grants.c.tenant_id == grant.tenant_id,
                    tool_grants.c.tool_id == grant.tool_id,
                    tool_grants.c.subject == grant.subject,
                )
            )
            return bool(result.rowcount)

        try:
            removed: bool = await self._committer.submit(write)
        except DB_ERRORS as exc:
            raise DatabaseError(f"projection write failed: {type(exc).__name__}: {exc}") from exc
        return removed

    async def restore_execution(
        self,
        start: ExecutionStart,
        *,
        end_time: datetime | None,
        output: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Write the row exactly as given (insert or overwrite): what ``projection rebuild`` uses."""
        row = start.row()
        duration = None if end_time is None else max(0, int((end_time - start.start_time).total_seconds() * 1000))
        row.update(result_data=output, error_message=sql.error_text(error), end_time=end_time, duration_ms=duration)
        metrics = [] if duration is None else [Metric(name="duration_ms", value=duration)]
        await self._write([(sql.EXECUTION_RESTORE, [row]), *self._telemetry_rows(start.execution_id, (), metrics)])

    # --- rows ---------------------------------------------------------------------------------------

    def _start_rows(self, start: ExecutionStart, lines: Sequence[LogEntry]) -> sql.Rows:
        return [(sql.EXECUTION_INSERT, [start.row()]), *self._telemetry_rows(start.execution_id, lines, ())]

    def _telemetry_rows(self, execution_id: str, lines: Sequence[LogEntry], metrics: Sequence[Metric]) -> sql.Rows:
        rows: sql.Rows = []
        if self.write_logs and lines:
            rows.append((sql.LOG_INSERT, [sql.log_row(entry) for entry in lines]))
        if self.write_metrics and metrics:
            rows.append((sql.METRIC_UPSERT, sql.metric_rows(execution_id, metrics)))
        return rows

    async def _write(self, rows: sql.Rows) -> None:
        try:
            await self._committer.submit_rows(rows)
        except DB_ERRORS as exc:
            raise DatabaseError(f"projection write failed: {type(exc).__name__}: {exc}") from exc
