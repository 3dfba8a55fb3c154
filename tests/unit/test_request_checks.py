"""The setting- and tool-dependent checks (stepflow/request_checks.py), without a server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from activities.validation import check_request
from stepflow.config import ExecutorSettings
from stepflow.errors import InvalidParameters, ResourceLimitExceeded
from stepflow.models import ExecutionOptions, ExecutionRequest, ResourceLimits, ToolInfo
from stepflow.registry import ToolRegistry
from stepflow.request_checks import (
    MAX_SCHEMA_PROBLEMS,
    check_caps,
    check_schema,
    checked_execution_id,
    parse_request,
    revalidated,
)
from stepflow.tools.builtin import FlakyParams, SleepParams
from stepflow.tools.loader import load_tool_file
from tests.conftest import make_settings
from worker.build import BUILTIN_TOOL_FILES, build_registry

CAPS = ExecutorSettings()


def request(parameters: dict[str, Any] | None = None, **options: Any) -> ExecutionRequest:
    return ExecutionRequest(tool_id="echo", parameters=parameters or {}, options=ExecutionOptions(**options))


def test_parameters_up_to_the_cap_pass_and_above_it_are_refused_naming_the_setting() -> None:
    caps = ExecutorSettings(max_parameters_bytes=100)
    check_caps(caps, request({"x": "a" * (100 - len('{"x":""}'))}))  # exactly 100 bytes of JSON
    with pytest.raises(InvalidParameters) as error:
        check_caps(caps, request({"x": "a" * (101 - len('{"x":""}'))}))
    assert "101 bytes" in error.value.message and "STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES" in error.value.message


def test_the_default_parameters_cap_is_one_mib_of_utf8() -> None:
    assert CAPS.max_parameters_bytes == 1024 * 1024
    with pytest.raises(InvalidParameters, match="maximum of 1048576"):
        check_caps(CAPS, request({"x": "é" * 524_288}))  # half a million characters, a MiB of UTF-8


def test_retry_count_above_the_cap_is_refused_not_capped() -> None:
    check_caps(CAPS, request(retry_count=CAPS.max_retry_count))
    for retries in (CAPS.max_retry_count + 1, 10**30):
        with pytest.raises(InvalidParameters) as error:
            check_caps(CAPS, request(retry_count=retries))
        assert f"retry_count={retries}" in error.value.message
        assert "STEPFLOW_EXECUTOR_MAX_RETRY_COUNT" in error.value.message


@pytest.mark.parametrize(
    ("limits", "setting"),
    [
        (ResourceLimits(memory_mb=4097), "STEPFLOW_EXECUTOR_MAX_MEMORY_MB"),
        (ResourceLimits(cpu_seconds=3601), "STEPFLOW_EXECUTOR_MAX_CPU_SECONDS"),
        (ResourceLimits(max_processes=257), "STEPFLOW_EXECUTOR_MAX_PROCESSES"),
        (ResourceLimits(max_output_bytes=10**12), "STEPFLOW_EXECUTOR_MAX_OUTPUT_BYTES"),
    ],
)
def test_limits_above_their_caps_are_resource_limit_exceeded(limits: ResourceLimits, setting: str) -> None:
    with pytest.raises(ResourceLimitExceeded, match=setting):
        check_caps(CAPS, request(resource_limits=limits))


def info(kind: str | None = "python", schema: dict[str, Any] | None = None, version: str = "1.0.0") -> ToolInfo:
    return ToolInfo(id="t", version=version, kind=kind, parameters_schema=schema or {})


SLEEP = SleepParams.model_json_schema()
FLAKY = FlakyParams.model_json_schema()


@pytest.mark.parametrize(
    ("schema", "parameters", "says"),
    [
        (FLAKY, {"failures": "many"}, "parameters.failures: 'many' is not of type 'integer'"),
        (FLAKY, {"failures": 2.5}, "is not of type 'integer'"),
        (FLAKY, {"failures": None}, "is not of type 'integer'"),
        (FLAKY, {"failures": [1]}, "is not of type 'integer'"),
        (FLAKY, {}, "parameters: 'failures' is a required property"),
        (FLAKY, {"failures": 1, "extra": 1}, "('extra' was unexpected)"),
        (SLEEP, {"seconds": -3}, "parameters.seconds: -3 is less than the minimum of 0"),
        (SLEEP, {"seconds": "soon"}, "is not of type 'number'"),
    ],
)
def test_a_wrong_parameter_is_refused_naming_the_field(schema: dict[str, Any], parameters: Any, says: str) -> None:
    with pytest.raises(InvalidParameters) as error:
        check_schema(info(schema=schema), ExecutionRequest(tool_id="t", parameters=parameters))
    assert says in error.value.message and "stepflow tools --json" in error.value.message


@pytest.mark.parametrize(
    ("schema", "parameters"),
    [
        (FLAKY, {"failures": "3"}),
        (FLAKY, {"failures": 3.0}),
        (FLAKY, {"failures": True}),
        (SLEEP, {"seconds": "0.5"}),
        (SLEEP, {"seconds": 1}),
    ],
)
def test_what_pydantic_converts_is_accepted_and_the_worker_agrees(schema: dict[str, Any], parameters: Any) -> None:
    check_schema(info(schema=schema), ExecutionRequest(tool_id="t", parameters=parameters))
    model = FlakyParams if schema is FLAKY else SleepParams
    model.model_validate(parameters)  # the worker's own check accepts it too


def test_booleans_accept_pydantics_words_only() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "boolean"}}}
    for good in (True, 0, 1, "yes", "off", "TRUE"):
        check_schema(info(schema=schema), ExecutionRequest(tool_id="t", parameters={"b": good}))
    for bad in (2, "maybe", None):
        with pytest.raises(InvalidParameters, match=r"parameters\.b"):
            check_schema(info(schema=schema), ExecutionRequest(tool_id="t", parameters={"b": bad}))


def test_command_tools_are_checked_with_strict_types() -> None:
    definition = next(tool for tool in _builtin_commands() if tool.id == "wc")
    schema = definition.parameters_schema
    with pytest.raises(InvalidParameters, match=r"parameters\.text: 3 is not of type 'string'"):
        check_schema(info("command", schema), ExecutionRequest(tool_id="t", parameters={"text": 3}))
    integer = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with pytest.raises(InvalidParameters, match="is not of type 'integer'"):
        check_schema(info("command", integer), ExecutionRequest(tool_id="t", parameters={"n": "3"}))


def _builtin_commands() -> list[Any]:
    return [tool for path in BUILTIN_TOOL_FILES for tool in load_tool_file(path)]


def test_at_most_a_few_problems_are_listed() -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(9)}}
    parameters = {f"p{i}": "x" for i in range(9)}
    with pytest.raises(InvalidParameters) as error:
        check_schema(info(schema=schema), ExecutionRequest(tool_id="t", parameters=parameters))
    assert error.value.message.count("is not of type") == MAX_SCHEMA_PROBLEMS
    assert f"and {9 - MAX_SCHEMA_PROBLEMS} more" in error.value.message


@pytest.mark.parametrize(
    ("tool", "version"),
    [
        (info(kind=None, schema=FLAKY), None),  # the tools table could not be read: the worker checks
        (info(schema=FLAKY, version="2.0.0"), "1.0.0"),  # the table holds only the latest version's schema
        (info(schema={"type": "no-such-type"}), None),  # not a valid schema
        (info(schema={"$ref": "https://example.invalid/schema.json"}), None),  # a reference this check won't fetch
        (info(schema={}), None),
    ],
)
def test_the_schema_check_is_skipped_when_the_schema_is_not_known_here(tool: ToolInfo, version: str | None) -> None:
    check_schema(tool, ExecutionRequest(tool_id="t", version=version, parameters={"failures": "many"}))


def test_a_request_built_without_the_models_checks_is_checked_again() -> None:
    base = ExecutionRequest(tool_id="echo")
    copied = base.model_copy(update={"parameters": {"x": math.nan}, "tool_id": "echo\n"})
    with pytest.raises(InvalidParameters) as error:
        revalidated(copied)
    assert "tool_id:" in error.value.message and "parameters: x: nan" in error.value.message
    assert revalidated(base) == base


def test_plain_data_becomes_a_request_or_invalid_parameters() -> None:
    assert parse_request({"tool_id": "echo", "options": {"timeout": 5}}).options.timeout is not None
    with pytest.raises(InvalidParameters, match="--timeout: must be a finite number"):
        parse_request({"tool_id": "echo", "options": {"timeout": math.inf}}, {"options.timeout": "--timeout"})
    with pytest.raises(InvalidParameters, match="tool: Extra inputs are not permitted"):
        parse_request({"tool_id": "echo", "tool": "echo"})


def test_execution_ids_given_to_reads() -> None:
    assert checked_execution_id("exec-1") == "exec-1"
    with pytest.raises(InvalidParameters, match="must not be empty"):
        checked_execution_id("")
    with pytest.raises(InvalidParameters, match="is not an execution id"):
        checked_execution_id("exec-1; DROP TABLE executions")


def test_the_worker_applies_the_same_caps(tmp_path: Path) -> None:
    """activities/validation.py checks a request with the same function, against the worker's settings."""
    registry: ToolRegistry = build_registry(make_settings(tmp_path))
    caps = ExecutorSettings(max_retry_count=1, max_parameters_bytes=50)
    checked = check_request(registry, caps, "exec-1", request(retry_count=2))
    assert checked.invalid is not None and "STEPFLOW_EXECUTOR_MAX_RETRY_COUNT" in checked.invalid.message
    checked = check_request(registry, caps, "exec-1", request({"x": "a" * 100}))
    assert checked.invalid is not None and "STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES" in checked.invalid.message
    assert check_request(registry, caps, "exec-1", request({"x": 1})).invalid is None
