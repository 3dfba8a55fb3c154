"""The control plane stays up while the projection database is down: start, status, result and cancel work
from Temporal alone; lists, logs and metrics answer DatabaseError naming the database and what to check.

The starter's projection here points at a port nothing listens on (a real connection refused); the worker
writes to its own, working database, so the executions themselves are recorded as usual.
"""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import Settings
from stepflow.db.projection import Projection
from stepflow.errors import DatabaseError, ToolNotFound
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import ExecutionRequest, ExecutionStatus
from tests.conftest import running_worker
from tests.workflows.timeskip import wait_until

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"


async def test_start_status_result_and_cancel_work_without_the_projection(
    dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    async with running_worker(dev_env, settings) as worker_projection:
        projection = await Projection.open(UNREACHABLE, required=False)
        executor = Executor(dev_env.client, projection, settings, principal=LOCAL_ADMIN)
        try:
            result = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"x": 1}))
            assert result.status is ExecutionStatus.COMPLETED and result.output == {"x": 1}
            assert await executor.get_execution_status(result.execution_id) is ExecutionStatus.COMPLETED
            assert (await executor.get_execution_result(result.execution_id)).output == {"x": 1}
            row = await worker_projection.reader.get_execution(result.execution_id)
            assert row is not None and row.status == ExecutionStatus.COMPLETED  # the worker recorded it

            sleeping = await executor.execute_tool_async(ExecutionRequest(tool_id="sleep", parameters={"seconds": 30}))
            await wait_until(lambda: _running(executor, sleeping), what="the sleep to run")
            await executor.cancel_execution(sleeping)
            await wait_until(lambda: _ended(executor, sleeping), what="the cancel")
            assert await executor.get_execution_status(sleeping) is ExecutionStatus.CANCELLED

            with pytest.raises(ToolNotFound, match="no-such-tool"):  # the worker checks what the table could not
                await executor.execute_tool(ExecutionRequest(tool_id="no-such-tool"))

            reads = (executor.list_executions, lambda: executor.get_logs(sleeping), executor.get_metric_rows)
            for read in reads:
                with pytest.raises(DatabaseError, match=r"127\.0\.0\.1:1/nowhere.*check that the database is up"):
                    await read()
        finally:
            await executor.close()


async def _running(executor: Executor, execution_id: str) -> bool:
    return await executor.get_execution_status(execution_id) is ExecutionStatus.RUNNING


async def _ended(executor: Executor, execution_id: str) -> bool:
    return (await executor.get_execution_status(execution_id)).is_terminal
