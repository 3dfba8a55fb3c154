"""Two worker processes writing to one PostgreSQL projection lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from starter.projection_admin import verify
from stepflow.db.schema import execution_logs, execution_metrics, executions
from stepflow.models import ExecutionRequest, ExecutionResult, ExecutionStatus
from tests.conftest import executor_for, make_settings

pytestmark = [pytest.mark.dev_server, pytest.mark.postgres]

N = 200
STEPFLOW = Path(sys.executable).parent / "stepflow"


async def _pollers(client, task_queue: str) -> set[str]:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return {poller.identity for poller in response.pollers}


async def test_two_worker_processes_on_one_postgres(dev_env, tmp_path, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("the shared-database case is PostgreSQL's")
    settings = make_settings(tmp_path, database_url=db_url, heartbeat_timeout=30)
    env = {
        **os.environ,
        "STEPFLOW_DATABASE_URL": db_url,
        "STEPFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "STEPFLOW_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "STEPFLOW_EXECUTOR_HEARTBEAT_TIMEOUT": "30",
        "STEPFLOW_DATA_DIR": str(tmp_path),
        "STEPFLOW_LOG_FORMAT": "json",
    }
    workers = [
        await asyncio.create_subprocess_exec(
            str(STEPFLOW), "worker", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    try:
        async with executor_for(dev_env, settings) as executor:
            for _ in range(200):  # both processes migrate the same database at start, then poll
                if len(await _pollers(executor.client, settings.temporal.task_queue)) >= 2:
                    break
                assert all(worker.returncode is None for worker in workers), "a worker process exited"
                await asyncio.sleep(0.1)
            assert len(await _pollers(executor.client, settings.temporal.task_queue)) >= 2

            ids = await asyncio.gather(
                *(executor.execute_tool_async(ExecutionRequest(tool_id="echo", parameters={"i": i})) for i in range(N))
            )
            results = await asyncio.gather(
                *(executor.client.get_workflow_handle(i, result_type=ExecutionResult).result() for i in ids)
            )
            assert {result.status for result in results} == {ExecutionStatus.COMPLETED}

            async def count(table, *conditions) -> int:
                async with executor.projection.engine.connect() as connection:
                    query = select(func.count()).select_from(table).where(*conditions)
                    return int((await connection.execute(query)).scalar_one())

            for _ in range(50):  # the attempts' last lines land just after the workflows end
                if await count(execution_logs) >= 4 * N:
                    break
                await asyncio.sleep(0.1)
            assert await count(executions) == N
            assert await count(executions, executions.c.status == "completed") == N
            assert await count(execution_logs) == 4 * N  # validated, attempt started, echoing, completed
            assert await count(execution_metrics) == 4 * N  # duration, attempts, queue wait, output bytes
            report, _ = await verify(executor.client, executor.projection, task_queue=settings.temporal.task_queue)
            assert report.mismatches == [] and report.checked == N
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                await asyncio.wait_for(worker.wait(), 20)
            except TimeoutError:
                worker.kill()
                await worker.wait()
