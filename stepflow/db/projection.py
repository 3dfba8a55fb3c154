"""Reads and idempotent writes on the SQL projection.

Every write may be retried (activities are), so each is shaped to be safe twice: an execution's row is
inserted once (``ON CONFLICT DO NOTHING``), its status moves only forwards (``pending`` -> ``running`` ->
terminal; a terminal row is never rewritten), tools are upserted. Writes go through a
:class:`~stepflow.db.group_commit.GroupCommitter`, so concurrent writers share transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepflow.db.engine import create_engine, create_schema
from stepflow.db.group_commit import GroupCommitter
from stepflow.db.schema import executions, tools
from stepflow.errors import DatabaseError
from stepflow.models import (
    TERMINAL_STATUSES,
    ErrorInfo,
    ExecutionFilter,
    ExecutionInfo,
    ExecutionRequest,
    ExecutionStatus,
    ToolInfo,
)

_TERMINAL = [status.value for status in TERMINAL_STATUSES]


def _insert(engine_or_connection: AsyncEngine | AsyncConnection, table: Any) -> Any:
    dialect = engine_or_connection.dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


class Projection:
    """The executions / tools tables, read and written idempotently."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 500) -> None:
        self.engine = engine
        self.committer = GroupCommitter(engine, max_batch=max_batch)

    @classmethod
    async def open(cls, url: str, *, create: bool = True, max_batch: int = 500) -> Projection:
        """Connect to ``url`` and (by default) create missing tables."""
        engine = create_engine(url)
        if create:
            try:
                await create_schema(engine)
            except SQLAlchemyError as exc:
                await engine.dispose()
                raise DatabaseError(f"cannot prepare the projection database {url!r}: {exc}") from exc
        return cls(engine, max_batch=max_batch)

    async def close(self) -> None:
        await self.committer.close()
        await self.engine.dispose()

    async def _write(self, write: Any) -> Any:
        try:
            return await self.committer.submit(write)
        except SQLAlchemyError as exc:
            raise DatabaseError(f"projection write failed: {exc}") from exc

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

    async def insert_execution(
        self,
        execution_id: str,
        request: ExecutionRequest,
        *,
        version: str,
        start_time: datetime,
        status: ExecutionStatus = ExecutionStatus.PENDING,
    ) -> None:
        """Insert the execution's row once; a repeated insert changes nothing."""
        row = {
            "id": execution_id,
            "tool_id": request.tool_id,
            "version": version,
            "status": status.value,
            "request_data": request.model_dump(mode="json"),
            "start_time": start_time,
            "user_id": request.context.user_id,
            "tenant_id": request.context.tenant_id,
            "session_id": request.context.session_id,
            "parent_execution_id": request.context.parent_execution_id,
        }

        async def write(connection: AsyncConnection) -> None:
            await connection.execute(
                _insert(connection, executions).values(row).on_conflict_do_nothing(index_elements=["id"])
            )

        await self._write(write)

    async def mark_running(self, execution_id: str) -> None:
        """Move a pending execution to running; a no-op for any other status."""

        async def write(connection: AsyncConnection) -> None:
            await connection.execute(
                update(executions)
                .where(and_(executions.c.id == execution_id, executions.c.status == ExecutionStatus.PENDING))
                .values(status=ExecutionStatus.RUNNING.value)
            )

        await self._write(write)

    async def finish_execution(
        self,
        execution_id: str,
        *,
        status: ExecutionStatus,
        end_time: datetime,
        output: Any = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        """Write the terminal state unless the row is already terminal. True if this call wrote it."""
        if not status.is_terminal:
            raise ValueError(f"{status} is not a terminal status")

        async def write(connection: AsyncConnection) -> bool:
            start = (
                await connection.execute(select(executions.c.start_time).where(executions.c.id == execution_id))
            ).scalar_one_or_none()
            if start is None:
                raise DatabaseError(f"no executions row for {execution_id}")
            result = await connection.execute(
                update(executions)
                .where(and_(executions.c.id == execution_id, executions.c.status.not_in(_TERMINAL)))
                .values(
                    status=status.value,
                    result_data=output,
                    error_message=None if error is None else f"{error.type}: {error.message}",
                    end_time=end_time,
                    duration_ms=max(0, int((end_time - start).total_seconds() * 1000)),
                )
            )
            return bool(result.rowcount)

        written: bool = await self._write(write)
        return written

    # --- reads ------------------------------------------------------------------------------------

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
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot list executions: {exc}") from exc
        return [row_to_info(row) for row in rows]


def filtered_executions(execution_filter: ExecutionFilter) -> Select[Any]:
    """The SELECT for a filter, newest first."""
    conditions = []
    f = execution_filter
    for column, value in (
        (executions.c.tool_id, f.tool_id),
        (executions.c.tenant_id, f.tenant_id),
        (executions.c.user_id, f.user_id),
        (executions.c.status, f.status.value if f.status else None),
        (executions.c.parent_execution_id, f.parent_execution_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if f.started_after is not None:
        conditions.append(executions.c.start_time >= f.started_after)
    if f.started_before is not None:
        conditions.append(executions.c.start_time < f.started_before)
    return (
        select(executions)
        .where(and_(True, *conditions))
        .order_by(executions.c.start_time.desc(), executions.c.id)
        .limit(f.limit)
    )


def row_to_info(row: Row[Any]) -> ExecutionInfo:
    return ExecutionInfo(
        execution_id=row.id,
        tool_id=row.tool_id,
        version=row.version,
        status=ExecutionStatus(row.status),
        user_id=row.user_id,
        tenant_id=row.tenant_id,
        session_id=row.session_id,
        parent_execution_id=row.parent_execution_id,
        start_time=row.start_time,
        end_time=row.end_time,
        duration_ms=row.duration_ms,
        error_message=row.error_message,
    )
