"""Cancellation and timeouts of a composite reach every running child and its tool."""

from __future__ import annotations

import asyncio
import os
import random
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from starter.executor import Executor
from stepflow.db.projection import Projection
from stepflow.errors import TimeoutExceeded
from stepflow.models import ExecutionOptions, ExecutionRequest, ExecutionStatus
from stepflow.sandbox import sandbox_unavailable
from tests.composite.conftest import children_of, row_of, wait_until_running
from tests.conftest import executor_for, running_worker
from workflows.composite import STEP_DEADLINE_MARGIN


async def _assert_children_stopped(ex: Executor, projection: Projection, parent_id: str) -> None:
    rows = await children_of(projection, parent_id)
    assert {name: row.status for name, row in rows.items()} == {
        "left": ExecutionStatus.CANCELLED,
        "right": ExecutionStatus.CANCELLED,
    }
    for row in rows.values():
        description = await ex.client.get_workflow_handle(row.execution_id).describe()
        assert description.status == WorkflowExecutionStatus.CANCELED
        assert not description.raw_description.pending_activities  # no tool left running


async def test_cancelling_the_parent_cancels_every_child(time_skipping_env, composite_settings):
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        parent_id = await ex.execute_tool_async(ExecutionRequest(tool_id="test-parallel-sleep"))
        await wait_until_running(projection, parent_id, ["left", "right"])
        assert await ex.get_execution_status(parent_id) is ExecutionStatus.RUNNING

        await ex.cancel_execution(parent_id)
        with pytest.raises(WorkflowFailureError):
            await ex.client.get_workflow_handle(parent_id).result()

        assert await ex.get_execution_status(parent_id) is ExecutionStatus.CANCELLED
        parent = await row_of(projection, parent_id)
        assert parent.status == "cancelled"
        steps = parent.result_data["steps"]
        assert [steps[name]["status"] for name in ("left", "right", "never")] == ["cancelled", "cancelled", "skipped"]
        await _assert_children_stopped(ex, projection, parent_id)


@pytest.mark.dev_server
async def test_a_terminated_parent_leaves_no_child_running(dev_env, composite_settings):
    """ParentClosePolicy.REQUEST_CANCEL: even a parent that cannot clean up (terminated) gets its children cancelled.

    On the dev server: the time-skipping test server does not apply parent close policies.
    """
    async with (
        running_worker(dev_env, composite_settings) as projection,
        executor_for(dev_env, composite_settings) as ex,
    ):
        parent_id = await ex.execute_tool_async(ExecutionRequest(tool_id="test-parallel-sleep"))
        await wait_until_running(projection, parent_id, ["left", "right"])
        await ex.client.get_workflow_handle(parent_id).terminate("test: the parent dies")
        for step in ("left", "right"):
            with pytest.raises(WorkflowFailureError):
                await ex.client.get_workflow_handle(f"{parent_id}.{step}").result()
        await _assert_children_stopped(ex, projection, parent_id)


async def test_the_parent_timeout_bounds_its_children(time_skipping_env, composite_settings):
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        request = ExecutionRequest(
            tool_id="test-parallel-sleep", options=ExecutionOptions(timeout=timedelta(seconds=2))
        )
        with pytest.raises(TimeoutExceeded, match="exceeded its timeout"):
            await ex.execute_tool(request)
        [parent] = [row for row in await ex.list_executions() if row.parent_execution_id is None]
        assert parent.status is ExecutionStatus.TIMED_OUT
        assert await ex.get_execution_status(parent.execution_id) is ExecutionStatus.TIMED_OUT
        # the composite's deadline decides: each step's own timeout falls just after it (not 300 s), so the
        # composite cancels its running steps rather than racing their timeouts
        latest = timedelta(seconds=2) + composite_settings.executor.cancel_grace_delta + STEP_DEADLINE_MARGIN
        children = await children_of(projection, parent.execution_id)
        assert {step: row.status for step, row in children.items()} == {
            "left": ExecutionStatus.CANCELLED,
            "right": ExecutionStatus.CANCELLED,
        }
        for row in children.values():
            child = await row_of(projection, row.execution_id)
            timeout = ExecutionOptions.model_validate(child.request_data["options"]).timeout
            assert timeout is not None and timeout <= latest
        await _assert_children_stopped(ex, projection, parent.execution_id)


def _sleep_processes(seconds: int) -> list[int]:
    """Live (non-zombie) ``sleep SECONDS`` processes on this machine."""
    wanted = f"sleep\0{seconds}\0".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline, open(f"/proc/{pid}/stat") as stat:
                if cmdline.read() == wanted and stat.read().rpartition(")")[2].split()[0] != "Z":
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.skipif(sandbox_unavailable() is not None, reason=str(sandbox_unavailable()))
async def test_cancelling_the_parent_leaves_no_tool_process(time_skipping_env, composite_settings):
    seconds = random.randint(7_000, 9_999)  # an argument no other process has
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        parent_id = await ex.execute_tool_async(
            ExecutionRequest(tool_id="test-command-pair", parameters={"seconds": seconds})
        )
        await wait_until_running(projection, parent_id, ["left", "right"])
        for _ in range(200):
            if len(_sleep_processes(seconds)) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(_sleep_processes(seconds)) == 2, "both sandboxed sleeps should run"

        await ex.cancel_execution(parent_id)
        with pytest.raises(WorkflowFailureError):
            await ex.client.get_workflow_handle(parent_id).result()

        assert _sleep_processes(seconds) == []  # killed before the composite reported cancelled
        await _assert_children_stopped(ex, projection, parent_id)


async def test_cancelling_one_step_fails_a_fail_fast_composite(time_skipping_env, composite_settings):
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        parent_id = await ex.execute_tool_async(ExecutionRequest(tool_id="test-parallel-sleep"))
        await wait_until_running(projection, parent_id, ["left", "right"])
        await ex.cancel_execution(f"{parent_id}.left")
        with pytest.raises(WorkflowFailureError):
            await ex.client.get_workflow_handle(parent_id).result()
        result = await ex.get_execution_result(parent_id)
        assert result.status is ExecutionStatus.FAILED
        assert result.error is not None and "failed: step 'left' cancelled" in result.error.message
        assert {name: entry["status"] for name, entry in result.output["steps"].items()} == {
            "left": "cancelled",
            "right": "cancelled",
            "never": "skipped",
        }
        await _assert_children_stopped(ex, projection, parent_id)
