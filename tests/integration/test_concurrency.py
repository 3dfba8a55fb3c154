"""Fifty executions at once: each gets exactly one row, and every row's status is the one Temporal reports.

Runs on SQLite, and on PostgreSQL too when ``STEPFLOW_TEST_POSTGRES_URL`` is set.

Prints the throughput seen (run with ``pytest -s`` to read it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest

from starter.executor import Executor
from stepflow.errors import ExecutionFailed
from stepflow.models import ExecutionContext, ExecutionFilter, ExecutionOptions, ExecutionRequest, ExecutionStatus
from stepflow.temporal_state import live_status
from stepflow.workflow_start import execution_id_for
from tests.workflows import probe_tools

pytestmark = pytest.mark.dev_server

CONCURRENCY = 50


def _request(run: str, index: int) -> ExecutionRequest:
    """Mostly counted successes, some permanent failures, some that succeed on their second attempt."""
    context = ExecutionContext(
        tenant_id=f"tenant-{index % 3}", user_id=f"user-{index % 7}", request_id=f"{run}-{index}"
    )
    if index % 10 == 3:
        return ExecutionRequest(tool_id="fail", parameters={"message": f"no {index}"}, context=context)
    if index % 10 == 7:
        return ExecutionRequest(
            tool_id="flaky",
            parameters={"failures": 1},
            context=context,
            options=ExecutionOptions(retry_count=1, retry_delay=timedelta(milliseconds=10)),
        )
    return ExecutionRequest(tool_id="probe-count", parameters={"index": index}, context=context)


async def _run(executor: Executor, run: str, index: int) -> tuple[str, ExecutionStatus]:
    request = _request(run, index)
    execution_id = execution_id_for(request.context.tenant_id, request.context.request_id)
    try:
        result = await executor.execute_tool(request)
    except ExecutionFailed:
        return execution_id, ExecutionStatus.FAILED
    assert result.execution_id == execution_id
    return execution_id, result.status


async def test_fifty_concurrent_executions_one_row_each_matching_temporal(db_executor: Executor) -> None:
    executor = db_executor
    run = uuid.uuid4().hex  # request ids (hence execution ids) unique to this run on the shared server
    started = time.monotonic()
    outcomes = await asyncio.gather(*(_run(executor, run, index) for index in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    rate = CONCURRENCY / elapsed
    backend = executor.projection.engine.dialect.name
    print(f"\n{CONCURRENCY} concurrent executions on {backend} in {elapsed:.2f} s: {rate:.1f} executions/s")

    statuses = Counter(status for _, status in outcomes)
    assert statuses == {ExecutionStatus.COMPLETED: 45, ExecutionStatus.FAILED: 5}

    rows = await executor.list_executions(ExecutionFilter(limit=1000))
    assert len(rows) == CONCURRENCY
    ids = [row.execution_id for row in rows]
    assert len(set(ids)) == CONCURRENCY, "one row per execution"
    assert set(ids) == {execution_id for execution_id, _ in outcomes}
    expected = dict(outcomes)

    descriptions = await asyncio.gather(*(executor.client.get_workflow_handle(i).describe() for i in ids))
    for row, description in zip(rows, descriptions, strict=True):
        assert row.status is live_status(description), row.execution_id
        assert row.status is expected[row.execution_id]
        assert row.end_time is not None and row.duration_ms is not None
    by_tool = Counter((row.tool_id, row.status) for row in rows)
    assert by_tool == {
        ("probe-count", ExecutionStatus.COMPLETED): 40,
        ("flaky", ExecutionStatus.COMPLETED): 5,
        ("fail", ExecutionStatus.FAILED): 5,
    }
    counted = [row.execution_id for row in rows if row.tool_id == "probe-count"]
    assert all(probe_tools.CALLS[execution_id] == 1 for execution_id in counted), "each tool ran once"
