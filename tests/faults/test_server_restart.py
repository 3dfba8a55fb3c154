"""The Temporal server stopped for 15 s (SIGKILL of its process group) and started again, 20 executions in flight.

A dev server of the test's own, on a SQLite file so that its state survives, restarted on the same port. The
tools run on meanwhile: about half finish while the server is down (their results cannot reach it, but their
rows are written), the others after it is back. The server times out every attempt it has not heard from,
and the workflows run them again (their tool's output differs run to run, as most do). Every execution
ends the same in Temporal and in SQL, output included, and ``verify`` is clean, with no ``rebuild``; the
worker's reconciler runs at its default interval. Four executions of a tool declared ``idempotent = false``
run beside them: the server's heartbeat timeout is a lost worker to them, so they fail with the worker-lost
error, in Temporal and in SQL alike, even the two whose tool had finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from starter.projection_admin import verify
from starter.server import DevServer, free_port
from stepflow import temporal_state
from stepflow.converter import DATA_CONVERTER
from stepflow.models import ExecutionRequest, ExecutionResult, ExecutionStatus
from tests.conftest import executor_for
from tests.faults import probe_tools
from tests.faults.harness import (
    WorkerProcess,
    fault_settings,
    mended_rows,
    projection_counts,
    report,
    seconds_after,
    spread,
)
from tests.workflows.timeskip import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

N = 20
OUTAGE = 15.0
ONCE_SECONDS = (3.0, 6.0, 19.0, 21.0)
"""Four executions of a tool declared ``idempotent = false`` beside the 20: two end during the outage, two after."""
INTERRUPTED = (
    "attempt 1 interrupted: its heartbeat timed out (the Temporal server heard nothing from this worker for 5 s)"
)


def _seconds(i: int) -> float:
    """The probes sleep 2 to 21 s: about half end while the server is down, the others after it is back."""
    return 2.0 + i


async def test_every_execution_ends_the_same_in_temporal_and_sql(tmp_path: Path) -> None:
    settings = fault_settings(tmp_path, f"127.0.0.1:{free_port()}")
    probe = tmp_path / "runs.txt"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    server = DevServer(settings, headless=True)  # state in tmp_path/temporal.db
    await server.start_async()
    try:
        client = await Client.connect(settings.temporal.address, data_converter=DATA_CONVERTER)
        await worker.start()
        await worker.polling(client)
        async with executor_for(WorkflowEnvironment.from_client(client), settings) as executor:
            requests = [
                ExecutionRequest(
                    tool_id=probe_tools.IDEMPOTENT, parameters={"path": str(probe), "seconds": _seconds(i)}
                )
                for i in range(N)
            ]
            requests += [
                ExecutionRequest(tool_id=probe_tools.NOT_IDEMPOTENT, parameters={"path": str(probe), "seconds": s})
                for s in ONCE_SECONDS
            ]
            started = list(await asyncio.gather(*(executor.execute_tool_async(request) for request in requests)))
            ids, once = started[:N], started[N:]
            await wait_until(lambda: _all_started(probe, started), within=60, what="every probe to run")

            assert server.process is not None
            os.killpg(server.process.pid, signal.SIGKILL)
            await asyncio.to_thread(server.process.wait)
            await asyncio.sleep(OUTAGE)
            server = DevServer(settings, headless=True)
            await server.start_async()
            restarted_at = datetime.now(UTC)
            ends = await asyncio.gather(*(_ended(client, i) for i in started))
            await _check(executor, ids, probe)
            await _check_not_idempotent(executor, once, probe)
            task_queue = settings.temporal.task_queue
            verified, _ = await verify(client, executor.projection, task_queue=task_queue)
            assert verified.ok and verified.checked == len(started), verified.mismatches

            report(f"Temporal server down {OUTAGE:.0f} s (SIGKILL, restart), {N} executions in flight (2-21 s tools):")
            report(f"  all completed {spread(seconds_after(restarted_at, ends[:N]))} after the restart")
            report(
                f"  {len(once)} more of a tool declared idempotent = false: failed (worker lost) in Temporal and SQL "
                f"{spread(seconds_after(restarted_at, ends[N:]))} after the restart, none run again"
            )
            runs = probe_tools.runs(probe)
            rerun_after = [runs.began[i][-1] - restarted_at.timestamp() for i in ids if runs.started[i] > 1]
            report(
                f"  tool runs per execution {dict(Counter(runs.started[i] for i in ids))}; the second runs began "
                f"{spread(rerun_after)} after the restart"
            )
            report(f"  rows mended by the reconciler: {mended_rows(worker.log_path)}")
    finally:
        await worker.stop()
        await asyncio.to_thread(server.stop)


async def _check(executor: Executor, ids: list[str], probe: Path) -> None:
    """Each execution completed, once in SQL, as Temporal says, with no duplicated line or metric."""
    client = executor.client
    temporal = {i: temporal_state.closed_status(await client.get_workflow_handle(i).describe()) for i in ids}
    assert Counter(temporal.values()) == {ExecutionStatus.COMPLETED: N}, "a server outage fails no execution"
    runs = probe_tools.runs(probe)
    assert all(1 <= runs.started[i] <= 2 and runs.finished[i] >= 1 for i in ids), runs.started

    counts = await projection_counts(executor.projection, ids)
    assert counts.rows == dict.fromkeys(ids, 1)
    assert counts.statuses == dict.fromkeys(ids, "completed"), "the rows agree as soon as Temporal has the end"
    for i in ids:
        lines = counts.messages[i]
        assert lines["validated"] == 1 and lines["completed"] == 1, (i, lines)
        assert max(counts.seqs[i].values()) == 1, (i, counts.seqs[i])
        assert not [line for line in lines if "TimeoutExceeded" in line], (i, lines)
        if runs.started[i] == 2 and runs.finished[i] == 1:  # its first run was still going at the restart
            assert lines[INTERRUPTED] == 1, (i, lines)
        assert counts.metrics[i] == Counter(
            dict.fromkeys(["attempts", "queue_wait_ms", "probe_seconds", "duration_ms", "output_bytes"], 1)
        ), (i, counts.metrics[i])
    assert counts.attempts == dict.fromkeys(ids, 1), "a server outage is not a tool attempt"


async def _check_not_idempotent(executor: Executor, once: list[str], probe: Path) -> None:
    """Failed with the worker-lost error in Temporal and in SQL, whether or not the tool had finished; not rerun."""
    for execution_id in once:
        result = await executor.get_execution_result(execution_id)
        assert result.status is ExecutionStatus.FAILED and result.error is not None, result
        assert result.error.type == "InternalError" and "declared idempotent = false" in result.error.message
        row = await executor.projection.reader.get_execution(execution_id)
        assert row is not None and row.status == "failed"
        assert row.error_message == f"InternalError: {result.error.message}"
    assert all(probe_tools.runs(probe).started[i] == 1 for i in once)


async def _all_started(probe: Path, ids: list[str]) -> bool:
    started = probe_tools.runs(probe).started
    return all(started[i] >= 1 for i in ids)


async def _ended(client: Client, execution_id: str) -> datetime:
    """Wait for the execution's end; its close time in Temporal."""
    handle = client.get_workflow_handle(execution_id, result_type=ExecutionResult)
    with contextlib.suppress(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 150)
    close_time = (await handle.describe()).close_time
    assert close_time is not None
    return close_time
