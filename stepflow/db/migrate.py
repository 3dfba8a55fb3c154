"""Running the Alembic migrations on an async engine: ``upgrade(engine)`` brings any projection to head.

Concurrent openers (two workers and a CLI starting at once) are serialised by a PostgreSQL advisory lock; on
SQLite a lost race ("table already exists") is retried and then finds the schema at head. A database created
before migrations existed (``metadata.create_all``, no ``alembic_version``) gets its missing tables and
indexes and is stamped at head.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from stepflow.db.schema import LOG_SEQ_POSTGRESQL, LOG_SEQ_SQLITE, metadata

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x5EF10A  # advisory lock id serialising concurrent upgrades


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the packaged migrations (and at ``connection`` when given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> None:
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "executions" in tables:
        metadata.create_all(connection, checkfirst=True)
        postgres = connection.dialect.name == "postgresql"
        name, seq = (
            ("ux_execution_logs_seq_pg", LOG_SEQ_POSTGRESQL) if postgres else ("ux_execution_logs_seq", LOG_SEQ_SQLITE)
        )
        connection.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON execution_logs (execution_id, {seq})"))
        connection.execute(
            text(
                "CREATE UNIQUE INDEX IF NOT EXISTS ux_execution_metrics_name "
                "ON execution_metrics (execution_id, metric_name)"
            )
        )
        command.stamp(config, "head")
        return
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine, *, attempts: int = 5) -> None:
    """Bring the database behind ``engine`` to the head revision."""
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    await connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
                await connection.run_sync(_upgrade)
            return
        except SQLAlchemyError:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.1 * attempt)
