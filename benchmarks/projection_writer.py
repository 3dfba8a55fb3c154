"""7. The projection writer alone: rows per second with group commit (one transaction per batch) and per row.

N concurrent idempotent inserts, each an ``executions`` row plus its "validated" log line, into a fresh database
per measurement: a SQLite file, and a PostgreSQL database of its own when ``STEPFLOW_TEST_POSTGRES_URL`` is set
(created and dropped on that server). Batched = the writer's default batch; per row = a batch of one. This is the
one benchmark that reaches inside the product (its writer), since the writer is what it measures.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.engine import make_url

from benchmarks.harness.context import Context
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stats import Row
from stepflow.db.projection import Projection
from stepflow.db.writer import ExecutionStart
from stepflow.models import ExecutionRequest, LogEntry, LogLevel, ToolInfo

NAME = "7 projection writer"
BATCH = 500


async def _admin(url: str, statement: str) -> None:
    """Run one statement outside a transaction on the PostgreSQL server of ``url`` (CREATE/DROP DATABASE)."""
    import asyncpg  # type: ignore[import-untyped]

    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def fresh_database(context: Context, engine: str) -> AsyncIterator[str]:
    """The URL of a new, empty database: a SQLite file in the run's directory, or a PostgreSQL database."""
    if engine == "sqlite":
        yield f"sqlite+aiosqlite:///{context.directory / f'writer-{uuid.uuid4().hex[:8]}.db'}"
        return
    assert context.postgres_url is not None
    name = f"stepflow_bench_{uuid.uuid4().hex[:12]}"
    await _admin(context.postgres_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(context.postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(context.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def rows_per_second(url: str, rows: int, max_batch: int) -> float:
    """Insert ``rows`` executions (row + log line each) at once through a writer batching up to ``max_batch``."""
    projection = await Projection.open(url, max_batch=max_batch)
    try:
        await projection.writer.upsert_tools([ToolInfo(id="echo", version="1.0.0")])
        now = datetime.now(UTC)

        async def one(i: int) -> None:
            line = LogEntry(
                execution_id=f"w-{i}",
                level=LogLevel.INFO,
                message="validated",
                timestamp=now,
                metadata={"seq": "prepare"},
            )
            start = ExecutionStart(f"w-{i}", ExecutionRequest(tool_id="echo"), "1.0.0", now)
            await projection.writer.record_execution_start(start, lines=[line])

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(rows)))
        return rows / (time.perf_counter() - started)
    finally:
        await projection.close()


def writer(context: Context, engine: str, rows: int, max_batch: int) -> Callable[[], Awaitable[Measurement]]:
    async def once() -> Measurement:
        async with fresh_database(context, engine) as url:
            return {"rate": await rows_per_second(url, rows, max_batch)}

    return once


async def measure(context: Context) -> list[Row]:
    rows = context.pick(5000, 500)
    engines = ["sqlite"] + (["postgresql"] if context.postgres_url else [])
    found = []
    for engine in engines:
        rates = await alternate(
            context.rounds(3),
            {"batched": writer(context, engine, rows, BATCH), "per_row": writer(context, engine, rows, 1)},
        )
        found.append(
            Row(
                NAME,
                f"rows/s, {engine} ({rows} at once)",
                f"group commit ({BATCH}/transaction)",
                "one transaction per row",
                rates["batched"]["rate"],
                rates["per_row"]["rate"],
            )
        )
    return found
