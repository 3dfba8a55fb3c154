"""The reconciler mends, from Temporal's histories, the rows no workflow code writes: terminated, lost."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from starter.projection_admin import verify
from stepflow.config import Settings
from stepflow.db.schema import execution_logs, execution_metrics, executions
from stepflow.models import ExecutionRequest, ExecutionStatus
from tests.conftest import executor_for, running_worker
from tests.workflows.timeskip import wait_until
from worker.reconciler import Reconciler


async def test_a_terminated_execution_and_a_lost_row_are_mended_and_counted(
    dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    async with running_worker(dev_env, settings) as projection, executor_for(dev_env, settings) as executor:
        sleeping = await executor.execute_tool_async(ExecutionRequest(tool_id="sleep", parameters={"seconds": 30}))
        await wait_until(lambda: _status(executor, sleeping, ExecutionStatus.RUNNING))
        await dev_env.client.get_workflow_handle(sleeping).terminate(reason="operator pressed terminate")
        lost = (await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"n": 1}))).execution_id
        async with projection.engine.begin() as connection:  # a fault lost this row altogether
            for table in (execution_logs, execution_metrics):
                await connection.execute(delete(table).where(table.c.execution_id == lost))
            await connection.execute(delete(executions).where(executions.c.id == lost))

        report, _ = await verify(dev_env.client, projection, task_queue=settings.temporal.task_queue)
        assert set(report.wrong_ids) == {sleeping, lost}, "the faults are there before the reconciler runs"

        reconciler = Reconciler(dev_env.client, projection, settings.temporal.task_queue, interval=1)
        mended: list[str] = []
        for _ in range(50):  # visibility lists a closed execution a moment after it closed
            mended += await reconciler.reconcile()
            if set(mended) >= {sleeping, lost}:
                break
            await asyncio.sleep(0.1)
        assert sorted(mended) == sorted({sleeping, lost})
        assert reconciler.mended == 2
        terminated = await projection.reader.get_execution(sleeping)
        assert terminated is not None and terminated.status == ExecutionStatus.FAILED
        assert "terminated in Temporal: operator pressed terminate" in terminated.error_message
        restored = await projection.reader.get_execution(lost)
        assert restored is not None and restored.status == ExecutionStatus.COMPLETED
        assert restored.result_data == {"n": 1}

        report, _ = await verify(dev_env.client, projection, task_queue=settings.temporal.task_queue)
        assert report.ok, report.mismatches
        assert await reconciler.reconcile() == [], "a second round finds nothing to mend"


async def _status(executor: Executor, execution_id: str, status: ExecutionStatus) -> bool:
    return await executor.get_execution_status(execution_id) is status
