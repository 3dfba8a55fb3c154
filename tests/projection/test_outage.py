"""Projection outage: the database locked (SQLite) or refusing connections (PostgreSQL) mid-run, then back.

No execution fails, no result is lost, the projection catches up, and verify is clean afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType

from starter.executor import Executor
from starter.projection_admin import verify
from stepflow.config import Settings
from stepflow.models import ExecutionRequest, ExecutionResult, ExecutionStatus
from tests.conftest import executor_for, make_settings, running_worker

pytestmark = pytest.mark.dev_server

N = 30
LOCKER = """
import sqlite3, sys, time
holder = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
holder.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
holder.execute("COMMIT")
"""


class RefusingProxy:
    """A TCP proxy to PostgreSQL that can be cut (listener closed, live connections dropped) and restored."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()
            self._writers.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def _run_through_outage(executor: Executor, outage: Any) -> list[str]:
    requests = [ExecutionRequest(tool_id="echo", parameters={"i": i}) for i in range(N)]
    ids = await asyncio.gather(*(executor.execute_tool_async(request) for request in requests[: N // 2]))
    await outage()  # the rest start while the database is unavailable
    ids += await asyncio.gather(*(executor.execute_tool_async(request) for request in requests[N // 2 :]))
    results = await asyncio.gather(
        *(executor.client.get_workflow_handle(i, result_type=ExecutionResult).result() for i in ids)
    )
    assert [result.status for result in results] == [ExecutionStatus.COMPLETED] * N
    assert [result.output for result in results] == [{"i": i} for i in range(N)]
    return list(ids)


async def _caught_up(executor: Executor, settings: Settings, ids: list[str]) -> None:
    for _ in range(100):
        rows = [await executor.projection.reader.get_execution(i) for i in ids]
        if all(row is not None and row.status == "completed" for row in rows):
            break
        await asyncio.sleep(0.2)
    for execution_id in ids:
        row = await executor.projection.reader.get_execution(execution_id)
        assert row is not None and row.status == "completed", execution_id
        for _ in range(50):
            if len(await executor.get_logs(execution_id)) == 4:
                break
            await asyncio.sleep(0.2)
        messages = [line.message for line in await executor.get_logs(execution_id)]
        assert messages == ["validated", "attempt 1 started", "echoing", "completed"]
    report, _ = await verify(executor.client, executor.projection, task_queue=settings.temporal.task_queue)
    assert report.mismatches == [] and report.checked == N


async def _recorded_by_the_workflow(executor: Executor, ids: list[str]) -> int:
    """How many completions the workflow recorded with finish_execution (the activity's write missed its 2 s)."""
    count = 0
    for execution_id in ids:
        history = await executor.client.get_workflow_handle(execution_id).fetch_history()
        if any(event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for event in history.events):
            count += 1
    return count


async def test_sqlite_locked_mid_run(dev_env, tmp_path: Path):
    settings = make_settings(tmp_path)
    path = make_url(settings.resolved_database_url).database
    assert path is not None
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:

        async def lock_for_a_while() -> None:
            # another process takes the write lock and holds it for 3 s
            locker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCKER, path, "3", stdout=asyncio.subprocess.PIPE
            )
            assert locker.stdout is not None
            assert (await locker.stdout.readline()).strip() == b"locked"
            asyncio.get_running_loop().create_task(locker.wait())

        ids = await _run_through_outage(executor, lock_for_a_while)
        await _caught_up(executor, settings, ids)
        # the completions whose write missed its 2 s were recorded again by finish_execution, which waited
        assert await _recorded_by_the_workflow(executor, ids) > 0


async def test_postgres_refusing_connections_mid_run(dev_env, tmp_path: Path, db_url: str):
    if not db_url.startswith("postgresql"):
        pytest.skip("the connection-refused outage is the PostgreSQL case")
    parsed = make_url(db_url)
    proxy = RefusingProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    await proxy.start()
    worker_settings = make_settings(tmp_path, database_url=parsed.set(port=proxy.port).render_as_string(False))
    direct = worker_settings.model_copy(update={"database_url": db_url})
    async with running_worker(dev_env, worker_settings) as worker_projection, executor_for(dev_env, direct) as executor:

        async def refuse_for_a_while() -> None:
            await proxy.cut()

            async def restore() -> None:
                await asyncio.sleep(3)
                await proxy.start()

            asyncio.get_running_loop().create_task(restore())

        ids = await _run_through_outage(executor, refuse_for_a_while)
        await _caught_up(executor, direct, ids)
        assert await _recorded_by_the_workflow(executor, ids) > 0
        assert worker_projection.committer.transactions > 0
    with contextlib.suppress(Exception):
        await proxy.cut()
