"""Settings that do what they say: priority levels, and switching execution_metrics / execution_logs off.

Also: a caller-set ``parent_execution_id`` must name an execution of the caller's tenant, checked at submission.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Table, func, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import ExecutorSettings, SchedulerSettings, Settings
from stepflow.db.schema import execution_logs, execution_metrics
from stepflow.errors import ExecutionFailed, InvalidParameters
from stepflow.models import ExecutionContext, ExecutionOptions, ExecutionRequest, Priority, ToolInfo
from tests.conftest import executor_for, running_worker

# the table of stepflow/workflow_start.py
DOCUMENTED_KEYS = {
    5: {Priority.CRITICAL: 1, Priority.HIGH: 2, Priority.NORMAL: 3, Priority.LOW: 5},
    3: {Priority.CRITICAL: 1, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3},
}


@pytest.mark.parametrize("levels", sorted(DOCUMENTED_KEYS))
async def test_priority_levels_spread_the_priorities_over_temporal_keys(
    dev_env: WorkflowEnvironment, settings: Settings, levels: int
) -> None:
    settings = settings.model_copy(update={"scheduler": SchedulerSettings(priority_levels=levels)})
    async with executor_for(dev_env, settings) as executor:
        await executor.projection.writer.upsert_tools([ToolInfo(id="echo", version="1.0.0")])  # no worker: no run
        keys = {}
        for priority in Priority:
            request = ExecutionRequest(tool_id="echo", options=ExecutionOptions(priority=priority))
            execution_id = await executor.execute_tool_async(request)
            handle = executor.client.get_workflow_handle(execution_id)
            history = await handle.fetch_history()
            keys[priority] = history.events[0].workflow_execution_started_event_attributes.priority.priority_key
            await handle.terminate("only the start was wanted")
    assert keys == DOCUMENTED_KEYS[levels]


async def _count(executor: Executor, table: Table) -> int:
    async with executor.projection.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def _run_echo_and_fail(executor: Executor) -> None:
    await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"message": "hi"}))
    with pytest.raises(ExecutionFailed):
        await executor.execute_tool(ExecutionRequest(tool_id="fail", parameters={"message": "no"}))


@pytest.mark.parametrize(
    ("switch", "silenced", "kept"),
    [
        ("enable_monitoring", execution_metrics, execution_logs),
        ("enable_logging", execution_logs, execution_metrics),
    ],
)
async def test_a_switched_off_table_gets_no_rows(
    dev_env: WorkflowEnvironment, settings: Settings, switch: str, silenced: Table, kept: Table
) -> None:
    executor_settings = ExecutorSettings(**{**settings.executor.model_dump(), switch: False})
    off = settings.model_copy(update={"executor": executor_settings})
    async with running_worker(dev_env, off), executor_for(dev_env, off) as executor:
        await _run_echo_and_fail(executor)
        assert len(await executor.list_executions()) == 2, "the executions rows are written regardless"
        assert await _count(executor, silenced) == 0
        assert await _count(executor, kept) > 0


async def test_a_parent_execution_id_that_names_nothing_is_refused_before_anything_starts(
    dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        orphan = ExecutionRequest(
            tool_id="echo", context=ExecutionContext(parent_execution_id="exec-nobody", request_id="orphan")
        )
        with pytest.raises(InvalidParameters, match="parent_execution_id 'exec-nobody' names no execution"):
            await executor.execute_tool_async(orphan)
        listed = [w async for w in dev_env.client.list_workflows(f'TaskQueue="{settings.temporal.task_queue}"')]
        assert listed == [], "nothing was started"

        parent = await executor.execute_tool(ExecutionRequest(tool_id="echo", context=ExecutionContext(tenant_id="a")))
        other_tenant = ExecutionRequest(
            tool_id="echo", context=ExecutionContext(tenant_id="b", parent_execution_id=parent.execution_id)
        )
        with pytest.raises(InvalidParameters, match="names no execution of tenant 'b'"):
            await executor.execute_tool_async(other_tenant)
        child = ExecutionRequest(
            tool_id="echo", context=ExecutionContext(tenant_id="a", parent_execution_id=parent.execution_id)
        )
        result = await executor.execute_tool(child)
        row = await executor.projection.reader.get_execution(result.execution_id)
        assert row is not None and row.parent_execution_id == parent.execution_id
        described = await executor.client.get_workflow_handle(result.execution_id).describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED
