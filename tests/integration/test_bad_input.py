"""Bad input through the Executor: each case a typed error naming what was wrong, and nothing started.

The corpus (``REFUSED``) runs against an Executor on the dev server whose ``tools`` table is filled but whose
task queue has no worker: a refused request must not need one. Each case is given twice where the models can
refuse it: as plain data (``parse_request``, what the CLI and an API do) and as a request built without the
models' checks (``model_copy`` / ``model_construct``), which the Executor checks again. Afterwards Temporal's
visibility and the executions table of that task queue hold nothing, and a worker started there still runs
``echo``. Valid edge inputs (unicode, SQL metacharacters, control characters inside parameter strings, each
option at its limit) run on a worker and come back verbatim.
"""

from __future__ import annotations

import asyncio
import math
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import Settings, TemporalSettings
from stepflow.constraints import MAX_PARAMETERS_DEPTH, MAX_RETRY_DELAY, MAX_TIMEOUT
from stepflow.errors import (
    ExecutionNotFound,
    ExecutorError,
    InternalError,
    InvalidParameters,
    ResourceLimitExceeded,
    ToolNotFound,
)
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import (
    ExecutionContext,
    ExecutionFilter,
    ExecutionOptions,
    ExecutionRequest,
    ExecutionStatus,
    ResourceLimits,
    ToolInfo,
)
from stepflow.request_checks import parse_request
from stepflow.temporal import connect
from tests.conftest import executor_for, make_settings, running_worker
from worker.build import build_registry, running_projection

pytestmark = pytest.mark.dev_server

SQL = "'; DROP TABLE executions; --"
MIB = 1024 * 1024
RUN = uuid.uuid4().hex[:8]
"""Makes request ids unique to this run: the same (tenant, request id) is the same execution, server-wide."""


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class Bad:
    """One bad request: its fields over a valid echo request, the error kind and what its message must name."""

    raw: dict[str, Any]
    kind: type[ExecutorError]
    mentions: tuple[str, ...]
    constructible: bool = True
    """Whether the request can be built without the models' checks (an unknown field cannot)."""

    def request_data(self) -> dict[str, Any]:
        return {"tool_id": "echo", "parameters": {"message": "hi"}, **self.raw}


def bad(kind: type[ExecutorError], *mentions: str, constructible: bool = True, **raw: Any) -> Bad:
    return Bad(raw, kind, mentions, constructible)


def context(**fields: Any) -> dict[str, Any]:
    return {"context": fields}


def options(**fields: Any) -> dict[str, Any]:
    return {"options": fields}


def limits(**fields: Any) -> dict[str, Any]:
    return {"tool_id": "wc", "parameters": {"text": "x"}, "options": {"resource_limits": fields}}


IP, RL, TNF = InvalidParameters, ResourceLimitExceeded, ToolNotFound

REFUSED: dict[str, Bad] = {
    # tool id and version: the registry's pattern
    "tool-empty": bad(IP, "tool_id", "is not a tool id", tool_id=""),
    "tool-sql": bad(IP, "tool_id", "is not a tool id", tool_id=f"echo{SQL}"),
    "tool-control": bad(IP, "tool_id", tool_id="ech\x00o"),
    "tool-newline": bad(IP, "tool_id", tool_id="echo\n"),
    "tool-long": bad(IP, "tool_id", "201 characters", tool_id="e" * 201),
    "tool-unicode": bad(IP, "tool_id", tool_id="\u00e9cho"),
    "tool-unknown": bad(TNF, "no-such-tool", "stepflow tools", tool_id="no-such-tool"),
    "version-empty": bad(IP, "version", "is not a version", version=""),
    "version-sql": bad(IP, "version", version=f"1.0.0{SQL}"),
    "version-unknown": bad(TNF, "9.9.9", "1.0.0", version="9.9.9"),
    # who: tenant (a fairness key: ASCII), user, session, request, parent, environment
    "tenant-empty": bad(IP, "context.tenant_id", **context(tenant_id="")),
    "tenant-sql": bad(IP, "context.tenant_id", "is not a tenant id", **context(tenant_id=f"acme{SQL}")),
    "tenant-long": bad(IP, "context.tenant_id", **context(tenant_id="t" * 65)),
    "tenant-unicode": bad(IP, "context.tenant_id", **context(tenant_id="t\u00e9nant")),
    "tenant-tab": bad(IP, "context.tenant_id", **context(tenant_id="acme\t")),
    "user-empty": bad(IP, "context.user_id", "must not be empty", **context(user_id="")),
    "user-nul": bad(IP, "context.user_id", "U+0000", **context(user_id="ann\x00")),
    "user-newline": bad(IP, "context.user_id", "U+000A", **context(user_id="ann\nINFO fake log line")),
    "user-escape": bad(IP, "context.user_id", "U+001B", **context(user_id="ann\x1b[2J")),
    "user-bidi": bad(IP, "context.user_id", "U+202E", **context(user_id="\u202eeve")),
    "user-long": bad(IP, "context.user_id", "at most 200", **context(user_id="u" * 201)),
    "session-control": bad(IP, "context.session_id", "U+007F", **context(session_id="s\x7f")),
    "session-long": bad(IP, "context.session_id", "at most 200", **context(session_id="s" * 201)),
    "request-surrogate": bad(IP, "context.request_id", "U+DCFF", **context(request_id="r\udcff")),
    "request-long": bad(IP, "context.request_id", "at most 200", **context(request_id="r" * 201)),
    "parent-empty": bad(IP, "context.parent_execution_id", "must not be empty", **context(parent_execution_id="")),
    "parent-sql": bad(IP, "context.parent_execution_id", **context(parent_execution_id=f"exec-1{SQL}")),
    "parent-unknown": bad(IP, "exec-nowhere", "names no execution", **context(parent_execution_id="exec-nowhere")),
    "env-name": bad(IP, "context.environment", "variable name", **context(environment={"A B": "x"})),
    "env-nul": bad(IP, "context.environment", "NUL", **context(environment={"X": "a\x00b"})),
    "env-huge": bad(IP, "context.environment", "at most 65536", **context(environment={"X": "v" * 70_000})),
    # parameters: JSON, finite, valid Unicode, not too deep, not too big, and the tool's schema
    "params-nan": bad(IP, "parameters: x: nan", "NaN or Infinity", parameters={"x": math.nan}),
    "params-inf": bad(IP, "parameters: x[1]: inf", parameters={"x": [1, math.inf]}),
    "params-neg-inf": bad(IP, "parameters: x.y: -inf", parameters={"x": {"y": -math.inf}}),
    "params-deep-50000": bad(IP, "nested deeper than 64 levels", parameters={"x": nested(50_000)}),
    "params-deep-65": bad(IP, "nested deeper than 64 levels", parameters={"x": nested(MAX_PARAMETERS_DEPTH)}),
    "params-int-key": bad(IP, "a key that is not a string", parameters={"x": {1: "one"}}),
    "params-bytes": bad(IP, "type bytes is not JSON", parameters={"x": b"\xff"}),
    "params-set": bad(IP, "type set is not JSON", parameters={"x": {1, 2}}),
    "params-surrogate": bad(IP, "lone surrogate", parameters={"x": "\udcff"}),
    "params-5.5MB": bad(
        IP, "STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES", "maximum of 1048576", parameters={"x": "a" * (11 * MIB // 2)}
    ),
    "params-1MiB+1": bad(IP, "1048577 bytes", parameters={"x": "a" * (MIB + 1 - len('{"x":""}'))}),
    "schema-wrong-type": bad(IP, "parameters.failures", "'integer'", tool_id="flaky", parameters={"failures": "x"}),
    "schema-missing": bad(IP, "'seconds' is a required property", tool_id="sleep", parameters={}),
    "schema-minimum": bad(IP, "parameters.seconds", "minimum", tool_id="sleep", parameters={"seconds": -3}),
    "schema-maximum": bad(IP, "parameters.seconds", "maximum", tool_id="sleep", parameters={"seconds": 86_401}),
    "schema-extra": bad(IP, "'extra' was unexpected", tool_id="flaky", parameters={"failures": 0, "extra": 1}),
    "schema-command-type": bad(IP, "parameters.text", "'string'", tool_id="wc", parameters={"text": 3}),
    "schema-command-sql": bad(IP, SQL, tool_id="wc", parameters={"text": "x", SQL: 1}),
    # options: timeout, retry delay, retries, priority, level, limits
    "timeout-zero": bad(IP, "options.timeout", "more than 0", **options(timeout=0)),
    "timeout-negative": bad(IP, "options.timeout", **options(timeout=-1)),
    "timeout-inf": bad(IP, "options.timeout", "finite", **options(timeout=math.inf)),
    "timeout-nan": bad(IP, "options.timeout", "finite", **options(timeout=math.nan)),
    "timeout-1e300": bad(IP, "options.timeout", "at most 604800 seconds", **options(timeout=1e300)),
    "timeout-max+1": bad(IP, "options.timeout", **options(timeout=MAX_TIMEOUT.total_seconds() + 1)),
    "timeout-bool": bad(IP, "options.timeout", "not true or false", **options(timeout=True)),
    "timeout-text": bad(IP, "options.timeout", **options(timeout="soon")),
    "delay-negative": bad(IP, "options.retry_delay", "0 or more", **options(retry_delay=-0.001)),
    "delay-1e14": bad(IP, "options.retry_delay", "at most 3600 seconds", **options(retry_delay=1e14)),
    "delay-nan": bad(IP, "options.retry_delay", "finite", **options(retry_delay=math.nan)),
    "retries-negative": bad(IP, "options.retry_count", **options(retry_count=-1)),
    "retries-above-cap": bad(IP, "retry_count=4", "STEPFLOW_EXECUTOR_MAX_RETRY_COUNT", **options(retry_count=4)),
    "retries-huge": bad(IP, "STEPFLOW_EXECUTOR_MAX_RETRY_COUNT", **options(retry_count=10**30)),
    "priority-unknown": bad(IP, "options.priority", **options(priority="urgent")),
    "level-unknown": bad(IP, "options.logging_level", **options(logging_level="trace")),
    "limit-zero": bad(IP, "options.resource_limits.memory_mb", **limits(memory_mb=0)),
    "limit-memory": bad(RL, "memory_mb=1000000000", "STEPFLOW_EXECUTOR_MAX_MEMORY_MB", **limits(memory_mb=10**9)),
    "limit-cpu": bad(RL, "STEPFLOW_EXECUTOR_MAX_CPU_SECONDS", **limits(cpu_seconds=3601)),
    "limit-processes": bad(RL, "STEPFLOW_EXECUTOR_MAX_PROCESSES", **limits(max_processes=257)),
    "limit-output": bad(RL, "STEPFLOW_EXECUTOR_MAX_OUTPUT_BYTES", **limits(max_output_bytes=10**12)),
    # fields that do not exist
    "unknown-field": bad(IP, "tool: Extra inputs are not permitted", constructible=False, tool="echo"),
    "unknown-option": bad(IP, "options.retries", constructible=False, **options(retries=3)),
}


def unchecked(data: dict[str, Any]) -> ExecutionRequest:
    """The request ``data`` describes, built without the models' checks (as ``model_copy(update=...)`` does)."""
    raw_options = dict(data.get("options", {}))
    resource_limits = ResourceLimits.model_construct(
        **{**ResourceLimits().model_dump(), **raw_options.pop("resource_limits", {})}
    )
    context = ExecutionContext.model_construct(**{**ExecutionContext().model_dump(), **data.get("context", {})})
    request_options = ExecutionOptions.model_construct(
        **{**ExecutionOptions().model_dump(), **raw_options, "resource_limits": resource_limits}
    )
    return ExecutionRequest.model_construct(
        **{**data, "version": data.get("version"), "context": context, "options": request_options}
    )


@dataclass
class Refusing:
    """An Executor on a task queue with no worker, whose tools table lists the built-in tools."""

    executor: Executor
    settings: Settings


@pytest.fixture(scope="module")
async def refusing(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Refusing]:
    settings = make_settings(tmp_path_factory.mktemp("refusing"))
    async with running_projection(settings, build_registry(settings)), executor_for(dev_env, settings) as executor:
        yield Refusing(executor, settings)


async def visible(env: WorkflowEnvironment, task_queue: str) -> list[str]:
    return [execution.id async for execution in env.client.list_workflows(f'TaskQueue="{task_queue}"')]


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
async def test_a_bad_request_is_refused_before_anything_starts(refusing: Refusing, case: Bad) -> None:
    data = case.request_data()
    try:
        request: ExecutionRequest | None = ExecutionRequest.model_validate(data)
    except ValidationError:
        request = None
    if request is None:  # the models refuse it: as plain data, and again in the Executor when built without them
        assert case.kind is InvalidParameters
        with pytest.raises(InvalidParameters) as parsed:
            parse_request(data)
        for text in case.mentions:
            assert text in parsed.value.message
        request = unchecked(data) if case.constructible else None
    if request is not None:
        with pytest.raises(ExecutorError) as error:
            await refusing.executor.execute_tool_async(request)
        assert type(error.value) is case.kind, error.value
        for text in case.mentions:
            assert text in error.value.message, error.value.message
    assert await refusing.executor.list_executions() == []


BAD_IDS = {
    "empty": ("", "must not be empty"),
    "space": ("exec 1", "is not an execution id"),
    "nul": ("exec-1\x00", "is not an execution id"),
    "newline": ("exec-1\n", "is not an execution id"),
    "long": ("e" * 1001, "is not an execution id"),
    "sql": (f"exec-1{SQL}", "is not an execution id"),
    "path": ("../../etc/passwd", "is not an execution id"),
}
READS = ("get_execution_status", "get_execution_result", "get_execution_progress", "cancel_execution", "get_logs")


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize(("execution_id", "says"), BAD_IDS.values(), ids=BAD_IDS.keys())
async def test_a_malformed_execution_id_is_invalid_parameters(
    refusing: Refusing, read: str, execution_id: str, says: str
) -> None:
    with pytest.raises(InvalidParameters) as error:
        await getattr(refusing.executor, read)(execution_id)
    assert type(error.value) is InvalidParameters and says in error.value.message


@pytest.mark.parametrize("read", ["get_execution_status", "get_execution_result", "cancel_execution"])
async def test_a_well_formed_unknown_execution_id_is_not_found(refusing: Refusing, read: str) -> None:
    with pytest.raises(ExecutionNotFound, match="no execution with id 'exec-00000000"):
        await getattr(refusing.executor, read)("exec-00000000-0000-0000-0000-000000000000")


async def test_nothing_was_started_and_a_worker_there_still_runs_echo(
    dev_env: WorkflowEnvironment, refusing: Refusing
) -> None:
    """Runs after the corpus (pytest keeps the file's order): Temporal and SQL saw none of it."""
    queue = refusing.settings.temporal.task_queue
    assert await visible(dev_env, queue) == []
    assert await refusing.executor.list_executions() == []
    async with running_worker(dev_env, refusing.settings):
        result = await refusing.executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"still": "alive"}))
    assert (result.status, result.output) == (ExecutionStatus.COMPLETED, {"still": "alive"})
    for _ in range(100):  # visibility lags the start a little: it does list what was started
        if await visible(dev_env, queue):
            break
        await asyncio.sleep(0.1)
    assert await visible(dev_env, queue) == [result.execution_id]


# --- valid edge inputs run, and come back as they were sent ------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "unicode": {"parameters": {"text": "h\u00e9llo \U0001f389 \u4e2d\u6587 \u05e2\u05d1\u05e8\u05d9\u05ea \u202e"}},
    "sql-everywhere": {
        "parameters": {SQL: SQL, "q": "' OR '1'='1"},
        "context": {"user_id": f"o'brien{SQL}", "session_id": 'x"; DELETE FROM tools; --', "request_id": SQL + RUN},
    },
    "control-in-strings": {"parameters": {"text": "nul\x00 esc\x1b[31m tab\t new\nline \x7f"}},
    "numbers": {"parameters": {"big": 2**70, "small": -(2**70), "float": 1.5e308, "tiny": 5e-324, "zero": -0.0}},
    "deep-64": {"parameters": {"x": nested(MAX_PARAMETERS_DEPTH - 1)}},
    "options-at-limits": {
        "options": {"timeout": MAX_TIMEOUT, "retry_delay": MAX_RETRY_DELAY, "retry_count": 3, "priority": "low"}
    },
    "lax-number": {"tool_id": "sleep", "parameters": {"seconds": "0.01"}},
    "lax-integer": {"tool_id": "flaky", "parameters": {"failures": "0"}},
    "environment": {"context": {"environment": {"LANG": "C.UTF-8", "QUOTE": SQL}}},
    "almost-1MiB": {"parameters": {"x": "a" * (MIB - 100)}},
}


@pytest.fixture(scope="module")
async def accepting(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Executor]:
    settings = make_settings(tmp_path_factory.mktemp("accepting"))
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        yield executor


@pytest.mark.parametrize("data", VALID.values(), ids=VALID.keys())
async def test_a_valid_edge_input_runs_and_comes_back_verbatim(accepting: Executor, data: dict[str, Any]) -> None:
    request = ExecutionRequest.model_validate({"tool_id": "echo", **data})
    result = await accepting.execute_tool(request)
    assert result.status is ExecutionStatus.COMPLETED, result
    if request.tool_id == "echo":
        assert result.output == request.parameters
    rows = await accepting.list_executions(ExecutionFilter(user_id=request.context.user_id, limit=10_000))
    row = next(row for row in rows if row.execution_id == result.execution_id)
    assert (row.status, row.user_id, row.session_id) == (
        ExecutionStatus.COMPLETED,
        request.context.user_id,
        request.context.session_id,
    )


# --- beyond requests ---------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unreachable_temporal_says_how_to_start_a_server(tmp_path: Path) -> None:
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
