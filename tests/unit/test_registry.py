"""The tool registry: versions (latest when omitted), clear ToolNotFound messages, valid ids, the decorator."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from stepflow.errors import InvalidParameters, ToolNotFound
from stepflow.registry import PythonTool, ToolContext, ToolDefinition, ToolRegistry, tool
from stepflow.tools import builtin
from tests.workflows import probe_tools


@pytest.fixture
def registry() -> ToolRegistry:
    registry = ToolRegistry()
    registry.load_module("stepflow.tools.builtin")
    registry.load_module(probe_tools.PROBE_MODULE)
    return registry


def test_builtins_are_registered_with_their_schemas(registry: ToolRegistry) -> None:
    for tool_id in ("echo", "sleep", "flaky", "fail"):
        assert registry.resolve(tool_id).version == "1.0.0"
    schema = registry.resolve("sleep").parameters_schema
    assert schema["required"] == ["seconds"]
    assert schema["properties"]["seconds"]["type"] == "number"
    info = registry.resolve("flaky").info()
    assert (info.id, info.version, info.kind) == ("flaky", "1.0.0", "python")
    assert "failures" in info.parameters_schema["properties"]


def test_version_omitted_means_the_latest_compared_numerically(registry: ToolRegistry) -> None:
    assert registry.resolve("probe-versioned").version == "1.10.0"  # not "1.2.0", which sorts last as text
    assert registry.resolve("probe-versioned", "1.2.0").version == "1.2.0"
    assert [d.version for d in registry.all() if d.id == "probe-versioned"] == ["1.2.0", "1.10.0"]


def test_unknown_tool_lists_the_registered_ones(registry: ToolRegistry) -> None:
    with pytest.raises(ToolNotFound) as error:
        registry.resolve("nope")
    assert "'nope'" in error.value.message
    assert "echo" in error.value.message and "sleep" in error.value.message
    with pytest.raises(ToolNotFound, match="registered tools: none"):
        ToolRegistry().resolve("echo")


def test_unknown_version_lists_the_known_versions(registry: ToolRegistry) -> None:
    with pytest.raises(ToolNotFound) as error:
        registry.resolve("probe-versioned", "9.9.9")
    assert "'9.9.9'" in error.value.message
    assert "versions: 1.2.0, 1.10.0" in error.value.message


@pytest.mark.parametrize("tool_id", ["", "has space", "-leading-dash", "semi;colon", "x" * 201, "slash/tool"])
def test_invalid_tool_ids_are_refused(tool_id: str) -> None:
    with pytest.raises(ValueError, match="invalid tool id"):
        ToolDefinition(id=tool_id, version="1.0.0")


def test_invalid_versions_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid version"):
        ToolDefinition(id="ok", version="1 0")


def test_the_same_version_registered_twice_differently_is_refused(registry: ToolRegistry) -> None:
    registry.load_module("stepflow.tools.builtin")  # the same definitions again: harmless
    assert len([d for d in registry.all() if d.id == "echo"]) == 1
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(ToolDefinition(id="echo", version="1.0.0", description="another echo"))


def test_loading_a_module_does_not_touch_other_registries() -> None:
    first, second = ToolRegistry(), ToolRegistry()
    first.load_module(probe_tools.PROBE_MODULE)
    assert len(first) == 6
    assert len(second) == 0


def test_the_decorator_refuses_a_function_without_a_pydantic_model() -> None:
    async def untyped(params: dict[str, Any], ctx: ToolContext) -> None:
        return None

    async def no_parameters() -> None:
        return None

    with pytest.raises(TypeError, match=r"'bad'.*pydantic model"):
        tool("bad")(untyped)
    with pytest.raises(TypeError, match="pydantic model"):
        tool("bad")(no_parameters)  # type: ignore[type-var]


class GreetParams(BaseModel):
    """Who to greet."""

    name: str


async def greet(params: GreetParams, ctx: ToolContext) -> str:
    """Say hello."""
    return f"hello {params.name}"


def test_the_decorator_marks_without_registering() -> None:
    marked = tool("greet", version="2.0.0")(greet)
    assert marked is greet
    definition = marked.__stepflow_tool__  # type: ignore[attr-defined]
    assert isinstance(definition, PythonTool)
    assert (definition.id, definition.version, definition.description) == ("greet", "2.0.0", "Say hello.")
    assert definition.parameters_schema["required"] == ["name"]


def test_parameters_are_validated_against_the_schema(registry: ToolRegistry) -> None:
    sleep = registry.resolve("sleep")
    assert sleep.validate_parameters({"seconds": "2.5"}) == {"seconds": 2.5}
    with pytest.raises(InvalidParameters) as error:
        sleep.validate_parameters({"seconds": -1})
    assert "seconds" in error.value.message
    assert "stepflow tools --json" in error.value.message
    with pytest.raises(InvalidParameters, match=r"\(root\)|seconds"):
        sleep.validate_parameters({})
    assert registry.resolve("echo").validate_parameters({"anything": [1, 2]}) == {"anything": [1, 2]}
    assert builtin.echo.__stepflow_tool__.id == "echo"  # type: ignore[attr-defined]
