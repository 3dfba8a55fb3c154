"""ProjectionReader: every read of the SQL projection, answered as the public models.

Lists, logs and metrics come from here (Temporal's visibility is not meant for history long after the
fact); a database failure is a DatabaseError that names the database and the read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepflow.db import queries, rows
from stepflow.db.schema import executions, tool_grants, tools
from stepflow.errors import DatabaseError
from stepflow.models import (
    ExecutionFilter,
    ExecutionInfo,
    ExecutionMetrics,
    LogEntry,
    Metric,
    MetricFilter,
    ToolGrant,
    ToolInfo,
)

DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
T = TypeVar("T")


class ProjectionReader:
    """Reads of the executions, execution_logs, execution_metrics and tools tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._where = make_url(str(engine.url)).render_as_string(hide_password=True)

    async def _read(self, what: str, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self._engine.connect() as connection:
                return await read(connection)
        except DB_ERRORS as exc:
            raise DatabaseError(
                f"cannot read {what} from the projection database {self._where}: {type(exc).__name__}: {exc}; "
                "check that the database is up and STEPFLOW_DATABASE_URL points at it"
            ) from exc

    async def get_execution(self, execution_id: str) -> Row[Any] | None:
        """The execution's row, or None."""

        async def read(connection: AsyncConnection) -> Row[Any] | None:
            return (await connection.execute(select(executions).where(executions.c.id == execution_id))).first()

        return await self._read(f"execution {execution_id}", read)

    async def get_executions(self, execution_ids: Sequence[str]) -> dict[str, Row[Any]]:
        """The rows of these executions (those that have one), by id."""

        async def read(connection: AsyncConnection) -> dict[str, Row[Any]]:
            found = await connection.execute(select(executions).where(executions.c.id.in_(list(execution_ids))))
            return {row.id: row for row in found.all()}

        return await self._read(f"{len(execution_ids)} executions", read) if execution_ids else {}

    async def list_executions(self, execution_filter: ExecutionFilter | None = None) -> list[ExecutionInfo]:
        """Executions matching the filter, newest first."""
        query = queries.filtered_executions(execution_filter or ExecutionFilter())

        async def read(connection: AsyncConnection) -> list[ExecutionInfo]:
            return [rows.execution_info(row) for row in (await connection.execute(query)).all()]

        return await self._read("executions", read)

    async def get_logs(self, execution_id: str, *, after_id: int = 0, tenant_id: str | None = None) -> list[LogEntry]:
        """An execution's log lines, oldest first (``after_id`` for following; only if of ``tenant_id``)."""
        query = queries.execution_logs_after(execution_id, after_id, tenant_id)

        async def read(connection: AsyncConnection) -> list[LogEntry]:
            return [rows.log_entry(row) for row in (await connection.execute(query)).all()]

        return await self._read(f"the logs of {execution_id}", read)

    async def get_metrics(self, metric_filter: MetricFilter | None = None) -> list[Metric]:
        """Metric rows matching the filter, oldest first."""
        query = queries.filtered_metrics(metric_filter or MetricFilter())

        async def read(connection: AsyncConnection) -> list[Metric]:
            return [rows.metric(row) for row in (await connection.execute(query)).all()]

        return await self._read("metrics", read)

    async def execution_metrics(
        self, metric_filter: MetricFilter | None = None, *, queue_length: int = 0
    ) -> ExecutionMetrics:
        """The spec's ExecutionMetrics over the executions the filter selects.

        successful = completed; failed = failed + timed_out; concurrent = pending + running rows;
        average = mean ``duration_ms`` of terminal rows; error rate = failed / (successful + failed).
        """
        query = queries.execution_counts(metric_filter or MetricFilter())
        row = await self._read("execution metrics", lambda connection: _one(connection, query))
        ok, failed = int(row.ok or 0), int(row.failed or 0)
        return ExecutionMetrics(
            total_executions=int(row.total or 0),
            successful_executions=ok,
            failed_executions=failed,
            average_execution_time=timedelta(milliseconds=float(row.avg_ms or 0)),
            current_concurrent_executions=int(row.live or 0),
            queue_length=queue_length,
            error_rate=failed / (ok + failed) if ok + failed else 0.0,
        )

    async def list_tools(self) -> list[ToolInfo]:
        """Every registered tool (latest version, every version), by id."""

        async def read(connection: AsyncConnection) -> list[ToolInfo]:
            found = (await connection.execute(select(tools).order_by(tools.c.id))).all()
            return [rows.tool_info(row) for row in found]

        return await self._read("tools", read)

    async def has_grant(self, tenant_id: str, tool_id: str, *, subjects: Sequence[str]) -> bool:
        """Whether ``tool_grants`` lets any of ``subjects`` of ``tenant_id`` run ``tool_id`` (or every tool)."""
        query = (
            select(tool_grants.c.id)
            .where(
                tool_grants.c.tenant_id == tenant_id,
                tool_grants.c.tool_id.in_([tool_id, "*"]),
                tool_grants.c.subject.in_(list(subjects)),
            )
            .limit(1)
        )

        async def read(connection: AsyncConnection) -> bool:
            return (await connection.execute(query)).first() is not None

        return await self._read("tool grants", read)

    async def list_grants(self, tenant_id: str | None = None) -> list[ToolGrant]:
        """The grants (of one tenant), by tenant, tool and subject."""
        query = select(tool_grants).order_by(tool_grants.c.tenant_id, tool_grants.c.tool_id, tool_grants.c.subject)
        if tenant_id is not None:
            query = query.where(tool_grants.c.tenant_id == tenant_id)

        async def read(connection: AsyncConnection) -> list[ToolGrant]:
            return [rows.tool_grant(row) for row in (await connection.execute(query)).all()]

        return await self._read("tool grants", read)

    async def get_tool(self, tool_id: str) -> ToolInfo | None:
        """The tool's row (latest version, every version), or None."""

        async def read(connection: AsyncConnection) -> ToolInfo | None:
            row = (await connection.execute(select(tools).where(tools.c.id == tool_id))).first()
            return None if row is None else rows.tool_info(row)

        return await self._read(f"tool {tool_id}", read)


async def _one(connection: AsyncConnection, query: Any) -> Row[Any]:
    return (await connection.execute(query)).one()
