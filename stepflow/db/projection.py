"""The SQL projection: one database, its writer and its reader.

:meth:`Projection.open` connects (SQLite with WAL, or PostgreSQL), creates or upgrades the schema with the
Alembic migrations, and hands out a :class:`~stepflow.db.writer.ProjectionWriter` (group-committed,
idempotent writes; the spec's Monitoring) and a :class:`~stepflow.db.reader.ProjectionReader` (lists,
logs, metrics) on the same engine.
"""

from __future__ import annotations

import structlog
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from stepflow.db.engine import create_engine, create_schema, sqlite_writer_engine
from stepflow.db.group_commit import GroupCommitter
from stepflow.db.reader import DB_ERRORS, ProjectionReader
from stepflow.db.writer import ProjectionWriter
from stepflow.errors import DatabaseError

log = structlog.get_logger(__name__)


class Projection:
    """The executions / execution_logs / execution_metrics / tools tables of one database."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 500,
        sync_engine: Engine | None = None,
        write_logs: bool = True,
        write_metrics: bool = True,
    ) -> None:
        self.engine = engine
        self._sync_engine = sync_engine
        self.committer = GroupCommitter(engine, max_batch=max_batch, sync_engine=sync_engine)
        self.reader = ProjectionReader(engine)
        self.writer = ProjectionWriter(self.committer, self.reader, write_logs=write_logs, write_metrics=write_metrics)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        create: bool = True,
        max_batch: int = 500,
        write_logs: bool = True,
        write_metrics: bool = True,
        required: bool = True,
    ) -> Projection:
        """Connect to ``url`` and (by default) create or upgrade the schema with the migrations.

        An unreachable database is a DatabaseError, unless ``required`` is False (a starter: it can start,
        watch and cancel executions from Temporal alone): then it is logged, and reads fail until it is back.
        """
        engine = create_engine(url)
        if create:
            try:
                await create_schema(engine)
            except DB_ERRORS as exc:
                where = make_url(url).render_as_string(hide_password=True)
                if not required:
                    log.warning(
                        "projection database unreachable: lists, logs and metrics fail until it is back",
                        database=where,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                else:
                    await engine.dispose()
                    raise DatabaseError(
                        f"cannot prepare the projection database {where}: {type(exc).__name__}: {exc}; check that "
                        "it is up and that STEPFLOW_DATABASE_URL points at it"
                    ) from exc
        return cls(
            engine,
            max_batch=max_batch,
            sync_engine=sqlite_writer_engine(url),
            write_logs=write_logs,
            write_metrics=write_metrics,
        )

    async def close(self, *, spool_timeout: float = 10.0) -> None:
        """Let spooled writes land (up to ``spool_timeout`` s), finish queued writes, release connections."""
        await self.writer.spool.close(grace_s=spool_timeout)
        await self.committer.close()
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()
