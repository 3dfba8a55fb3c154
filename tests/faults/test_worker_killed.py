"""A worker killed mid-tool (SIGKILL of its process group) with 20 executions running, a new worker started at once.

Default options: no retries asked. An idempotent tool runs again on the new worker and every execution
completes, each tool run at most twice, with one row, one set of lines and one set of metrics per execution; a
tool declared ``idempotent = false`` is not run again: its executions fail with the worker-lost error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from starter.projection_admin import verify
from stepflow.models import ExecutionRequest, ExecutionResult, ExecutionStatus
from tests.conftest import executor_for
from tests.faults import probe_tools
from tests.faults.harness import WorkerProcess, fault_settings, projection_counts, report, seconds_after, spread
from tests.workflows.timeskip import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.dev_server, pytest.mark.timeout(240)]

N = 20
SECONDS = 6.0
"""How long the probe sleeps: the kill lands about a second into it."""
RERUN_LINE = "attempt 1 started again (run 2: the worker running it before was lost)"


@dataclass
class Killed:
    """Executions whose worker was killed mid-tool: their ids, the moment of the kill, their ends."""

    executor: Executor
    ids: list[str]
    killed_at: datetime
    probe: Path
    ends: list[datetime]


@contextlib.asynccontextmanager
async def killed_mid_tool(env: WorkflowEnvironment, tmp_path: Path, tool_id: str) -> AsyncIterator[Killed]:
    """Run N executions of ``tool_id`` on a worker process, SIGKILL it once every tool runs and has written its
    first lines, start another at once, and wait for every execution to end."""
    settings = fault_settings(tmp_path, env.client.service_client.config.target_host)
    probe = tmp_path / "runs.txt"
    first = await WorkerProcess(settings, tmp_path / "worker-1.log").start()
    second = WorkerProcess(settings, tmp_path / "worker-2.log")
    try:
        async with executor_for(env, settings) as executor:
            await first.polling(env.client)
            request = ExecutionRequest(tool_id=tool_id, parameters={"path": str(probe), "seconds": SECONDS})
            ids = list(await asyncio.gather(*(executor.execute_tool_async(request) for _ in range(N))))
            assert len(set(ids)) == N

            async def all_running_with_lines() -> bool:
                counts = await projection_counts(executor.projection, ids)
                started = probe_tools.runs(probe).started
                return all(started[i] == 1 and counts.messages[i]["probe sleeping"] == 1 for i in ids)

            await wait_until(all_running_with_lines, within=60, what="every probe to run and write its first lines")
            first.kill()
            killed_at = datetime.now(UTC)
            await second.start()
            await first.stop()
            await second.polling(env.client)
            ends = await asyncio.gather(*(_ended(executor, i) for i in ids))
            yield Killed(executor, ids, killed_at, probe, list(ends))
    finally:
        await first.stop()
        await second.stop()


async def _verified(executor: Executor) -> None:
    """``projection verify`` of the test's task queue is clean and checked all N executions."""
    task_queue = executor.settings.temporal.task_queue
    verified, _ = await verify(executor.client, executor.projection, task_queue=task_queue)
    assert verified.ok and verified.checked == N, verified.mismatches


async def _ended(executor: Executor, execution_id: str) -> datetime:
    """Wait for the execution's end in Temporal; its close time."""
    handle = executor.client.get_workflow_handle(execution_id, result_type=ExecutionResult)
    with contextlib.suppress(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 120)
    close_time = (await handle.describe()).close_time
    assert close_time is not None
    return close_time


async def test_an_idempotent_tool_runs_again_and_every_execution_completes(dev_env, tmp_path: Path) -> None:
    async with killed_mid_tool(dev_env, tmp_path, probe_tools.IDEMPOTENT) as killed:
        executor, ids = killed.executor, killed.ids
        results = [await executor.get_execution_result(i) for i in ids]
        assert Counter(result.status for result in results) == {ExecutionStatus.COMPLETED: N}, [
            result.error for result in results if result.error
        ]
        runs = probe_tools.runs(killed.probe)
        assert runs.started == dict.fromkeys(ids, 2), "killed once mid-run: each tool ran exactly twice"
        assert runs.finished == dict.fromkeys(ids, 1), "only the second run finished"
        assert all(len(set(runs.pids[i])) == 2 for i in ids), "the second run was on the other worker"
        assert {result.output["pid"] for result in results} == {runs.pids[ids[0]][1]}

        counts = await projection_counts(executor.projection, ids)
        assert counts.rows == dict.fromkeys(ids, 1)
        assert counts.statuses == dict.fromkeys(ids, "completed")
        expected_lines = Counter(
            {
                "validated": 1,
                "attempt 1 started": 1,
                "probe sleeping": 2,
                RERUN_LINE: 1,
                "probe woke": 1,
                "completed": 1,
            }
        )
        for execution_id in ids:
            assert counts.messages[execution_id] == expected_lines, execution_id
            assert max(counts.seqs[execution_id].values()) == 1
            assert counts.metrics[execution_id] == Counter(
                dict.fromkeys(["attempts", "queue_wait_ms", "probe_seconds", "duration_ms", "output_bytes"], 1)
            ), execution_id
        assert counts.attempts == dict.fromkeys(ids, 1), "a lost worker is not a tool attempt"

        await _verified(executor)

        rerun_after = [runs.began[i][1] - killed.killed_at.timestamp() for i in ids]
        report(
            f"worker SIGKILL x{N}, idempotent tool ({SECONDS:.0f} s): rerun began {spread(rerun_after)} after the kill"
        )
        report(f"  completed {spread(seconds_after(killed.killed_at, killed.ends))} after the kill")


async def test_a_tool_declared_not_idempotent_is_not_run_again(dev_env, tmp_path: Path) -> None:
    async with killed_mid_tool(dev_env, tmp_path, probe_tools.NOT_IDEMPOTENT) as killed:
        executor, ids = killed.executor, killed.ids
        results = [await executor.get_execution_result(i) for i in ids]
        assert Counter(result.status for result in results) == {ExecutionStatus.FAILED: N}
        lost = (
            f"the worker running tool {probe_tools.NOT_IDEMPOTENT!r} was lost while the tool ran, and the tool "
            "is declared idempotent = false, so it was not run again; start it again if that is safe"
        )
        assert {(r.error.type, r.error.message) for r in results if r.error} == {("InternalError", lost)}
        await asyncio.sleep(SECONDS)  # a run started by mistake would have had the time to say so
        runs = probe_tools.runs(killed.probe)
        assert runs.started == dict.fromkeys(ids, 1) and runs.finished == {}, "none ran again, none finished"

        counts = await projection_counts(executor.projection, ids)
        assert counts.rows == dict.fromkeys(ids, 1)
        assert counts.statuses == dict.fromkeys(ids, "failed")
        assert set(counts.errors.values()) == {f"InternalError: {lost}"}
        failed_line = f"failed: InternalError: {lost}"
        for execution_id in ids:
            assert counts.messages[execution_id] == Counter(
                {"validated": 1, "attempt 1 started": 1, "probe sleeping": 1, failed_line: 1}
            ), execution_id
            metrics = counts.metrics[execution_id]
            assert metrics["duration_ms"] == 1 and max(metrics.values()) == 1, (execution_id, metrics)
        await _verified(executor)
        report(
            f"worker SIGKILL x{N}, tool declared idempotent = false: failed (worker lost) "
            f"{spread(seconds_after(killed.killed_at, killed.ends))} after the kill"
        )
