"""Under load: 500 concurrent executions, exactly 500 terminal rows, verify clean, metrics matching the table;
then a wiped projection rebuilt from Temporal's histories."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text

from starter.executor import Executor
from starter.projection_admin import rebuild, verify
from stepflow.contracts import ToolExecutionInput
from stepflow.db.schema import execution_logs, execution_metrics, executions
from stepflow.models import ExecutionContext, ExecutionOptions, ExecutionRequest, ExecutionStatus
from tests.conftest import executor_for, make_settings, running_worker
from worker.build import build_registry
from workflows import ToolExecutionWorkflow

pytestmark = pytest.mark.dev_server

N = 500
FAILING = 40


async def _run_all(executor: Executor, requests: list[ExecutionRequest]) -> list[str]:
    ids = await asyncio.gather(*(executor.execute_tool_async(request) for request in requests))
    await asyncio.gather(*(_wait(executor, execution_id) for execution_id in ids), return_exceptions=True)
    return list(ids)


async def _wait(executor: Executor, execution_id: str) -> Any:
    return await executor.client.get_workflow_handle(execution_id).result()


async def _count(executor: Executor, table: Any, *conditions: Any) -> int:
    async with executor.projection.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table).where(*conditions))).scalar_one())


async def test_500_concurrent_executions(dev_env, tmp_path, db_url):
    settings = make_settings(tmp_path, database_url=db_url, max_concurrent_executions=200, heartbeat_timeout=30)
    requests = [
        ExecutionRequest(tool_id="fail", parameters={"message": f"no {i}"})
        if i < FAILING
        else ExecutionRequest(tool_id="echo", parameters={"i": i})
        for i in range(N)
    ]
    async with running_worker(dev_env, settings) as worker_projection, executor_for(dev_env, settings) as executor:
        started = time.monotonic()
        ids = await _run_all(executor, requests)
        elapsed = time.monotonic() - started
        assert len(set(ids)) == N
        assert await _count(executor, executions) == N
        terminal = [status.value for status in ExecutionStatus if status.is_terminal]
        assert await _count(executor, executions, executions.c.status.in_(terminal)) == N
        async with executor.projection.engine.connect() as connection:
            by_status: dict[str, int] = dict(
                (
                    await connection.execute(select(executions.c.status, func.count()).group_by(executions.c.status))
                ).all()
            )
        assert by_status == {"completed": N - FAILING, "failed": FAILING}
        assert await _count(executor, execution_metrics, execution_metrics.c.metric_name == "duration_ms") == N
        # every execution: validated, attempt started, its tool line, attempt failed (fail only), terminal
        assert await _count(executor, execution_logs) == N * 4 + FAILING

        # group commit: three writes per execution (row, attempt, terminal) in fewer transactions
        assert worker_projection.committer.transactions < 3 * N, worker_projection.committer.transactions
        print(f"{N} executions in {elapsed:.1f}s, {worker_projection.committer.transactions} transactions")

        report, _ = await verify(executor.client, executor.projection, task_queue=settings.temporal.task_queue)
        assert report.checked == N
        assert report.mismatches == []

        figures = await executor.get_metrics()
        async with executor.projection.engine.connect() as connection:
            avg = (await connection.execute(select(func.avg(executions.c.duration_ms)))).scalar_one()
        assert figures.total_executions == N
        assert figures.successful_executions == N - FAILING
        assert figures.failed_executions == FAILING
        assert figures.current_concurrent_executions == 0
        assert figures.queue_length == 0
        assert figures.error_rate == pytest.approx(FAILING / N)
        assert figures.average_execution_time.total_seconds() * 1000 == pytest.approx(float(avg), abs=0.01)


async def test_wipe_rebuild_verify(dev_env, tmp_path, db_url):
    settings = make_settings(tmp_path, database_url=db_url)
    registry = build_registry(settings)
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        requests = [ExecutionRequest(tool_id="echo", parameters={"i": i}) for i in range(8)]
        requests += [ExecutionRequest(tool_id="fail", parameters={"message": "nope"})]
        requests += [
            ExecutionRequest(tool_id="sleep", parameters={"seconds": 5}, options=ExecutionOptions(timeout=1)),
            # refused by the worker, not the Executor: a Python tool cannot have limits enforced
            ExecutionRequest(
                tool_id="echo", parameters={}, options=ExecutionOptions(resource_limits={"memory_mb": 64})
            ),
        ]
        ids = await _run_all(executor, requests)
        # a workflow started behind the Executor's back for an unknown tool: ToolNotFound, no row by design
        rejected = f"exec-{uuid.uuid4()}"
        unknown = ExecutionRequest(tool_id="no-such-tool", context=ExecutionContext(request_id="r"))
        await executor.client.start_workflow(
            ToolExecutionWorkflow.run,
            ToolExecutionInput(execution_id=rejected, request=unknown, runtime=executor._runtime(), kind="python"),
            id=rejected,
            task_queue=settings.temporal.task_queue,
        )
        await asyncio.gather(_wait(executor, rejected), return_exceptions=True)

        before = {row.execution_id: row for row in await executor.list_executions()}
        assert set(before) == set(ids)
        report, _ = await verify(executor.client, executor.projection, task_queue=settings.temporal.task_queue)
        assert report.mismatches == [] and report.checked == len(ids)
        assert list(report.skipped) == [rejected]

        async with executor.projection.engine.begin() as connection:  # wipe, including the tools
            for table in ("execution_metrics", "execution_logs", "executions", "tools"):
                await connection.execute(text(f"DELETE FROM {table}"))
        report, _ = await verify(executor.client, executor.projection, task_queue=settings.temporal.task_queue)
        assert len(report.wrong_ids) == len(ids)

        tools = [definition.info() for definition in registry.all()]
        written, _ = await rebuild(
            executor.client, executor.projection, tools=tools, task_queue=settings.temporal.task_queue
        )
        assert written == len(ids)
        again, _ = await rebuild(
            executor.client, executor.projection, tools=tools, task_queue=settings.temporal.task_queue
        )
        assert again == 0  # idempotent: nothing left to fix
        report, _ = await verify(executor.client, executor.projection, task_queue=settings.temporal.task_queue)
        assert report.mismatches == []
        after = {row.execution_id: row for row in await executor.list_executions()}
        for execution_id, row in before.items():
            rebuilt = after[execution_id]
            assert (rebuilt.status, rebuilt.tool_id, rebuilt.version, rebuilt.error_message, rebuilt.tenant_id) == (
                row.status,
                row.tool_id,
                row.version,
                row.error_message,
                row.tenant_id,
            )
        statuses = sorted(row.status.value for row in after.values())
        assert statuses == sorted(["completed"] * 8 + ["failed", "timed_out", "failed"])
