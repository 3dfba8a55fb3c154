"""Invalid input is never retried: bad parameters, an unknown tool, limits above the cap, and a tool that
raises InvalidParameters or PermissionDenied all end after one try, whatever ``retry_count`` says.

The Executor refuses most bad requests before it starts anything (tests/integration/test_bad_input.py); the
worker checks every request again, so these tests start the workflow directly, as a client that skipped the
Executor's checks would.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from stepflow.config import Settings
from stepflow.contracts import ToolExecutionInput
from stepflow.errors import (
    ExecutorError,
    InvalidParameters,
    PermissionDenied,
    ResourceLimitExceeded,
    ToolNotFound,
    from_failure,
)
from stepflow.models import ExecutionOptions, ExecutionRequest, ExecutionStatus, ResourceLimits
from tests.conftest import executor_for, running_worker
from tests.workflows import probe_tools
from tests.workflows.timeskip import events, of_type, result_skipping_time, runtime_for
from workflows import ToolExecutionWorkflow

RETRIES = ExecutionOptions(retry_count=3, retry_delay=timedelta(minutes=5))


@pytest.mark.parametrize(
    ("request_", "kind", "mentions"),
    [
        (
            ExecutionRequest(tool_id="sleep", parameters={"seconds": "a while"}, options=RETRIES),
            InvalidParameters,
            "seconds",
        ),
        (
            ExecutionRequest(tool_id="flaky", parameters={"failures": 1, "extra": True}, options=RETRIES),
            InvalidParameters,
            "extra",
        ),
        (
            ExecutionRequest(
                tool_id="echo",
                options=RETRIES.model_copy(update={"resource_limits": ResourceLimits(memory_mb=10**9)}),
            ),
            ResourceLimitExceeded,
            "memory_mb",
        ),
        (
            ExecutionRequest(tool_id="echo", options=RETRIES.model_copy(update={"retry_count": 4})),
            InvalidParameters,
            "STEPFLOW_EXECUTOR_MAX_RETRY_COUNT",
        ),
    ],
    ids=["wrong-type", "unknown-field", "limit-above-cap", "retries-above-cap"],
)
async def test_invalid_request_fails_before_the_tool_runs(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    request_: ExecutionRequest,
    kind: type[ExecutorError],
    mentions: str,
) -> None:
    execution_id = f"exec-{uuid.uuid4()}"
    async with running_worker(time_skipping_env, settings) as projection:
        handle = await time_skipping_env.client.start_workflow(
            ToolExecutionWorkflow.run,
            ToolExecutionInput(
                execution_id=execution_id, request=request_, runtime=runtime_for(settings), kind="python"
            ),
            id=execution_id,
            task_queue=settings.temporal.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()  # a handle from env.client.start_workflow unlocks time by itself
        error = from_failure(failure.value)
        assert type(error) is kind and mentions in error.message
        (info,) = await projection.reader.list_executions()
        history = await events(handle)
        # validation is run_and_record's first step: it fails the one attempt before the tool runs
        (started,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        assert started.activity_task_started_event_attributes.attempt == 1, "an invalid request is not retried"
        assert of_type(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)
        messages = [line.message for line in await projection.reader.get_logs(info.execution_id)]
        assert messages[0].startswith("validation failed: ") and mentions in messages[0]
        assert not any(message.startswith("attempt ") for message in messages), "the tool must not run"
        row = await projection.reader.get_execution(info.execution_id)
        assert row is not None
        assert row.status == ExecutionStatus.FAILED
        assert row.error_message.startswith(f"{kind.kind}: ")
        assert mentions in row.error_message
        assert row.end_time is not None and row.duration_ms is not None


@pytest.mark.parametrize("kind", ["python", "composite"])
async def test_unknown_tool_in_the_workflow_fails_once_with_tool_not_found(
    time_skipping_env: WorkflowEnvironment, settings: Settings, kind: str
) -> None:
    """The Executor checks tools before starting; a workflow started directly still refuses an unknown tool."""
    execution_id = f"exec-{uuid.uuid4()}"
    async with running_worker(time_skipping_env, settings) as projection:
        handle = await time_skipping_env.client.start_workflow(
            ToolExecutionWorkflow.run,
            ToolExecutionInput(
                execution_id=execution_id,
                request=ExecutionRequest(tool_id="no-such-tool", options=RETRIES),
                runtime=runtime_for(settings),
                kind=kind,
            ),
            id=execution_id,
            task_queue=settings.temporal.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()  # a handle from env.client.start_workflow unlocks time by itself
        application: BaseException | None = failure.value.cause
        while application is not None and not isinstance(application, ApplicationError):
            application = getattr(application, "cause", None)
        assert isinstance(application, ApplicationError)
        assert application.type == "ToolNotFound" and application.non_retryable
        error = from_failure(failure.value)
        assert isinstance(error, ToolNotFound)
        assert "no-such-tool" in error.message and "echo" in error.message, "the message lists the known tools"

        history = await events(handle)
        started = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        # an atomic tool's one activity runs once; a composite is resolved by its prepare_execution local activity
        expected = [1] if kind == "python" else []
        assert [event.activity_task_started_event_attributes.attempt for event in started] == expected
        assert not of_type(history, EventType.EVENT_TYPE_TIMER_STARTED), "no retry backoff"
        # the tools table has no such id, so there is no row to write for it
        assert await projection.reader.get_execution(execution_id) is None


@pytest.mark.parametrize(
    ("tool_id", "kind"),
    [("probe-invalid", InvalidParameters), ("probe-denied", PermissionDenied)],
)
async def test_tool_raising_a_non_retryable_kind_runs_once_despite_retry_count(
    time_skipping_env: WorkflowEnvironment, settings: Settings, tool_id: str, kind: type[ExecutorError]
) -> None:
    settings = settings.model_copy(update={"tool_modules": [probe_tools.PROBE_MODULE]})
    async with (
        running_worker(time_skipping_env, settings) as projection,
        executor_for(time_skipping_env, settings) as executor,
    ):
        execution_id = await executor.execute_tool_async(ExecutionRequest(tool_id=tool_id, options=RETRIES))
        handle = time_skipping_env.client.get_workflow_handle(execution_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await result_skipping_time(time_skipping_env, handle)
        error = from_failure(failure.value)
        assert type(error) is kind
        assert tool_id in error.message

        assert probe_tools.CALLS[execution_id] == 1
        history = await events(handle)
        (started,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        assert started.activity_task_started_event_attributes.attempt == 1
        (failed,) = of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
        info = failed.activity_task_failed_event_attributes.failure.application_failure_info
        assert info.type == kind.kind and info.non_retryable

        row = await projection.reader.get_execution(execution_id)
        assert row is not None
        assert row.status == ExecutionStatus.FAILED
        assert row.error_message.startswith(f"{kind.kind}: {tool_id}")
