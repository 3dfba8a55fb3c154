"""The Executor's six methods on the dev server: run, start, status with progress, cancel, result, list.

Every check that reads an execution also compares its SQL row with what Temporal says.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from starter.executor import Executor
from stepflow import search_attributes
from stepflow.errors import ExecutionFailed, ExecutionNotFound, InvalidParameters, PermissionDenied
from stepflow.identity import Principal, Role
from stepflow.models import (
    ExecutionContext,
    ExecutionFilter,
    ExecutionOptions,
    ExecutionRequest,
    ExecutionStatus,
    Priority,
)
from stepflow.temporal_state import live_status
from tests.workflows import probe_tools
from tests.workflows.timeskip import wait_until

pytestmark = pytest.mark.dev_server


async def assert_row_matches_temporal(executor: Executor, execution_id: str) -> Any:
    """The execution's one SQL row carries the status Temporal reports; returns the row."""
    row = await executor.projection.reader.get_execution(execution_id)
    assert row is not None, f"no row for {execution_id}"
    description = await executor.client.get_workflow_handle(execution_id).describe()
    assert ExecutionStatus(row.status) is live_status(description)
    return row


async def test_execute_tool_returns_the_completed_result_and_writes_the_row(executor: Executor) -> None:
    request = ExecutionRequest(
        tool_id="echo",
        parameters={"message": "hi", "n": [1, 2]},
        context=ExecutionContext(tenant_id="acme", user_id="ada", session_id="s-1"),
    )
    result = await executor.execute_tool(request)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.output == {"message": "hi", "n": [1, 2]}
    assert result.error is None
    metadata = result.metadata
    assert (metadata.tool_id, metadata.version, metadata.tenant_id, metadata.user_id, metadata.session_id) == (
        "echo",
        "1.0.0",
        "acme",
        "ada",
        "s-1",
    )
    assert result.timing.start_time is not None and result.timing.end_time is not None
    assert result.timing.duration_ms is not None and result.timing.duration_ms >= 0

    row = await assert_row_matches_temporal(executor, result.execution_id)
    assert row.status == "completed"
    assert row.result_data == {"message": "hi", "n": [1, 2]}
    assert row.error_message is None
    assert (row.tool_id, row.version, row.tenant_id, row.user_id, row.session_id) == (
        "echo",
        "1.0.0",
        "acme",
        "ada",
        "s-1",
    )
    assert row.end_time is not None and row.duration_ms is not None
    assert row.request_data["parameters"] == {"message": "hi", "n": [1, 2]}

    description = await executor.client.get_workflow_handle(result.execution_id).describe()
    found_by = {key.name: description.typed_search_attributes.get(key) for key in search_attributes.ALL_KEYS}
    assert found_by == {
        "StepflowToolId": "echo",
        "StepflowTenantId": "acme",
        "StepflowUserId": "ada",
        "StepflowStatus": "completed",
    }, "the Web UI filters on these"

    assert await executor.get_execution_status(result.execution_id) is ExecutionStatus.COMPLETED
    again = await executor.get_execution_result(result.execution_id)
    assert again.status is ExecutionStatus.COMPLETED
    assert again.output == result.output


async def test_failed_execution_raises_its_kind_and_its_result_carries_the_error(executor: Executor) -> None:
    with pytest.raises(ExecutionFailed, match="disk on fire"):
        await executor.execute_tool(ExecutionRequest(tool_id="fail", parameters={"message": "disk on fire"}))
    (info,) = await executor.list_executions()
    assert info.status is ExecutionStatus.FAILED
    result = await executor.get_execution_result(info.execution_id)
    assert result.status is ExecutionStatus.FAILED
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("ExecutionFailed", "disk on fire")
    row = await assert_row_matches_temporal(executor, info.execution_id)
    assert row.error_message == "ExecutionFailed: disk on fire"


async def test_retried_then_completed_on_the_dev_server(executor: Executor) -> None:
    result = await executor.execute_tool(
        ExecutionRequest(
            tool_id="flaky",
            parameters={"failures": 2},
            options=ExecutionOptions(retry_count=2, retry_delay=timedelta(milliseconds=50)),
        )
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert result.output == {"attempt": 3, "failures": 2}
    await assert_row_matches_temporal(executor, result.execution_id)


async def test_status_during_retry_backoff_shows_the_next_attempt_and_the_last_failure(executor: Executor) -> None:
    execution_id = await executor.execute_tool_async(
        ExecutionRequest(
            tool_id="flaky",
            parameters={"failures": 1},
            options=ExecutionOptions(retry_count=1, retry_delay=timedelta(seconds=3)),
        )
    )

    async def backing_off() -> Any:
        progress = await executor.get_execution_progress(execution_id)
        return progress if progress.last_failure else None

    progress = await wait_until(backing_off, what="the first attempt to fail")
    assert progress.attempt == 2
    assert progress.last_failure is not None and "attempt 1 of 1 planned failures" in progress.last_failure
    assert progress.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
    await executor.client.get_workflow_handle(execution_id).result()
    assert await executor.get_execution_status(execution_id) is ExecutionStatus.COMPLETED
    await assert_row_matches_temporal(executor, execution_id)


async def test_running_sleep_shows_attempt_and_progress_then_cancel_ends_it_cancelled(executor: Executor) -> None:
    execution_id = await executor.execute_tool_async(ExecutionRequest(tool_id="sleep", parameters={"seconds": 60}))
    assert execution_id.startswith("exec-")

    async def progress_reported() -> Any:
        progress = await executor.get_execution_progress(execution_id)
        return progress if progress.progress else None

    progress = await wait_until(progress_reported, what="the sleep tool's progress")
    assert progress.status is ExecutionStatus.RUNNING
    assert progress.attempt == 1
    assert progress.progress["of"] == 60
    assert 0 <= progress.progress["slept"] < 60
    assert await executor.get_execution_status(execution_id) is ExecutionStatus.RUNNING
    running = await executor.get_execution_result(execution_id)
    assert running.status is ExecutionStatus.RUNNING and running.output is None
    assert (running.metadata.tool_id, running.metadata.tenant_id) == ("sleep", "default")
    description = await executor.client.get_workflow_handle(execution_id).describe()
    # StepflowStatus is the end, set when there is one; until then the Web UI shows Temporal's "Running"
    assert description.typed_search_attributes.get(search_attributes.STATUS) is None
    assert description.typed_search_attributes.get(search_attributes.TOOL_ID) == "sleep"

    await executor.cancel_execution(execution_id)

    async def cancelled() -> bool:
        return await executor.get_execution_status(execution_id) is ExecutionStatus.CANCELLED

    await wait_until(cancelled, what="the execution to be cancelled")
    result = await executor.get_execution_result(execution_id)
    assert result.status is ExecutionStatus.CANCELLED
    assert result.error is not None and result.error.type == "ExecutionCancelled"
    assert result.metadata.tool_id == "sleep" and result.metadata.user_id == "anonymous"
    row = await assert_row_matches_temporal(executor, execution_id)
    assert row.status == "cancelled"
    assert row.duration_ms is not None and row.duration_ms < 30_000, "the tool stopped long before its 60 s"

    await executor.cancel_execution(execution_id)  # cancelling a finished execution changes nothing
    assert await executor.get_execution_status(execution_id) is ExecutionStatus.CANCELLED


async def test_list_executions_filters(executor: Executor) -> None:
    def request(tool_id: str, tenant: str, user: str, parent: str | None = None, **parameters: Any) -> ExecutionRequest:
        return ExecutionRequest(
            tool_id=tool_id,
            parameters=parameters,
            context=ExecutionContext(tenant_id=tenant, user_id=user, parent_execution_id=parent),
        )

    a = (await executor.execute_tool(request("echo", "t1", "u1", x=1))).execution_id
    b = (await executor.execute_tool(request("echo", "t2", "u2", x=2))).execution_id
    with pytest.raises(ExecutionFailed):
        await executor.execute_tool(request("fail", "t1", "u2"))
    (c_info,) = await executor.list_executions(ExecutionFilter(tool_id="fail"))
    c = c_info.execution_id
    d = (await executor.execute_tool(request("flaky", "t1", "u1", parent=a, failures=0))).execution_id

    async def ids(**fields: Any) -> list[str]:
        return [info.execution_id for info in await executor.list_executions(ExecutionFilter(**fields))]

    assert await ids() == [d, c, b, a], "newest first"
    assert await executor.list_executions() == await executor.list_executions(None)
    assert sorted(await ids(tool_id="echo")) == sorted([a, b])
    assert sorted(await ids(tenant_id="t1")) == sorted([a, c, d])
    assert sorted(await ids(user_id="u2")) == sorted([b, c])
    assert await ids(status=ExecutionStatus.FAILED) == [c]
    assert sorted(await ids(status=ExecutionStatus.COMPLETED)) == sorted([a, b, d])
    assert await ids(status=ExecutionStatus.RUNNING) == []
    assert await ids(parent_execution_id=a) == [d]
    assert sorted(await ids(tenant_id="t1", status=ExecutionStatus.COMPLETED)) == sorted([a, d])
    assert await ids(limit=2) == [d, c]
    assert await ids(started_after=c_info.start_time) == [d, c]
    assert await ids(started_before=c_info.start_time) == [b, a]
    assert await ids(started_after=c_info.start_time, started_before=c_info.start_time) == []
    assert await ids(tool_id="nothing-like-it") == []

    infos = {info.execution_id: info for info in await executor.list_executions()}
    assert infos[d].parent_execution_id == a
    assert (infos[c].error_message or "").startswith("ExecutionFailed: ")
    for execution_id in (a, b, c, d):
        await assert_row_matches_temporal(executor, execution_id)


async def test_same_request_id_in_the_same_tenant_runs_the_tool_once(executor: Executor) -> None:
    request_id = f"order-{uuid.uuid4()}"  # execution ids derive from it: unique on the shared server
    request = ExecutionRequest(
        tool_id="probe-count",
        parameters={"order": 42},
        context=ExecutionContext(tenant_id="acme", request_id=request_id),
    )
    first = await executor.execute_tool(request)
    second = await executor.execute_tool(request)
    assert second.execution_id == first.execution_id
    assert second.output == first.output == {"attempt": 1, "order": 42}
    assert await executor.execute_tool_async(request) == first.execution_id
    assert probe_tools.CALLS[first.execution_id] == 1

    other_tenant = request.model_copy(update={"context": ExecutionContext(tenant_id="globex", request_id=request_id)})
    third = await executor.execute_tool(other_tenant)
    assert third.execution_id != first.execution_id
    assert probe_tools.CALLS[third.execution_id] == 1
    rows = await executor.list_executions()
    assert sorted(info.execution_id for info in rows) == sorted([first.execution_id, third.execution_id])


async def test_concurrent_starts_of_one_request_id_share_one_execution(executor: Executor) -> None:
    request = ExecutionRequest(
        tool_id="probe-count", context=ExecutionContext(tenant_id="acme", request_id=f"burst-{uuid.uuid4()}")
    )
    ids = await asyncio.gather(*(executor.execute_tool_async(request) for _ in range(5)))
    assert len(set(ids)) == 1
    await executor.client.get_workflow_handle(ids[0]).result()
    assert probe_tools.CALLS[ids[0]] == 1
    (info,) = await executor.list_executions()
    assert info.execution_id == ids[0]
    assert info.status is ExecutionStatus.COMPLETED


async def test_another_tenants_execution_is_permission_denied(executor: Executor) -> None:
    mine = await executor.execute_tool(
        ExecutionRequest(tool_id="echo", context=ExecutionContext(tenant_id="acme"), parameters={"x": 1})
    )
    execution_id = mine.execution_id
    globex = executor.for_principal(Principal(tenant_id="globex", user_id="gus", role=Role.MEMBER))
    for call in (
        globex.get_execution_status,
        globex.get_execution_progress,
        globex.get_execution_result,
        globex.cancel_execution,
    ):
        with pytest.raises(PermissionDenied, match="another tenant"):
            await call(execution_id)
    acme = executor.for_principal(Principal(tenant_id="acme", user_id="ann", role=Role.VIEWER))
    assert await acme.get_execution_status(execution_id) is ExecutionStatus.COMPLETED
    assert (await acme.get_execution_result(execution_id)).output == {"x": 1}


async def test_unknown_execution_id_is_execution_not_found(executor: Executor) -> None:
    for call in (
        executor.get_execution_status("exec-does-not-exist"),
        executor.get_execution_progress("exec-does-not-exist"),
        executor.get_execution_result("exec-does-not-exist"),
        executor.cancel_execution("exec-does-not-exist"),
    ):
        with pytest.raises(ExecutionNotFound) as error:
            await call
        assert isinstance(error.value, InvalidParameters)
        assert error.value.kind == "InvalidParameters"
        assert "exec-does-not-exist" in error.value.message


@pytest.mark.parametrize(("priority", "key"), [(Priority.CRITICAL, 1), (Priority.LOW, 5)])
async def test_priority_and_tenant_reach_temporal_as_priority_and_fairness_keys(
    executor: Executor, priority: Priority, key: int
) -> None:
    result = await executor.execute_tool(
        ExecutionRequest(
            tool_id="echo",
            context=ExecutionContext(tenant_id="acme"),
            options=ExecutionOptions(priority=priority),
        )
    )
    history = await executor.client.get_workflow_handle(result.execution_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.priority.priority_key == key
    assert started.priority.fairness_key == "acme"
