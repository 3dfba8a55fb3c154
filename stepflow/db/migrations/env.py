"""Alembic environment for the projection: async engines (aiosqlite, asyncpg), or a connection handed in.

:func:`stepflow.db.migrate.upgrade` passes an open (sync-facing) connection in ``config.attributes["connection"]``.
Run from the ``alembic`` command line instead, it builds an async engine from ``sqlalchemy.url`` (or
``STEPFLOW_DATABASE_URL``) and runs the migrations through ``run_sync``.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from stepflow.db.engine import create_engine
from stepflow.db.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("STEPFLOW_DATABASE_URL")
    if not url:
        raise RuntimeError("set sqlalchemy.url or STEPFLOW_DATABASE_URL to run the projection migrations")
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them against a database")
main()
