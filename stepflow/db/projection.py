"""Reads and idempotent writes on the SQL projection.

Every write may be retried (activities are), so each is shaped to be safe twice: an execution's row is
inserted once (``ON CONFLICT DO NOTHING``), its status moves only forwards (``pending`` -> ``running`` ->
terminal; a terminal row is never rewritten), tools are upserted, log lines and metrics are keyed (see
:mod:`stepflow.db.telemetry`). Writes go through a :class:`~stepflow.db.group_commit.GroupCommitter`, so
concurrent writers share transactions; writes that must land but may not block go through its
:class:`~stepflow.db.spool.WriteSpool`. Every database failure surfaces as a retryable DatabaseError.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepflow.db import telemetry
from stepflow.db.engine import create_engine, create_schema, sqlite_writer_engine
from stepflow.db.group_commit import GroupCommitter, RowStatement
from stepflow.db.queries import filtered_executions, row_to_info
from stepflow.db.schema import executions, tools
from stepflow.db.spool import WriteSpool
from stepflow.errors import DatabaseError
from stepflow.models import (
    TERMINAL_STATUSES,
    ErrorInfo,
    ExecutionFilter,
    ExecutionInfo,
    ExecutionMetrics,
    ExecutionRequest,
    ExecutionStatus,
    LogEntry,
    LogLevel,
    Metric,
    MetricFilter,
    ToolInfo,
)
from stepflow.observability import tracing

_TERMINAL = [status.value for status in TERMINAL_STATUSES]
DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


_insert = telemetry.dialect_insert
_STARTED_KEPT = 100_000


@dataclass(frozen=True)
class _Started:
    """What finish_execution needs from a row this process inserted (so it need not read it back)."""

    start_time: datetime
    logging_level: LogLevel
    tool_id: str
    version: str | None


@dataclass(frozen=True)
class NewExecution:
    """An ``executions`` row to insert (once: a repeated insert changes nothing)."""

    execution_id: str
    request: ExecutionRequest
    version: str
    start_time: datetime
    status: ExecutionStatus = ExecutionStatus.PENDING


@dataclass(frozen=True)
class ExecutionEnd:
    """An execution's terminal state, as written to its row."""

    status: ExecutionStatus
    end_time: datetime
    output: Any = None
    error: ErrorInfo | None = None


class Projection:
    """The executions / tools tables, read and written idempotently."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 500, sync_engine: Engine | None = None) -> None:
        self.engine = engine
        self._sync_engine = sync_engine
        self.committer = GroupCommitter(engine, max_batch=max_batch, sync_engine=sync_engine)
        self.spool = WriteSpool()
        self._started: OrderedDict[str, _Started] = OrderedDict()

    @classmethod
    async def open(cls, url: str, *, create: bool = True, max_batch: int = 500) -> Projection:
        """Connect to ``url`` and (by default) create or upgrade the schema with the migrations."""
        engine = create_engine(url)
        if create:
            try:
                await create_schema(engine)
            except DB_ERRORS as exc:
                await engine.dispose()
                raise DatabaseError(f"cannot prepare the projection database {url!r}: {exc}") from exc
        return cls(engine, max_batch=max_batch, sync_engine=sqlite_writer_engine(url))

    async def close(self, *, spool_timeout: float = 10.0) -> None:
        """Let spooled writes land (up to ``spool_timeout`` s), finish queued writes, release connections."""
        await self.spool.close(grace_s=spool_timeout)
        await self.committer.close()
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def _write(self, write: Any) -> Any:
        try:
            return await self.committer.submit(write)
        except DB_ERRORS as exc:
            raise DatabaseError(f"projection write failed: {type(exc).__name__}: {exc}") from exc

    async def _write_rows(self, rows: Sequence[tuple[RowStatement, Sequence[dict[str, Any]]]]) -> None:
        try:
            await self.committer.submit_rows(rows)
        except DB_ERRORS as exc:
            raise DatabaseError(f"projection write failed: {type(exc).__name__}: {exc}") from exc

    async def _read(self, what: str, read: Any) -> Any:
        try:
            async with self.engine.connect() as connection:
                return await read(connection)
        except DB_ERRORS as exc:
            raise DatabaseError(f"cannot read {what} from the projection: {type(exc).__name__}: {exc}") from exc

    # --- writes -----------------------------------------------------------------------------------

    async def upsert_tools(self, infos: Sequence[ToolInfo]) -> None:
        """Write every tool id with its latest version, all versions and the latest schema."""
        by_id: dict[str, list[ToolInfo]] = {}
        for info in infos:
            by_id.setdefault(info.id, []).append(info)
        now = datetime.now(UTC)
        rows = [
            {
                "id": tool_id,
                "version": versions[-1].version,
                "versions": [info.version for info in versions],
                "kind": versions[-1].kind,
                "description": versions[-1].description,
                "parameters_schema": versions[-1].parameters_schema,
                "updated_at": now,
            }
            for tool_id, versions in by_id.items()
        ]
        if not rows:
            return

        async def write(connection: AsyncConnection) -> None:
            statement = _insert(connection, tools).values(rows)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[tools.c.id],
                    set_={
                        name: statement.excluded[name]
                        for name in (
                            "version",
                            "versions",
                            "kind",
                            "description",
                            "parameters_schema",
                            "updated_at",
                        )
                    },
                )
            )

        await self._write(write)

    @tracing.traced("stepflow.projection.insert_execution")
    async def insert_execution(
        self,
        execution_id: str,
        request: ExecutionRequest,
        *,
        version: str,
        start_time: datetime,
        status: ExecutionStatus = ExecutionStatus.PENDING,
        log: LogEntry | None = None,
    ) -> None:
        """Insert the execution's row once (and ``log``, its "validated" line); a repeated insert changes nothing."""
        new = NewExecution(execution_id, request, version=version, start_time=start_time, status=status)
        await self._write_rows(self._insert_rows(new, [log] if log is not None else []))

    def _insert_rows(self, new: NewExecution, logs: Sequence[LogEntry]) -> list[tuple[RowStatement, list[Any]]]:
        """The row (inserted once) and its first lines; remembers what finishing it will need."""
        request = new.request
        row = {
            "id": new.execution_id,
            "tool_id": request.tool_id,
            "version": new.version,
            "status": new.status.value,
            "request_data": request.model_dump(mode="json"),
            "start_time": new.start_time,
            "user_id": request.context.user_id,
            "tenant_id": request.context.tenant_id,
            "session_id": request.context.session_id,
            "parent_execution_id": request.context.parent_execution_id,
        }
        self._started[new.execution_id] = _Started(
            new.start_time, request.options.logging_level, request.tool_id, new.version
        )
        while len(self._started) > _STARTED_KEPT:
            self._started.popitem(last=False)
        return [(telemetry.EXECUTION_INSERT, [row]), (telemetry.LOG_INSERT, [telemetry.log_row(e) for e in logs])]

    async def mark_running(self, execution_id: str) -> None:
        """Move a pending execution to running; a no-op for any other status."""

        await self._write_rows([(telemetry.MARK_RUNNING, [{"running_id": execution_id}])])

    @tracing.traced("stepflow.projection.finish_execution")
    async def finish_execution(
        self,
        execution_id: str,
        *,
        status: ExecutionStatus,
        end_time: datetime,
        output: Any = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        """Write the terminal state unless the row is already terminal. True if this call wrote it.

        In the same transaction: the terminal lifecycle line (kept if the request's logging level allows it)
        and the ``duration_ms``, ``attempts`` and (when completed) ``output_bytes`` metrics.
        """
        if not status.is_terminal:
            raise ValueError(f"{status} is not a terminal status")
        started = self._started.get(execution_id)
        if started is not None:  # this process wrote the row: no need to read it back
            await self._finish_known(
                execution_id, started, status=status, end_time=end_time, output=output, error=error
            )
            self._started.pop(execution_id, None)
            return True

        async def write(connection: AsyncConnection) -> bool:
            found = (
                await connection.execute(
                    select(
                        executions.c.start_time, executions.c.request_data, executions.c.tool_id, executions.c.version
                    ).where(executions.c.id == execution_id)
                )
            ).first()
            if found is None:
                raise DatabaseError(f"no executions row for {execution_id}")
            start = found.start_time
            duration_ms = max(0, int((end_time - start).total_seconds() * 1000))
            result = await connection.execute(
                update(executions)
                .where(and_(executions.c.id == execution_id, executions.c.status.not_in(_TERMINAL)))
                .values(
                    status=status.value,
                    result_data=output,
                    error_message=None if error is None else f"{error.type}: {error.message}",
                    end_time=end_time,
                    duration_ms=duration_ms,
                )
            )
            if not result.rowcount:
                return False  # terminal already: this is a retry of a committed write (or a late duplicate)
            level, message = telemetry.terminal_event(status, error)
            options = (found.request_data or {}).get("options") or {}
            if level.rank >= LogLevel(options.get("logging_level", "info")).rank:
                metadata = {"seq": "finish", "tool_id": found.tool_id, "version": found.version, "status": status.value}
                entry = LogEntry(
                    execution_id=execution_id, level=level, message=message, timestamp=end_time, metadata=metadata
                )
                await telemetry.insert_logs(connection, [entry])
            metrics = [Metric(name="duration_ms", value=duration_ms), Metric(name="attempts", value=0)]
            if status is ExecutionStatus.COMPLETED:
                metrics.append(Metric(name="output_bytes", value=telemetry.output_size(output)))
            await telemetry.upsert_metrics(connection, execution_id, metrics)
            return True

        written: bool = await self._write(write)
        return written

    async def _finish_known(
        self,
        execution_id: str,
        started: _Started,
        *,
        status: ExecutionStatus,
        end_time: datetime,
        output: Any,
        error: ErrorInfo | None,
    ) -> None:
        """finish_execution as rows merged with the batch's other finishes (idempotent: keyed lines and metrics)."""
        end = ExecutionEnd(status, end_time, output=output, error=error)
        await self._write_rows(self._finish_rows(execution_id, started, end))

    @staticmethod
    def _finish_rows(execution_id: str, started: _Started, end: ExecutionEnd) -> list[tuple[RowStatement, list[Any]]]:
        """The terminal update (a no-op on a terminal row), its lifecycle line and its metrics."""
        status, end_time = end.status, end.end_time
        duration_ms = max(0, int((end_time - started.start_time).total_seconds() * 1000))
        update_row = {
            "finish_id": execution_id,
            "finish_status": status.value,
            "finish_result": end.output,
            "finish_error": None if end.error is None else f"{end.error.type}: {end.error.message}",
            "finish_end": end_time,
            "finish_duration": duration_ms,
        }
        level, message = telemetry.terminal_event(status, end.error)
        logs = []
        if level.rank >= started.logging_level.rank:
            metadata = {"seq": "finish", "tool_id": started.tool_id, "version": started.version, "status": status.value}
            entry = LogEntry(
                execution_id=execution_id, level=level, message=message, timestamp=end_time, metadata=metadata
            )
            logs.append(telemetry.log_row(entry))
        metrics = [Metric(name="duration_ms", value=duration_ms), Metric(name="attempts", value=0)]
        if status is ExecutionStatus.COMPLETED:
            metrics.append(Metric(name="output_bytes", value=telemetry.output_size(end.output)))
        return [
            (telemetry.FINISH_UPDATE, [update_row]),
            (telemetry.LOG_INSERT, logs),
            (telemetry.METRIC_UPSERT, telemetry.metric_rows(execution_id, metrics)),
        ]

    async def restore_execution(
        self,
        execution_id: str,
        request: ExecutionRequest,
        *,
        version: str | None,
        start_time: datetime,
        status: ExecutionStatus | None,
        end_time: datetime | None,
        output: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Write the row exactly as given (insert or overwrite): what ``projection rebuild`` uses."""
        duration = None if end_time is None else max(0, int((end_time - start_time).total_seconds() * 1000))
        row = {
            "id": execution_id,
            "tool_id": request.tool_id,
            "version": version,
            "status": (status or ExecutionStatus.RUNNING).value,
            "request_data": request.model_dump(mode="json"),
            "result_data": output,
            "error_message": None if error is None else f"{error.type}: {error.message}",
            "start_time": start_time,
            "end_time": end_time,
            "duration_ms": duration,
            "user_id": request.context.user_id,
            "tenant_id": request.context.tenant_id,
            "session_id": request.context.session_id,
            "parent_execution_id": request.context.parent_execution_id,
        }

        async def write(connection: AsyncConnection) -> None:
            statement = _insert(connection, executions).values(row)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[executions.c.id],
                    set_={name: statement.excluded[name] for name in row if name != "id"},
                )
            )
            if duration is not None:
                await telemetry.upsert_metrics(connection, execution_id, [Metric(name="duration_ms", value=duration)])

        await self._write(write)

    @tracing.traced("stepflow.projection.record_attempt")
    async def record_attempt(
        self,
        execution_id: str,
        *,
        logs: Sequence[LogEntry] = (),
        metrics: Sequence[Metric] = (),
        mark_running: bool = False,
        new: NewExecution | None = None,
        end: ExecutionEnd | None = None,
    ) -> None:
        """Write an attempt's buffered lines and metrics (and the pending -> running move) in one transaction.

        The one-activity path adds its row (``new``, inserted if missing) and, when the tool completed, its
        terminal state (``end``), so a quick execution costs the projection a single transaction.
        """
        rows: list[tuple[RowStatement, Sequence[dict[str, Any]]]] = []
        if new is not None:
            rows += self._insert_rows(new, ())
        rows += [
            (telemetry.MARK_RUNNING, [{"running_id": execution_id}] if mark_running else []),
            (telemetry.LOG_INSERT, [telemetry.log_row(entry) for entry in logs]),
            (telemetry.METRIC_UPSERT, telemetry.metric_rows(execution_id, metrics)),
        ]
        if end is not None:
            if new is None:
                raise ValueError("record_attempt writes an end only together with its row (new)")
            rows += self._finish_rows(execution_id, self._started[execution_id], end)
        await self._write_rows(rows)
        if end is not None:
            self._started.pop(execution_id, None)

    async def record_metrics(self, execution_id: str, metrics: Sequence[Metric]) -> None:
        """Upsert metrics of one execution (one value per name)."""
        await self.record_attempt(execution_id, metrics=metrics)

    # --- reads ------------------------------------------------------------------------------------

    async def get_logs(self, execution_id: str, *, after_id: int = 0) -> list[LogEntry]:
        """An execution's log lines, oldest first (``after_id`` for following)."""
        logs: list[LogEntry] = await self._read(
            "logs", lambda connection: telemetry.read_logs(connection, execution_id, after_id=after_id)
        )
        return logs

    async def get_metrics(self, metric_filter: MetricFilter | None = None) -> list[Metric]:
        """Metric rows matching the filter."""
        metrics: list[Metric] = await self._read(
            "metrics", lambda connection: telemetry.read_metrics(connection, metric_filter or MetricFilter())
        )
        return metrics

    async def execution_metrics(
        self, metric_filter: MetricFilter | None = None, *, queue_length: int = 0
    ) -> ExecutionMetrics:
        """Aggregate figures over the executions table (see :func:`stepflow.db.telemetry.aggregate`)."""
        figures: ExecutionMetrics = await self._read(
            "execution metrics",
            lambda connection: telemetry.aggregate(
                connection, metric_filter or MetricFilter(), queue_length=queue_length
            ),
        )
        return figures

    async def get_execution(self, execution_id: str) -> Row[Any] | None:
        async with self.engine.connect() as connection:
            return (await connection.execute(select(executions).where(executions.c.id == execution_id))).first()

    async def list_tools(self) -> list[Row[Any]]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(select(tools).order_by(tools.c.id))).all())

    async def get_tool(self, tool_id: str) -> Row[Any] | None:
        async with self.engine.connect() as connection:
            return (await connection.execute(select(tools).where(tools.c.id == tool_id))).first()

    async def list_executions(self, execution_filter: ExecutionFilter | None = None) -> list[ExecutionInfo]:
        query = filtered_executions(execution_filter or ExecutionFilter())
        try:
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        except DB_ERRORS as exc:
            raise DatabaseError(f"cannot list executions: {exc}") from exc
        return [row_to_info(row) for row in rows]
