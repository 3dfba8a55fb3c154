"""Helpers for workflow tests on the time-skipping server: unlocking virtual time, reading histories.

The time-skipping test server counts locks on its virtual clock: the client holds one, and every activity
task in flight holds one more. Time only skips when no lock is held. So:

- while a handle's result is awaited inside :func:`time_unlocked`, time skips over timers and retry backoff
  but not while a tool is running (its activity holds a lock);
- :func:`advance` moves the clock by a fixed amount even while a tool runs, which is how a one-hour timeout
  fires in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from stepflow.config import Settings
from stepflow.contracts import WorkflowRuntimeOptions


@asynccontextmanager
async def time_unlocked(env: WorkflowEnvironment) -> AsyncIterator[None]:
    """Release the client's lock on the virtual clock for the block."""
    await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        yield
    finally:
        await env.client.test_service.lock_time_skipping(LockTimeSkippingRequest())


async def result_skipping_time(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]) -> Any:
    """Await the workflow's result, letting virtual time skip over timers and retry backoff.

    For handles from ``client.get_workflow_handle`` (as the Executor uses). A handle returned by
    ``env.client.start_workflow`` already unlocks time in ``result()``: unlocking twice would also release
    the lock the server holds during a workflow task, and the task would time out in virtual time.
    """
    async with time_unlocked(env):
        return await handle.result()


async def advance(env: WorkflowEnvironment, duration: timedelta) -> None:
    """Move virtual time forward by ``duration``, even while an activity runs."""
    async with time_unlocked(env):
        await env.sleep(duration)


async def wait_until(check: Callable[[], Any], *, within: float = 15.0, what: str = "condition") -> Any:
    """Poll an async ``check`` (real time) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def tool_started(handle: WorkflowHandle[Any, Any]) -> bool:
    """True once the run_tool activity has been picked up by the worker."""
    description = await handle.describe()
    return any(
        pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for pending in description.raw_description.pending_activities
    )


async def events(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return list((await handle.fetch_history()).events)


def of_type(history: list[HistoryEvent], event_type: EventType.ValueType) -> list[HistoryEvent]:
    return [event for event in history if event.event_type == event_type]


def event_time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime()


def runtime_for(settings: Settings) -> WorkflowRuntimeOptions:
    """The engine options the Executor would send, for starting the workflow directly."""
    executor = settings.executor
    return WorkflowRuntimeOptions(
        default_timeout=executor.default_timeout_delta,
        default_retry_delay=executor.retry_delay_delta,
        max_retry_count=executor.max_retry_count,
        heartbeat_timeout=executor.heartbeat_timeout_delta,
        cancel_grace=executor.cancel_grace_delta,
    )


def with_executor(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with some ``STEPFLOW_EXECUTOR_*`` values changed."""
    return settings.model_copy(update={"executor": settings.executor.model_copy(update=changes)})
