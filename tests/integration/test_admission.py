"""Admission control: STEPFLOW_SCHEDULER_QUEUE_SIZE refuses new executions while Temporal's backlog is full."""

from __future__ import annotations

import asyncio
import time

import pytest

from stepflow.config import SchedulerSettings
from stepflow.errors import ResourceLimitExceeded
from stepflow.models import ExecutionRequest
from stepflow.monitoring import queue_length
from tests.conftest import executor_for, running_worker
from worker.build import build_registry

pytestmark = pytest.mark.dev_server


async def test_a_full_backlog_refuses_new_executions_with_a_clear_error(dev_env, settings):
    settings = settings.model_copy(update={"scheduler": SchedulerSettings(queue_size=1)})
    async with executor_for(dev_env, settings) as executor:
        # the tools are registered, but no worker polls the task queue yet: the backlog grows
        await executor.projection.writer.upsert_tools([tool.info() for tool in build_registry(settings).all()])
        first = await executor.execute_tool_async(ExecutionRequest(tool_id="echo"))
        deadline = time.monotonic() + 20
        refused: ResourceLimitExceeded | None = None
        while refused is None and time.monotonic() < deadline:
            await asyncio.sleep(1.1)  # the backlog is read at most once a second
            try:
                await executor.execute_tool_async(ExecutionRequest(tool_id="echo"))
            except ResourceLimitExceeded as error:
                refused = error
        assert refused is not None, "a backlog at STEPFLOW_SCHEDULER_QUEUE_SIZE must refuse new executions"
        assert "STEPFLOW_SCHEDULER_QUEUE_SIZE=1" in refused.message
        # once a worker drained the queue (Temporal's backlog statistics lag a little), executions are admitted again
        async with running_worker(dev_env, settings):
            await dev_env.client.get_workflow_handle(first).result()
            admitted = None
            while admitted is None and time.monotonic() < deadline + 20:
                await asyncio.sleep(1.1)
                try:
                    admitted = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"n": 1}))
                except ResourceLimitExceeded:
                    continue
            assert admitted is not None and admitted.output == {"n": 1}


async def test_a_burst_of_starts_shares_one_backlog_reading_and_one_tool_lookup(dev_env, settings, monkeypatch):
    """200 concurrent starts read the backlog and the tool's row once each, not 200 times (the server would
    rate-limit the backlog reads: 'namespace rate limit exceeded')."""
    readings: list[str] = []

    async def counted_backlog(*args: object, **kwargs: object) -> int:
        readings.append("backlog")
        return await queue_length(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("starter.admission.queue_length", counted_backlog)
    async with executor_for(dev_env, settings) as executor, running_worker(dev_env, settings):
        get_tool = executor.projection.reader.get_tool

        async def counted_get_tool(tool_id: str) -> object:
            readings.append(tool_id)
            return await get_tool(tool_id)

        monkeypatch.setattr(executor.projection.reader, "get_tool", counted_get_tool)
        ids = await asyncio.gather(
            *(executor.execute_tool_async(ExecutionRequest(tool_id="echo", parameters={"i": i})) for i in range(200))
        )
        assert len(set(ids)) == 200
        assert sorted(readings) == ["backlog", "echo"]
        await asyncio.gather(*(dev_env.client.get_workflow_handle(i).result() for i in ids))
