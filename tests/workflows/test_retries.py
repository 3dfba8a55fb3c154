"""Retries follow the request: ``retry_count`` extra attempts, ``retry_delay`` before the first retry
(doubling after), defaulted by configuration; a ``retry_count`` above ``STEPFLOW_EXECUTOR_MAX_RETRY_COUNT`` is
refused before anything starts. Checked on the workflow history, where the time-skipping server stamps
virtual times, so ten-minute delays take milliseconds.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from stepflow.config import Settings
from stepflow.errors import ExecutionFailed, InvalidParameters, from_failure
from stepflow.models import ExecutionContext, ExecutionOptions, ExecutionRequest, ExecutionStatus
from stepflow.workflow_start import execution_id_for
from tests.conftest import executor_for, running_worker
from tests.workflows import probe_tools
from tests.workflows.timeskip import event_time, events, of_type, result_skipping_time, with_executor

MINUTE = timedelta(minutes=1)


async def test_flaky_tool_is_retried_after_the_requested_delay_then_completes(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    started = time.monotonic()
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        execution_id = await executor.execute_tool_async(
            ExecutionRequest(
                tool_id="flaky",
                parameters={"failures": 2},
                options=ExecutionOptions(retry_count=3, retry_delay=10 * MINUTE),
            )
        )
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        result = await result_skipping_time(time_skipping_env, handle)
        assert result["status"] == "completed"
        assert result["output"] == {"attempt": 3, "failures": 2}

        history = await events(handle)
        (scheduled,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        policy = scheduled.activity_task_scheduled_event_attributes.retry_policy
        assert policy.maximum_attempts == 4
        assert policy.initial_interval.ToTimedelta() == 10 * MINUTE
        assert policy.backoff_coefficient == 2.0
        (last_start,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        assert last_start.activity_task_started_event_attributes.attempt == 3
        # attempt 2 starts 10 minutes after attempt 1 failed, attempt 3 another 20 minutes later
        waited = event_time(last_start) - event_time(scheduled)
        assert 30 * MINUTE <= waited < 31 * MINUTE
        assert of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)

        row = await projection.reader.get_execution(execution_id)
        assert row is not None
        assert row.status == ExecutionStatus.COMPLETED
        assert row.result_data == {"attempt": 3, "failures": 2}
        assert row.error_message is None
        assert 30 * 60_000 <= row.duration_ms < 31 * 60_000
    assert time.monotonic() - started < 30, "the half hour must be virtual"


async def test_retries_above_the_configured_cap_are_refused_before_anything_starts(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    settings = with_executor(settings, max_retry_count=2)
    request = ExecutionRequest(
        tool_id="fail",
        parameters={"message": "x"},
        context=ExecutionContext(request_id=f"too-many-retries-{uuid.uuid4()}"),
        options=ExecutionOptions(retry_count=3),
    )
    async with executor_for(time_skipping_env, settings) as executor:
        with pytest.raises(InvalidParameters) as refused:
            await executor.execute_tool_async(request)
    message = refused.value.message
    assert "retry_count=3" in message and "maximum of 2" in message and "STEPFLOW_EXECUTOR_MAX_RETRY_COUNT" in message
    execution_id = execution_id_for(request.context.tenant_id, request.context.request_id)
    with pytest.raises(RPCError) as missing:
        await time_skipping_env.client.get_workflow_handle(execution_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND, "nothing was started"


async def test_retries_up_to_the_cap_use_the_default_delay_in_ms(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    settings = with_executor(settings, max_retry_count=2, retry_delay=120_000)
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        execution_id = await executor.execute_tool_async(
            ExecutionRequest(tool_id="fail", parameters={"message": "boom"}, options=ExecutionOptions(retry_count=2))
        )
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await result_skipping_time(time_skipping_env, handle)
        error = from_failure(failure.value)
        assert isinstance(error, ExecutionFailed)
        assert "boom" in error.message

        history = await events(handle)
        (scheduled,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        policy = scheduled.activity_task_scheduled_event_attributes.retry_policy
        assert policy.maximum_attempts == 3, "retry_count 2 (the cap) is 3 attempts"
        assert policy.initial_interval.ToTimedelta() == 2 * MINUTE
        (last_start,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        assert last_start.activity_task_started_event_attributes.attempt == 3
        assert 6 * MINUTE <= event_time(last_start) - event_time(scheduled) < 7 * MINUTE
        (failed,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
        assert failed.activity_task_failed_event_attributes.failure.application_failure_info.type == "ExecutionFailed"

        row = await projection.reader.get_execution(execution_id)
        assert row is not None
        assert row.status == ExecutionStatus.FAILED
        assert row.error_message == "ExecutionFailed: boom"
        assert row.end_time is not None and row.duration_ms >= 6 * 60_000


async def test_without_retry_count_a_failure_is_final_after_one_attempt(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        with pytest.raises(ExecutionFailed, match="once only"):
            await executor.execute_tool(ExecutionRequest(tool_id="fail", parameters={"message": "once only"}))
        (row,) = await executor.list_executions()
        history = await events(time_skipping_env.client.get_workflow_handle(row.execution_id))
        (last_start,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        assert last_start.activity_task_started_event_attributes.attempt == 1
        stored = await projection.reader.get_execution(row.execution_id)
        assert stored is not None and stored.status == ExecutionStatus.FAILED


async def test_a_tool_crashing_with_any_exception_is_an_execution_failure_and_retried(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    settings = settings.model_copy(update={"tool_modules": [probe_tools.PROBE_MODULE]})
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        execution_id = await executor.execute_tool_async(
            ExecutionRequest(tool_id="probe-crash", options=ExecutionOptions(retry_count=1, retry_delay=MINUTE))
        )
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await result_skipping_time(time_skipping_env, handle)
        error = from_failure(failure.value)
        assert isinstance(error, ExecutionFailed)
        assert error.message == "ValueError: probe-crash: attempt 2 hit a bug"
        assert probe_tools.CALLS[execution_id] == 2
        row = await projection.reader.get_execution(execution_id)
        assert row is not None
        assert row.status == ExecutionStatus.FAILED
        assert row.error_message == "ExecutionFailed: ValueError: probe-crash: attempt 2 hit a bug"
        # the worker is still there for the next execution
        result = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"after": "crash"}))
        assert result.output == {"after": "crash"}
