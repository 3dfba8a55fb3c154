"""The models' static constraints (stepflow/constraints.py): what a well-formed request is, without a server."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from stepflow import constraints, registry
from stepflow.constraints import MAX_PARAMETERS_DEPTH, MAX_RETRY_DELAY, MAX_TIMEOUT, json_problem
from stepflow.models import ExecutionContext, ExecutionFilter, ExecutionOptions, ExecutionRequest, MetricFilter
from stepflow.registry import ToolDefinition


def nested(depth: int, leaf: Any = 1, *, lists: bool = False) -> Any:
    """``depth`` containers inside each other: {"a": {"a": ... leaf}} or [[... leaf]]."""
    value = leaf
    for _ in range(depth):
        value = [value] if lists else {"a": value}
    return value


@contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def refusal(**raw: Any) -> str:
    """The message of the ValidationError building ``ExecutionRequest(**raw)`` raises."""
    with pytest.raises(ValidationError) as error:
        ExecutionRequest.model_validate({"tool_id": "echo", **raw})
    return constraints.describe_validation_error(error.value)


@pytest.mark.parametrize("lists", [False, True])
def test_fifty_thousand_levels_are_refused_without_recursion(lists: bool) -> None:
    deep = nested(50_000, lists=lists)
    with recursion_limit(200):  # the walk is iterative: a recursive one would need 50,000 frames
        problem = json_problem({"x": deep})
    assert problem is not None and f"nested deeper than {MAX_PARAMETERS_DEPTH} levels" in problem
    assert f"nested deeper than {MAX_PARAMETERS_DEPTH} levels" in refusal(parameters={"x": deep})


def test_the_depth_cap_is_exact() -> None:
    # the parameters object is level 1, so MAX_PARAMETERS_DEPTH - 1 containers fit inside it
    assert ExecutionRequest(tool_id="echo", parameters={"x": nested(MAX_PARAMETERS_DEPTH - 1)})
    assert "nested deeper" in refusal(parameters={"x": nested(MAX_PARAMETERS_DEPTH)})


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"x": math.nan}, "x: nan is not a JSON number"),
        ({"x": [1, {"y": math.inf}]}, "x[1].y: inf is not a JSON number"),
        ({"x": -math.inf}, "-inf is not a JSON number"),
        ({"x": {1: "one"}}, "x: a key that is not a string (1)"),
        ({"x": b"bytes"}, "x: a value of type bytes is not JSON"),
        ({"x": {1, 2}}, "a value of type set is not JSON"),
        ({"x": "\udcff"}, "x: a string holds U+DCFF, a lone surrogate"),
        ({"\ud800": 1}, "a lone surrogate"),
    ],
)
def test_parameters_must_be_json(parameters: dict[str, Any], says: str) -> None:
    assert says in refusal(parameters=parameters)


def test_json_values_of_every_kind_are_accepted() -> None:
    parameters = {
        "text": "héllo 🎉 中文 עברית \x00\x1b[31m\n",
        "numbers": [0, -1, 2**70, 1.5e308, -0.0],
        "flags": [True, False, None],
        "nested": {"a": [{"b": "c"}], "": "empty key"},
        "sql": "'; DROP TABLE executions; --",
    }
    assert ExecutionRequest(tool_id="echo", parameters=parameters).parameters == parameters


def test_a_deep_path_is_shortened_in_the_message() -> None:
    problem = json_problem({"x": nested(20, math.nan)})
    assert problem is not None and problem.startswith("x.a.a....") and "more..." in problem and len(problem) < 200


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("timeout", 0, "must be more than 0"),
        ("timeout", -1, "must be more than 0"),
        ("timeout", math.inf, "must be a finite number of seconds"),
        ("timeout", math.nan, "must be a finite number of seconds"),
        ("timeout", 1e300, "at most 604800 seconds (7 days); got 1e+300"),
        ("timeout", MAX_TIMEOUT + timedelta(seconds=1), "at most 604800 seconds"),
        ("timeout", "P8D", "at most 604800 seconds"),
        ("timeout", True, "not true or false"),
        ("retry_delay", -0.001, "must be 0 or more"),
        ("retry_delay", 1e14, "at most 3600 seconds (1 hour)"),
        ("retry_delay", math.nan, "must be a finite number of seconds"),
        ("retry_delay", MAX_RETRY_DELAY + timedelta(microseconds=1), "at most 3600 seconds"),
        ("retry_count", -1, "greater than or equal to 0"),
    ],
)
def test_option_edges_are_refused(field: str, value: Any, says: str) -> None:
    message = refusal(options={field: value})
    assert message.startswith(f"options.{field}: ") and says in message


def test_option_edges_that_are_accepted() -> None:
    options = ExecutionOptions(timeout=MAX_TIMEOUT, retry_delay=MAX_RETRY_DELAY)
    assert (options.timeout, options.retry_delay) == (MAX_TIMEOUT, MAX_RETRY_DELAY)
    assert ExecutionOptions.model_validate({"timeout": "PT5S", "retry_delay": 0}).timeout == timedelta(seconds=5)
    assert ExecutionOptions(timeout=0.001).timeout == timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"tool_id": ""}, "tool_id: '' is not a tool id"),
        ({"tool_id": "echo\n"}, "is not a tool id"),
        ({"tool_id": "echo; DROP TABLE tools"}, "is not a tool id"),
        ({"tool_id": "x" * 201}, "(201 characters) is not a tool id"),
        ({"tool_id": "\u00e9ch\u043e"}, "is not a tool id"),  # e-acute and a Cyrillic o
        ({"version": ""}, "version: '' is not a version"),
        ({"version": "1.0' OR '1'='1"}, "is not a version"),
        ({"context": {"tenant_id": ""}}, "context.tenant_id: '' is not a tenant id"),
        ({"context": {"tenant_id": "a" * 65}}, "is not a tenant id"),
        ({"context": {"tenant_id": "ténant"}}, "is not a tenant id"),
        ({"context": {"user_id": ""}}, "context.user_id: must not be empty"),
        ({"context": {"user_id": "ann\x00"}}, "unprintable character U+0000"),
        ({"context": {"user_id": "ann\nroot"}}, "unprintable character U+000A"),
        ({"context": {"user_id": "\u202eevil"}}, "unprintable character U+202E"),
        ({"context": {"session_id": "x" * 201}}, "at most 200 are allowed"),
        ({"context": {"request_id": "r\ud800"}}, "unprintable character U+D800"),
        ({"context": {"parent_execution_id": ""}}, "an execution id must not be empty"),
        ({"context": {"parent_execution_id": "exec 1"}}, "is not an execution id"),
        ({"context": {"environment": {"A B": "x"}}}, "is not a variable name"),
        ({"context": {"environment": {"X": "a\x00b"}}}, "holds a NUL character"),
        ({"context": {"environment": {"X": "a" * 70_000}}}, "at most 65536 are allowed"),
    ],
)
def test_ids_and_context_are_checked(raw: dict[str, Any], says: str) -> None:
    assert says in refusal(**raw)


def test_ids_that_are_accepted() -> None:
    context = ExecutionContext(
        tenant_id="acme-1.eu@x:y",
        user_id="o'brien; DROP TABLE executions; -- 🎉",
        session_id="",
        request_id="Grüße",
        parent_execution_id="exec-8d6ffac8-755c-5201-8beb-9c08e8acad5a.étape_1",
        environment={"LANG": "C.UTF-8", "_X1": ""},
    )
    assert context.user_id.startswith("o'brien")


def test_the_registry_shares_the_tool_id_pattern() -> None:
    assert not hasattr(registry, "_ID_PATTERN")
    assert vars(registry)["TOOL_ID_PATTERN"] is constraints.TOOL_ID_PATTERN
    with pytest.raises(ValueError, match="invalid tool id"):
        ToolDefinition(id="echo\n", version="1.0.0")


def test_execution_ids() -> None:
    assert constraints.execution_id_problem("exec-8d6ffac8-755c-5201-8beb-9c08e8acad5a.step-1") is None
    for bad in ("", " ", "exec 1", "exec-1\n", "x" * 1001, "exec-1'--", "../etc/passwd"):
        assert constraints.execution_id_problem(bad) is not None, bad


def test_field_names_can_be_renamed_for_the_cli() -> None:
    with pytest.raises(ValidationError) as error:
        ExecutionRequest.model_validate({"tool_id": "echo", "options": {"timeout": -1}})
    assert constraints.describe_validation_error(error.value, {"options.timeout": "--timeout"}).startswith(
        "--timeout: must be more than 0"
    )


@pytest.mark.parametrize("model", [ExecutionFilter, MetricFilter])
def test_filters_refuse_what_no_id_can_be(model: type[ExecutionFilter] | type[MetricFilter]) -> None:
    """A NUL would reach PostgreSQL as a DatabaseError; no id holds one, so it is InvalidParameters at once."""
    with pytest.raises(ValidationError, match="cannot be an id to filter on"):
        model(tenant_id="acme\x00")
    assert model(tenant_id=f"o'brien{'; DROP TABLE executions; --'}").tenant_id
