"""The projection database down for 20 s: PostgreSQL refusing connections, the existing ones terminated.

The machine's PostgreSQL is shared, so the server stays up: the test's own database is closed instead
(``ALTER DATABASE ... WITH ALLOW_CONNECTIONS false`` and ``pg_terminate_backend`` on its sessions), then
opened again. Executions run through it on a ``stepflow worker`` process; throughout, new executions are
started (``Executor.execute_tool_async`` and ``stepflow start`` processes) and statuses read (the Executor
and ``stepflow status``). Afterwards every row is present and terminal, nothing is duplicated, verify is clean.
Skipped unless STEPFLOW_TEST_POSTGRES_URL names a PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from starter.projection_admin import verify
from stepflow.models import ExecutionRequest, ExecutionResult, ExecutionStatus
from tests.cli.conftest import run_cli
from tests.conftest import POSTGRES_URL, _postgres_admin, executor_for
from tests.faults import probe_tools
from tests.faults.harness import (
    WorkerProcess,
    fault_settings,
    mended_rows,
    projection_counts,
    report,
    seconds_after,
    spread,
    worker_environment,
)
from tests.workflows.timeskip import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.dev_server, pytest.mark.postgres, pytest.mark.timeout(240)]

OUTAGE = 20.0
BEFORE = 10
"""Executions started before the outage: their tools run into it, their ends are written during it."""


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own (dropped afterwards, connections or not)."""
    if not POSTGRES_URL:
        pytest.skip("STEPFLOW_TEST_POSTGRES_URL is not set")
    name = f"stepflow_faults_{uuid.uuid4().hex[:12]}"
    await _postgres_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await _postgres_admin(
            POSTGRES_URL, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true', f'DROP DATABASE "{name}" WITH (FORCE)'
        )


async def close_database(name: str) -> None:
    """Refuse new connections to ``name`` and end every session it has."""
    await _postgres_admin(
        POSTGRES_URL or "",
        f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false',
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )


async def test_starts_and_status_reads_work_while_the_database_is_down(
    dev_env: WorkflowEnvironment, tmp_path: Path, database: str
) -> None:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)
    settings = fault_settings(tmp_path, dev_env.client.service_client.config.target_host, database_url=url)
    probe = tmp_path / "runs.txt"
    env = worker_environment(settings)
    worker = await WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        async with executor_for(dev_env, settings) as executor:
            await worker.polling(dev_env.client)

            def request(seconds: float) -> ExecutionRequest:
                return ExecutionRequest(
                    tool_id=probe_tools.IDEMPOTENT, parameters={"path": str(probe), "seconds": seconds}
                )

            ids = [await executor.execute_tool_async(request(2.0 + i % 5)) for i in range(BEFORE)]
            await wait_until(lambda: _rows_running(executor, ids), within=60, what="the first rows")

            await close_database(database)
            closed_at = time.monotonic()
            starts, reads = [], []
            while time.monotonic() - closed_at < OUTAGE:
                began = time.monotonic()
                ids.append(await executor.execute_tool_async(request(1.0)))
                starts.append(time.monotonic() - began)
                started = await run_cli(
                    "start", probe_tools.IDEMPOTENT, "-p", f"path={probe}", "-p", "seconds=1", env=env
                )
                assert started.code == 0, started
                assert started.stdout.count("\n") == 1, started  # the id alone: warnings go to stderr
                ids.append(started.stdout.strip())
                began = time.monotonic()
                statuses = [await executor.get_execution_status(i) for i in ids]
                reads.append((time.monotonic() - began) / len(ids))
                assert len(statuses) == len(ids)
                shown = await run_cli("status", ids[-1], "--json", env=env)
                assert shown.code == 0, shown
                assert shown.json()["status"] in {"pending", "running", "completed"}, shown
            await _postgres_admin(POSTGRES_URL, f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
            opened_at, opened_wall = time.monotonic(), datetime.now(UTC)

            results = await asyncio.gather(*(_result(executor, i) for i in ids))
            assert Counter(result.status for result, _ in results) == {ExecutionStatus.COMPLETED: len(ids)}
            closed = [closed_at for _, closed_at in results]
            # every row terminal and every line in: the writes the worker's spool kept while the database was down
            woke = probe_tools.runs(probe).finished
            await wait_until(lambda: _rows_completed(executor, woke), within=90, what="every row and its lines")
            caught_up = time.monotonic() - opened_at

            counts = await projection_counts(executor.projection, ids)
            assert counts.rows == dict.fromkeys(ids, 1)
            assert counts.statuses == dict.fromkeys(ids, "completed")
            runs = probe_tools.runs(probe)
            for i in ids:
                lines = counts.messages[i]
                assert lines["validated"] == 1 and lines["completed"] == 1 and lines["probe woke"] == runs.finished[i]
                assert max(counts.seqs[i].values()) == 1, (i, counts.seqs[i])
            verified, _ = await verify(executor.client, executor.projection, task_queue=settings.temporal.task_queue)
            assert verified.ok and verified.checked == len(ids), verified.mismatches

            during = len(ids) - BEFORE
            report(
                f"projection database closed {OUTAGE:.0f} s: {during} executions started during it (half by "
                f"`stepflow start`), {BEFORE} running into it; all completed"
            )
            report(f"  Executor start during it {spread(starts, unit='ms')}; status read {spread(reads, unit='ms')}")
            report(
                f"  every row terminal {caught_up:.1f} s after the database opened again; tool runs per "
                f"execution {dict(Counter(runs.started[i] for i in ids))}; rows mended by the reconciler: "
                f"{mended_rows(worker.log_path)}"
            )
            late = seconds_after(opened_wall, [end for end in closed if end >= opened_wall])
            assert len(late) < len(ids), "an execution's outcome does not wait for its row: some closed meanwhile"
            report(
                f"  closed in Temporal while it was down: {len(ids) - len(late)} (their rows written afterwards); "
                f"the others closed {spread(late) if late else '-'} after it opened again"
            )
    finally:
        await worker.stop()


async def _rows_running(executor: Executor, ids: list[str]) -> bool:
    counts = await projection_counts(executor.projection, ids)
    return all(i in counts.statuses for i in ids)


async def _rows_completed(executor: Executor, woke: Mapping[str, int]) -> bool:
    """Every row completed with all its lines: validated, each run's "probe woke", completed."""
    counts = await projection_counts(executor.projection, list(woke))
    for execution_id, runs in woke.items():
        lines = counts.messages.get(execution_id, Counter[str]())
        if counts.statuses.get(execution_id) != "completed":
            return False
        if (lines["validated"], lines["probe woke"], lines["completed"]) != (1, runs, 1):
            return False
    return True


async def _result(executor: Executor, execution_id: str) -> tuple[ExecutionResult, datetime]:
    """The execution's result once it ended, and when it closed in Temporal."""
    handle = executor.client.get_workflow_handle(execution_id, result_type=ExecutionResult)
    await asyncio.wait_for(handle.result(), 120)
    close_time = (await handle.describe()).close_time
    assert close_time is not None
    return await executor.get_execution_result(execution_id), close_time
