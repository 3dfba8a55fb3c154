"""execution_logs and execution_metrics rows for completed, retried, failed, timed-out and cancelled executions."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from stepflow.errors import ExecutionCancelled, ExecutionFailed, TimeoutExceeded, from_failure
from stepflow.models import ExecutionFilter, ExecutionOptions, ExecutionRequest, ExecutionStatus, LogLevel, MetricFilter
from tests.conftest import executor_for, make_settings, running_worker

pytestmark = pytest.mark.dev_server


def _request(tool_id: str, parameters: dict[str, Any], **options: Any) -> ExecutionRequest:
    return ExecutionRequest(tool_id=tool_id, parameters=parameters, options=ExecutionOptions(**options))


async def _metrics(executor, execution_id: str) -> dict[str, tuple[float, str | None]]:
    rows = await executor.get_metric_rows(MetricFilter(execution_id=execution_id))
    return {row.name: (row.value, row.unit) for row in rows}


async def _settled_logs(executor, execution_id: str, count: int):
    """The attempt's own lines may land after the terminal line (the activity flushes them as it stops)."""
    for _ in range(50):
        logs = await executor.get_logs(execution_id)
        if len(logs) >= count:
            return logs
        await asyncio.sleep(0.1)
    return await executor.get_logs(execution_id)


async def test_completed_and_retried_and_failed(dev_env, tmp_path, db_url):
    settings = make_settings(tmp_path, database_url=db_url)
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        ok = await executor.execute_tool(_request("echo", {"m": 1}))
        logs = await executor.get_logs(ok.execution_id)
        assert [line.message for line in logs] == ["validated", "attempt 1 started", "echoing", "completed"]
        echoing = logs[2]
        assert echoing.level is LogLevel.INFO
        assert echoing.metadata["keys"] == ["m"]
        assert echoing.metadata["attempt"] == 1
        assert echoing.metadata["tool_id"] == "echo"
        assert echoing.metadata["version"] == "1.0.0"
        metrics = await _metrics(executor, ok.execution_id)
        assert metrics["attempts"] == (1.0, "count")
        assert metrics["output_bytes"] == (float(len('{"m":1}')), "bytes")
        assert metrics["duration_ms"][1] == "ms"
        assert metrics["queue_wait_ms"][0] >= 0
        row = await executor.projection.reader.get_execution(ok.execution_id)
        assert row is not None
        assert metrics["duration_ms"][0] == row.duration_ms

        retried = await executor.execute_tool(
            _request("flaky", {"failures": 2}, retry_count=3, retry_delay=timedelta(milliseconds=50))
        )
        messages = [line.message for line in await executor.get_logs(retried.execution_id)]
        assert messages == [
            "validated",
            "attempt 1 started",
            "failing on purpose",
            "attempt 1 failed: ExecutionFailed: flaky: attempt 1 of 2 planned failures; next retry in 50 ms",
            "attempt 2 started",
            "failing on purpose",
            "attempt 2 failed: ExecutionFailed: flaky: attempt 2 of 2 planned failures; next retry in 100 ms",
            "attempt 3 started",
            "completed",
        ]
        assert (await _metrics(executor, retried.execution_id))["attempts"] == (3.0, "count")

        with pytest.raises(ExecutionFailed):
            await executor.execute_tool(_request("fail", {"message": "boom"}))
        failed = (await executor.list_executions(ExecutionFilter(tool_id="fail")))[0]
        assert failed.status is ExecutionStatus.FAILED
        messages = [line.message for line in await executor.get_logs(failed.execution_id)]
        assert messages == [
            "validated",
            "attempt 1 started",
            "failing",
            "attempt 1 failed: ExecutionFailed: boom; no retries left",
            "failed: ExecutionFailed: boom",
        ]
        assert "output_bytes" not in await _metrics(executor, failed.execution_id)


async def test_logging_level_filters_lines(dev_env, tmp_path):
    settings = make_settings(tmp_path)
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        with pytest.raises(ExecutionFailed):
            await executor.execute_tool(_request("fail", {"message": "quiet"}, logging_level=LogLevel.ERROR))
        [row] = await executor.list_executions()
        logs = await executor.get_logs(row.execution_id)
        assert [(line.level, line.message) for line in logs] == [
            (LogLevel.ERROR, "failing"),
            (LogLevel.ERROR, "failed: ExecutionFailed: quiet"),
        ]


async def test_timed_out_and_cancelled(dev_env, tmp_path):
    settings = make_settings(tmp_path)
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        with pytest.raises(TimeoutExceeded):
            await executor.execute_tool(_request("sleep", {"seconds": 30}, timeout=timedelta(seconds=1)))
        [timed_out] = await executor.list_executions()
        assert timed_out.status is ExecutionStatus.TIMED_OUT
        logs = await _settled_logs(executor, timed_out.execution_id, 4)
        messages = [line.message for line in logs]
        assert messages[:2] == ["validated", "attempt 1 started"]
        # The server times the attempt out and the workflow records "timed out" while the worker is still
        # stopping the tool, so the attempt's own line may come second.
        attempt_line, terminal_line = sorted(messages[2:], key=lambda m: not m.startswith("attempt"))
        assert attempt_line.startswith("attempt 1 failed: TimeoutExceeded") and attempt_line.endswith("no retries left")
        assert terminal_line.startswith("timed out: TimeoutExceeded")
        assert len(messages) == 4

        execution_id = await executor.execute_tool_async(_request("sleep", {"seconds": 30}))
        for _ in range(100):
            if (await executor.get_execution_status(execution_id)) is ExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await executor.cancel_execution(execution_id)
        with pytest.raises(ExecutionCancelled):
            await _result(executor, execution_id)
        logs = await _settled_logs(executor, execution_id, 4)
        assert [line.message for line in logs] == ["validated", "attempt 1 started", "cancel requested", "cancelled"]
        row = await executor.projection.reader.get_execution(execution_id)
        assert row is not None
        assert row.status == "cancelled"


async def _result(executor: Any, execution_id: str) -> None:
    try:
        await executor.client.get_workflow_handle(execution_id).result()
    except WorkflowFailureError as failure:
        raise from_failure(failure) from None
