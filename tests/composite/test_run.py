"""Composite tools end to end on the time-skipping server: outputs, rows, parallelism, failure policies."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from stepflow.errors import ExecutionFailed
from stepflow.models import ExecutionFilter, ExecutionOptions, ExecutionRequest, ExecutionStatus, Priority
from tests.composite.conftest import children_of, row_of
from tests.conftest import executor_for, running_worker


async def test_diamond_output_rows_and_parallel_steps(time_skipping_env, composite_settings):
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        request = ExecutionRequest(tool_id="test-diamond", parameters={"text": "hi", "seconds": 1})
        request.context.tenant_id = "acme"
        request.context.user_id = "ada"
        request.context.session_id = "s-1"
        result = await ex.execute_tool(request)

        assert result.status is ExecutionStatus.COMPLETED
        assert result.output == {
            "a": {"text": "hi", "seconds": 1.0},
            "b": {"slept": 1.0},
            "c": {"slept": 1.0},
            "d": {"b": {"slept": 1.0}, "c": 1.0, "label": "hi: 1.0s"},
        }
        parent = await row_of(projection, result.execution_id)
        assert parent.status == "completed" and parent.parent_execution_id is None
        assert parent.result_data == result.output
        rows = await children_of(projection, result.execution_id)
        assert sorted(rows) == ["a", "b", "c", "d"]
        for row in rows.values():
            assert row.status is ExecutionStatus.COMPLETED
            assert (row.tenant_id, row.user_id, row.session_id) == ("acme", "ada", "s-1")
        b, c, d = rows["b"], rows["c"], rows["d"]
        assert b.end_time and c.end_time and d.end_time
        # b and c ran at the same time (each sleeps 1 s), d only after both
        assert b.start_time < c.end_time and c.start_time < b.end_time
        assert d.start_time >= max(b.end_time, c.end_time)
        # per-step overrides reached the child's request
        c_request = (await row_of(projection, c.execution_id)).request_data
        assert c_request["options"]["retry_count"] == 1 and c_request["options"]["priority"] == "high"


async def test_fail_fast_cancels_the_running_sibling(time_skipping_env, composite_settings):
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        with pytest.raises(ExecutionFailed, match="step 'broken' failed") as failure:
            await ex.execute_tool(ExecutionRequest(tool_id="test-fail-fast"))
        assert "broken failed (ExecutionFailed: boom)" in str(failure.value)
        [parent] = await ex.list_executions(ExecutionFilter(tool_id="test-fail-fast"))
        parent_id = parent.execution_id
        rows = await children_of(projection, parent_id)
        assert rows["broken"].status is ExecutionStatus.FAILED
        assert rows["slow"].status is ExecutionStatus.CANCELLED
        assert "after" not in rows  # never started
        parent_row = await row_of(projection, parent_id)
        assert parent_row.status == "failed"
        steps = parent_row.result_data["steps"]
        assert steps["slow"]["status"] == "cancelled" and steps["after"]["status"] == "skipped"
        slow = await time_skipping_env.client.get_workflow_handle(rows["slow"].execution_id).describe()
        assert slow.status == WorkflowExecutionStatus.CANCELED
        assert not slow.raw_description.pending_activities


async def test_continue_runs_the_others_and_reports_every_step(time_skipping_env, composite_settings):
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        execution_id = await ex.execute_tool_async(ExecutionRequest(tool_id="test-continue"))
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        result = await ex.get_execution_result(execution_id)
        assert result.status is ExecutionStatus.FAILED
        assert result.error is not None and result.error.type == "ExecutionFailed"
        assert "step 'broken' failed" in result.error.message
        assert "slow completed" in result.error.message and "after-broken skipped" in result.error.message
        steps = (await row_of(projection, execution_id)).result_data["steps"]
        assert result.output == {"steps": steps}  # the report rides on the error's details too
        assert steps["slow"] == {
            "status": "completed",
            "execution_id": f"{execution_id}.slow",
            "output": {"slept": 1.0},
        }
        assert steps["after-slow"]["output"] == {"slept": 1.0}
        assert steps["broken"]["status"] == "failed" and steps["broken"]["error"]["message"] == "boom"
        assert steps["after-broken"]["status"] == "skipped"
        rows = await children_of(projection, execution_id)
        assert {name: row.status.value for name, row in rows.items()} == {
            "slow": "completed",
            "broken": "failed",
            "after-slow": "completed",
        }


async def test_a_composite_step_may_be_a_composite(time_skipping_env, composite_settings):
    async with (
        running_worker(time_skipping_env, composite_settings) as projection,
        executor_for(time_skipping_env, composite_settings) as ex,
    ):
        result = await ex.execute_tool(ExecutionRequest(tool_id="test-nested", parameters={"text": "deep"}))
        assert result.output == "deep: 0.0s"  # `output` picked one value out of the last step
        inner = f"{result.execution_id}.inner"
        assert set(await children_of(projection, result.execution_id)) == {"inner", "after"}
        grandchildren = await children_of(projection, inner)
        assert sorted(grandchildren) == ["a", "b", "c", "d"]
        assert {row.parent_execution_id for row in grandchildren.values()} == {inner}


@pytest.mark.dev_server
async def test_children_inherit_the_priority_unless_a_step_overrides_it(dev_env, composite_settings):
    """On the dev server (the time-skipping one reports no priorities): b inherits low, c asks for high."""
    async with running_worker(dev_env, composite_settings), executor_for(dev_env, composite_settings) as ex:
        request = ExecutionRequest(
            tool_id="test-diamond",
            parameters={"text": "p", "seconds": 0},
            options=ExecutionOptions(priority=Priority.LOW),
        )
        result = await ex.execute_tool(request)
        keys = {}
        for step in ("a", "b", "c"):
            described = await ex.client.get_workflow_handle(f"{result.execution_id}.{step}").describe()
            keys[step] = described.raw_description.workflow_execution_info.priority.priority_key
            assert described.raw_description.workflow_execution_info.priority.fairness_key == "default"
        assert keys == {"a": 5, "b": 5, "c": 2}  # low and high on the default five levels
