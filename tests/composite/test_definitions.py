"""Composite definitions: parsing, references, and the clear ConfigErrors of invalid ones (no server needed)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stepflow.config import load_settings
from stepflow.contracts import CompositeStep, FailurePolicy
from stepflow.errors import ConfigError, InvalidParameters
from stepflow.registry import ToolRegistry
from stepflow.tools.composite import CompositeTool, composite_tool, validate_composites
from stepflow.tools.loader import load_tool_file
from stepflow.tools.references import BadReference, find_references, resolve
from tests.composite.conftest import TOOLS
from worker.build import build_registry

HEADER = '[[tool]]\nid = "bad"\nversion = "1.0.0"\nkind = "composite"\n'


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def registry_with(tmp_path: Path, body: str):
    return build_registry(load_settings(data_dir=tmp_path, tool_files=[write(tmp_path, body)]))


def test_the_test_and_builtin_composites_load_with_implied_dependencies(tmp_path):
    registry = build_registry(load_settings(data_dir=tmp_path, tool_files=[TOOLS]))
    diamond = registry.resolve("test-diamond")
    assert isinstance(diamond, CompositeTool)
    assert {step.id: step.depends_on for step in diamond.plan.steps} == {
        "a": [],
        "b": ["a"],
        "c": ["a"],
        "d": ["b", "c", "a"],
    }
    assert diamond.info().kind == "composite"
    assert diamond.validate_parameters({"text": "x"}) == {"text": "x", "seconds": 1.0}
    with pytest.raises(InvalidParameters, match="text"):
        diamond.validate_parameters({"seconds": 2})
    builtin = registry.resolve("fan-out-in")
    assert isinstance(builtin, CompositeTool) and builtin.plan.failure_policy is FailurePolicy.FAIL_FAST
    assert builtin.parameters_schema["required"] == ["text"]
    with pytest.raises(InvalidParameters, match="seconds: Input should be less than or equal to 60"):
        builtin.validate_parameters({"text": "x", "seconds": 61})


def test_references_keep_json_types_and_interpolate_in_text():
    inputs = {"n": 3, "who": "ada"}
    outputs = {"a": {"items": [{"name": "x"}], "ok": True}}
    assert resolve("{{ input.n }}", inputs, outputs) == 3
    assert resolve("{{steps.a.output.items.0}}", inputs, outputs) == {"name": "x"}
    assert resolve({"k": ["{{ input.who }} has {{ input.n }} {{ steps.a.output.ok }}"]}, inputs, outputs) == {
        "k": ["ada has 3 true"]
    }
    assert resolve("{{ input }}", inputs, outputs) == inputs
    with pytest.raises(BadReference, match="no key 'missing'"):
        resolve("{{ steps.a.output.missing }}", inputs, outputs)
    with pytest.raises(BadReference, match="malformed"):
        find_references("{{ output.a }}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[tool.steps]]\nid = "a"\ntool = "nope"\n',
            r"tool 'bad', step 'a': unknown tool 'nope'",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\nversion = "9.9.9"\n',
            r"tool 'bad', step 'a': tool 'echo' has no version '9.9.9'",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\nparameters = { x = "{{ steps.ghost.output }}" }\n',
            r"tool 'bad': step 'a': depends on unknown step 'ghost'",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\ndepends_on = ["ghost"]\n',
            r"tool 'bad': step 'a': depends on unknown step 'ghost'",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\nparameters = { x = "{{ input.who }}" }\n',
            r"step 'a': \{\{ input.who \}\} names an undeclared parameter 'who' \(declared parameters: none\)",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\ndepends_on = ["b"]\n'
            '[[tool.steps]]\nid = "b"\ntool = "echo"\nparameters = { x = "{{ steps.a.output }}" }\n',
            r"step 'a': dependency cycle a -> b -> a",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\n[[tool.steps]]\nid = "a"\ntool = "sleep"\n',
            r"step 'a': duplicate step id",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\nparameters = { x = "{{ steps.a }}" }\n',
            r"step 'a': malformed reference",
        ),
        (
            'failure_policy = "sometimes"\n[[tool.steps]]\nid = "a"\ntool = "echo"\n',
            r"failure_policy must be one of fail_fast, continue",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\ntimeuot = 3\n',
            r"step 'a': unknown keys \['timeuot'\]",
        ),
        (
            '[[tool.steps]]\nid = "a.b"\ntool = "echo"\n',
            r"step 'a.b': needs an id of letters",
        ),
        ('description = "no steps"\n', r"at least one \[\[tool.steps\]\]"),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\ntimeout = -5\n',
            r"step 'a': timeout must be a positive number of seconds, got -5",
        ),
        (
            '[[tool.steps]]\nid = "a"\ntool = "echo"\npriority = "urgent"\n',
            r"step 'a': 'urgent' is not a valid Priority",
        ),
        (
            '[tool.parameters.n]\ntype = "float"\n[[tool.steps]]\nid = "a"\ntool = "echo"\n',
            r"parameter 'n': type must be one of string, integer",
        ),
        (
            'output = "{{ steps.z.output }}"\n[[tool.steps]]\nid = "a"\ntool = "echo"\n',
            r"output: \{\{ steps.z.output \}\} names unknown step 'z'",
        ),
    ],
)
def test_invalid_composites_are_rejected_with_the_file_tool_and_step(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message) as failure:
        registry_with(tmp_path, body)
    assert str(tmp_path / "tools.toml") in str(failure.value)


def test_composites_that_include_each_other_are_rejected(tmp_path):
    body = (
        '[[tool.steps]]\nid = "a"\ntool = "other"\n'
        '[[tool]]\nid = "other"\nversion = "1.0.0"\nkind = "composite"\n'
        '[[tool.steps]]\nid = "back"\ntool = "bad"\n'
    )
    with pytest.raises(ConfigError, match=r"composites include each other: bad 1.0.0 -> other 1.0.0 -> bad 1.0.0"):
        registry_with(tmp_path, body)


def test_python_builder_matches_the_file_format():
    built = composite_tool(
        "built",
        parameters={
            "text": {"type": "string", "required": True},
            "mode": {"enum": ["fast", "slow"], "default": "fast"},
        },
        steps=[
            CompositeStep(id="a", tool_id="echo", parameters={"t": "{{ input.text }}"}),
            {"id": "b", "tool": "echo", "parameters": {"t": "{{ steps.a.output.t }}"}, "timeout": 5},
        ],
        failure_policy="continue",
    )
    assert built.source == "python" and built.plan.failure_policy is FailurePolicy.CONTINUE
    assert built.plan.steps[1].depends_on == ["a"] and built.plan.steps[1].timeout == timedelta(seconds=5)
    assert built.__stepflow_tool__ is built  # collected by ToolRegistry.load_module
    assert built.validate_parameters({"text": "t"}) == {"text": "t", "mode": "fast"}
    with pytest.raises(InvalidParameters, match="mode"):
        built.validate_parameters({"text": "t", "mode": "medium"})
    broken = composite_tool("built", steps=[{"id": "a", "tool": "missing"}])
    with pytest.raises(ConfigError, match=r"python, tool 'built', step 'a': unknown tool 'missing'"):
        validate_composites(ToolRegistry([broken]))


def test_load_tool_file_names_the_file_and_tool(tmp_path):
    path = write(tmp_path, '[[tool.steps]]\nid = "a"\n')
    with pytest.raises(ConfigError, match=rf"tool file {path}, tool 'bad': step 'a': needs `tool`"):
        load_tool_file(path)


def test_python_composites_are_collected_from_tool_modules(tmp_path):
    registry = build_registry(load_settings(data_dir=tmp_path, tool_modules=["tests.composite.python_composites"]))
    built = registry.resolve("shout-twice")
    assert isinstance(built, CompositeTool) and built.source == "python"
    assert [step.depends_on for step in built.plan.steps] == [[], ["first"]]
