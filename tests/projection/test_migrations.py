"""The Alembic migrations produce exactly stepflow/db/schema.py, on SQLite and PostgreSQL, idempotently."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from stepflow.db.engine import create_engine
from stepflow.db.migrate import current_revision, head_revision, upgrade
from stepflow.db.schema import metadata

EXPRESSION_INDEXES = {"ux_execution_logs_seq", "ux_execution_logs_seq_pg"}


def _comparable(obj, name, type_, reflected, compare_to):
    """Expression indexes cannot be reflected on SQLite (and each is for one dialect): checked by name below."""
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
async def test_migrated_schema_matches_metadata(db_url):
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        await upgrade(engine)  # a second run is a no-op
        async with engine.connect() as connection:

            def check(sync_connection):
                context = MigrationContext.configure(
                    sync_connection, opts={"compare_type": True, "include_object": _comparable}
                )
                return compare_metadata(context, metadata), current_revision(sync_connection)

            differences, revision = await connection.run_sync(check)
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            if connection.dialect.name == "postgresql":
                query = "SELECT indexname FROM pg_indexes WHERE tablename = 'execution_logs'"
            else:
                query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'execution_logs'"
            indexes = set((await connection.execute(text(query))).scalars())
        assert revision == head_revision()
        assert tables >= {"tools", "executions", "execution_logs", "execution_metrics", "alembic_version"}
        assert indexes & EXPRESSION_INDEXES
        assert differences == []
    finally:
        await engine.dispose()


async def test_database_created_before_migrations_is_adopted(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:  # the pre-migration way: create_all, no alembic_version
            await connection.run_sync(metadata.create_all)
        await upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(current_revision) == head_revision()
    finally:
        await engine.dispose()
