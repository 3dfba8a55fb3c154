"""A tool that runs too long ends ``timed_out`` after its timeout; a cancelled tool stops and ends ``cancelled``.

They run the real tools on a real worker against the time-skipping server: the one-hour timeout is reached by
advancing virtual time, so no real hour passes (the few seconds the test takes are the worker's graceful
shutdown waiting for the abandoned attempt, which only learns of the timeout at its next heartbeat).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from stepflow.config import Settings
from stepflow.errors import ExecutionCancelled, TimeoutExceeded, from_failure
from stepflow.models import ExecutionOptions, ExecutionRequest, ExecutionStatus
from stepflow.temporal_state import live_status
from tests.conftest import executor_for, running_worker
from tests.workflows.timeskip import (
    advance,
    event_time,
    events,
    of_type,
    result_skipping_time,
    tool_started,
    wait_until,
    with_executor,
)

HOUR = timedelta(hours=1)


async def test_one_hour_timeout_ends_timed_out_after_one_virtual_hour(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    # A heartbeat timeout longer than the jump, so the start-to-close timeout is the one that fires.
    settings = with_executor(settings, heartbeat_timeout=3 * 3600)
    started = time.monotonic()
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        execution_id = await executor.execute_tool_async(
            ExecutionRequest(tool_id="sleep", parameters={"seconds": 86_400}, options=ExecutionOptions(timeout=HOUR))
        )
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        await wait_until(lambda: tool_started(handle), what="the sleep tool to start")

        await advance(time_skipping_env, timedelta(minutes=59))
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING, "timed out before its timeout"
        assert live_status(description) is ExecutionStatus.RUNNING

        async def row_running() -> bool:
            row = await projection.reader.get_execution(execution_id)
            return row is not None and row.status == ExecutionStatus.RUNNING

        await wait_until(row_running, what="the row to show running")

        await advance(time_skipping_env, timedelta(minutes=2))
        with pytest.raises(WorkflowFailureError) as failure:
            await result_skipping_time(time_skipping_env, handle)
        error = from_failure(failure.value)
        assert isinstance(error, TimeoutExceeded)

        history = await events(handle)
        (timed_out,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT)
        timeout_info = timed_out.activity_task_timed_out_event_attributes.failure.timeout_failure_info
        assert timeout_info.timeout_type == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
        (scheduled,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        attributes = scheduled.activity_task_scheduled_event_attributes
        assert attributes.start_to_close_timeout.ToTimedelta() == HOUR
        assert HOUR <= event_time(timed_out) - event_time(scheduled) < HOUR + timedelta(minutes=1)

        assert live_status(await handle.describe()) is ExecutionStatus.TIMED_OUT
        row = await projection.reader.get_execution(execution_id)
        assert row is not None
        assert row.status == ExecutionStatus.TIMED_OUT
        assert row.error_message.startswith("TimeoutExceeded: ")
        assert row.end_time is not None
        # The clock was advanced by 59 + 2 minutes: the end lands after the hour, within that last step.
        assert HOUR <= row.end_time - row.start_time <= HOUR + timedelta(minutes=3)
        assert 3_600_000 <= row.duration_ms <= 3_780_000
        assert row.result_data is None

        result = await executor.get_execution_result(execution_id)
        assert result.status is ExecutionStatus.TIMED_OUT
        assert result.error is not None and result.error.type == "TimeoutExceeded"
    assert time.monotonic() - started < 30, "the hour must be virtual"


async def test_default_and_heartbeat_timeouts_come_from_config_in_seconds(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    settings = with_executor(settings, default_timeout=600, heartbeat_timeout=7)
    async with running_worker(time_skipping_env, settings), executor_for(time_skipping_env, settings) as executor:
        execution_id = await executor.execute_tool_async(ExecutionRequest(tool_id="echo", parameters={"a": 1}))
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        await handle.result()
        (scheduled,) = of_type(await events(handle), EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        attributes = scheduled.activity_task_scheduled_event_attributes
        assert attributes.start_to_close_timeout.ToTimedelta() == timedelta(seconds=600)
        assert attributes.heartbeat_timeout.ToTimedelta() == timedelta(seconds=7)


async def test_cancel_reaches_the_running_tool_and_ends_cancelled(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        execution_id = await executor.execute_tool_async(
            ExecutionRequest(tool_id="sleep", parameters={"seconds": 3600}, options=ExecutionOptions(retry_count=3))
        )
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        await wait_until(lambda: tool_started(handle), what="the sleep tool to start")

        await executor.cancel_execution(execution_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)
        assert isinstance(from_failure(failure.value), ExecutionCancelled)

        history = await events(handle)
        kinds = [event.event_type for event in history]
        # WAIT_CANCELLATION_COMPLETED: the tool acknowledged the cancel before the workflow ended.
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in kinds
        assert kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED) < kinds.index(
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED
        )
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED not in kinds, "a cancel is not retried"

        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.CANCELED
        assert live_status(description) is ExecutionStatus.CANCELLED
        row = await projection.reader.get_execution(execution_id)
        assert row is not None
        assert row.status == ExecutionStatus.CANCELLED
        assert row.error_message.startswith("ExecutionCancelled: ")
        assert row.end_time is not None and row.duration_ms is not None

        result = await executor.get_execution_result(execution_id)
        assert result.status is ExecutionStatus.CANCELLED
        assert result.error is not None and result.error.type == "ExecutionCancelled"


async def test_cancel_during_retry_backoff_ends_cancelled_without_another_attempt(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        execution_id = await executor.execute_tool_async(
            ExecutionRequest(
                tool_id="flaky",
                parameters={"failures": 5},
                options=ExecutionOptions(retry_count=3, retry_delay=timedelta(hours=1)),
            )
        )
        handle = time_skipping_env.client.get_workflow_handle(execution_id)

        async def backing_off() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            return bool(pending) and pending[0].attempt == 2

        await wait_until(backing_off, what="the first attempt to fail")
        await executor.cancel_execution(execution_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)

        history = await events(handle)
        assert not of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED), "no second attempt ran"
        assert of_type(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED)
        assert live_status(await handle.describe()) is ExecutionStatus.CANCELLED
        row = await projection.reader.get_execution(execution_id)
        assert row is not None and row.status == ExecutionStatus.CANCELLED
