"""Bad input: each is a clear, typed error, and the worker that saw it goes on running the next execution.

Unknown tool, unknown version and parameters failing the schema go through the Executor to a real worker
on the dev server; a negative timeout is refused by the model before anything starts; an unreachable
Temporal address says how to start a server.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowFailureError

from starter.executor import Executor
from stepflow.config import TemporalSettings
from stepflow.errors import ExecutorError, InternalError, InvalidParameters, ToolNotFound, from_failure
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import ExecutionOptions, ExecutionRequest, ExecutionStatus, ToolInfo
from stepflow.temporal import connect
from tests.conftest import make_settings

pytestmark = pytest.mark.dev_server


async def assert_worker_still_runs_echo(executor: Executor) -> None:
    result = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"still": "alive"}))
    assert result.status is ExecutionStatus.COMPLETED
    assert result.output == {"still": "alive"}


@pytest.mark.parametrize(
    ("request_", "kind", "mentions", "has_row"),
    [
        (ExecutionRequest(tool_id="no-such-tool"), ToolNotFound, ["no-such-tool", "stepflow tools"], False),
        (ExecutionRequest(tool_id="echo", version="9.9.9"), ToolNotFound, ["9.9.9", "1.0.0"], False),
        (
            ExecutionRequest(tool_id="sleep", parameters={"seconds": -3}),
            InvalidParameters,
            ["seconds", "greater than or equal to 0"],
            True,
        ),
        (ExecutionRequest(tool_id="sleep", parameters={}), InvalidParameters, ["seconds", "required"], True),
        (
            ExecutionRequest(tool_id="flaky", parameters={"failures": "many"}),
            InvalidParameters,
            ["failures", "integer"],
            True,
        ),
    ],
    ids=["unknown-tool", "unknown-version", "below-minimum", "missing", "wrong-type"],
)
async def test_bad_request_is_a_typed_error_and_the_worker_keeps_running(
    executor: Executor,
    request_: ExecutionRequest,
    kind: type[ExecutorError],
    mentions: list[str],
    has_row: bool,
) -> None:
    with pytest.raises(kind) as error:
        await executor.execute_tool(request_)
    assert type(error.value) is kind
    for text in mentions:
        assert text in error.value.message

    rows = await executor.list_executions()
    if has_row:
        (row,) = rows
        assert row.status is ExecutionStatus.FAILED
        assert row.error_message is not None and row.error_message.startswith(f"{kind.kind}: ")
        result = await executor.get_execution_result(row.execution_id)
        assert result.error is not None and result.error.type == kind.kind
    else:
        assert rows == [], "an unknown tool starts nothing"

    await assert_worker_still_runs_echo(executor)


async def test_bad_input_via_execute_tool_async_fails_the_same_way(executor: Executor) -> None:
    with pytest.raises(ToolNotFound):
        await executor.execute_tool_async(ExecutionRequest(tool_id="no-such-tool"))
    execution_id = await executor.execute_tool_async(ExecutionRequest(tool_id="sleep", parameters={"seconds": "x"}))
    with pytest.raises(WorkflowFailureError) as failure:
        await executor.client.get_workflow_handle(execution_id).result()
    error = from_failure(failure.value)
    assert isinstance(error, InvalidParameters) and "seconds" in error.message
    assert await executor.get_execution_status(execution_id) is ExecutionStatus.FAILED
    await assert_worker_still_runs_echo(executor)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": timedelta(seconds=-1)},
        {"timeout": timedelta(0)},
        {"timeout": -5},
    ],
)
def test_non_positive_timeout_is_refused_by_the_model(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        ExecutionOptions(**options)
    with pytest.raises(ValidationError, match="timeout"):
        ExecutionRequest.model_validate({"tool_id": "echo", "options": options})


@pytest.mark.parametrize("options", [{"retry_count": -1}, {"retry_delay": timedelta(seconds=-1)}])
def test_negative_retries_are_refused_by_the_model(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(options))):
        ExecutionOptions(**options)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unreachable_temporal_says_how_to_start_a_server(tmp_path: Any) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(InternalError) as error:
        await connect(TemporalSettings(address=address))
    assert address in error.value.message
    assert "stepflow server" in error.value.message
    assert "STEPFLOW_TEMPORAL_ADDRESS" in error.value.message

    settings = make_settings(tmp_path).model_copy(update={"temporal": TemporalSettings(address=address)})
    with pytest.raises(InternalError, match="stepflow server"):
        await Executor.connect(settings, principal=LOCAL_ADMIN)


async def test_a_tool_or_version_registered_after_a_miss_is_found_at_once(executor: Executor) -> None:
    """The Executor remembers tools it found, never tools or versions it did not find."""
    with pytest.raises(ToolNotFound):
        await executor.execute_tool_async(ExecutionRequest(tool_id="late-tool"))
    await executor.execute_tool(ExecutionRequest(tool_id="echo"))  # echo 1.0.0 is now remembered
    with pytest.raises(ToolNotFound):
        await executor.execute_tool_async(ExecutionRequest(tool_id="echo", version="2.0.0"))
    # a worker registering them (what `stepflow worker` does at start-up) makes them known immediately
    await executor.projection.writer.upsert_tools(
        [ToolInfo(id="late-tool", version="1.0.0"), ToolInfo(id="echo", version="2.0.0")]
    )
    assert await executor.execute_tool_async(ExecutionRequest(tool_id="late-tool"))
    assert await executor.execute_tool_async(ExecutionRequest(tool_id="echo", version="2.0.0"))
