"""Composite tools: a graph of steps, each running another tool as a child execution.

Declared in a tool file (see ``docs/composite-tools.md``)::

    [[tool]]
    id = "fan-out"
    version = "1.0.0"
    kind = "composite"
    failure_policy = "fail_fast"          # or "continue"
    output = "{{ steps.join.output }}"    # optional; default: {step id: step output}

    [tool.parameters.text]     # the same keys as a command tool's parameters
    type = "string"
    required = true

    [[tool.steps]]
    id = "a"
    tool = "echo"
    parameters = { text = "{{ input.text }}" }

    [[tool.steps]]
    id = "b"
    tool = "sleep"
    parameters = { seconds = 1 }
    depends_on = ["a"]
    timeout = 30          # per-step option overrides: timeout (s), retry_count, priority

or built in Python with :func:`composite_tool` (a module-level result is collected by
``ToolRegistry.load_module`` like a ``@tool`` function). Everything that can be checked without the
other tools is checked when the definition is built (step ids, references, cycles); the rest (unknown
tools or versions, composites that include themselves) by :func:`validate_composites` once every tool
is registered. Both raise ConfigError naming the file, the tool and the step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from stepflow.contracts import CompositePlan, CompositeStep, FailurePolicy
from stepflow.errors import ConfigError, ExecutorError
from stepflow.models import JsonDict, Priority
from stepflow.registry import ToolDefinition, ToolRegistry, validate_with_model
from stepflow.tools.references import BadReference, find_references

_PARAMETER_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
    "any": Any,
}
_TOOL_KEYS = {"id", "version", "kind", "description", "failure_policy", "parameters", "steps", "output"}
_STEP_KEYS = {"id", "tool", "version", "parameters", "depends_on", "timeout", "retry_count", "priority"}
_PARAMETER_KEYS = {"type", "required", "default", "description", "enum", "max_length", "minimum", "maximum"}


@dataclass(frozen=True)
class CompositeTool(ToolDefinition):
    """A tool made of other tools; ToolExecutionWorkflow runs its plan, one child workflow per step."""

    kind: str = "composite"
    plan: CompositePlan = field(default_factory=lambda: CompositePlan(steps=[]))
    input_model: type[BaseModel] = field(default=BaseModel)
    source: str = "python"

    @property
    def __stepflow_tool__(self) -> CompositeTool:
        """Lets ``ToolRegistry.load_module`` collect module-level composites like ``@tool`` functions."""
        return self

    @property
    def parameters_schema(self) -> JsonDict:
        return self.input_model.model_json_schema()

    def validate_parameters(self, parameters: JsonDict) -> JsonDict:
        return validate_with_model(self.input_model, parameters, f"composite tool {self.id!r} {self.version}")

    def where(self, step: str | None = None) -> str:
        """``tool file F, tool 'x', step 'y'``: the prefix of every error about this composite."""
        origin = "python" if self.source == "python" else f"tool file {self.source}"
        return f"{origin}, tool {self.id!r}" + (f", step {step!r}" if step else "")


def _parameters_model(tool_id: str, parameters: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model of the declared parameters (the same keys as a command tool's ``[tool.parameters.X]``)."""
    fields: dict[str, Any] = {}
    for name, spec in parameters.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f'parameter {name!r}: declare it as a table, e.g. [tool.parameters.{name}] type = "string"'
            )
        unknown = set(spec) - _PARAMETER_KEYS
        if unknown:
            raise ConfigError(f"parameter {name!r}: unknown keys {sorted(unknown)}; allowed: {sorted(_PARAMETER_KEYS)}")
        kind = spec.get("type", "string")
        if kind not in _PARAMETER_TYPES:
            raise ConfigError(f"parameter {name!r}: type must be one of {', '.join(_PARAMETER_TYPES)}, got {kind!r}")
        annotation: Any = Literal[tuple(spec["enum"])] if spec.get("enum") else _PARAMETER_TYPES[kind]
        constraints: dict[str, Any] = {
            "description": str(spec.get("description", "")),
            "max_length": spec.get("max_length"),
            "ge": spec.get("minimum"),
            "le": spec.get("maximum"),
        }
        if spec.get("required", False):
            fields[name] = (annotation, Field(..., **constraints))
        elif "default" in spec:
            fields[name] = (annotation, Field(default=spec["default"], **constraints))
        else:
            fields[name] = (annotation | None, Field(default=None, **constraints))
    model_name = "Parameters_" + "".join(ch if ch.isalnum() else "_" for ch in tool_id)
    model: type[BaseModel] = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    return model


def _step(raw: Any, index: int) -> CompositeStep:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"step #{index + 1}: declare steps as [[tool.steps]] tables")
    name = raw.get("id")
    where = f"step {name!r}" if isinstance(name, str) else f"step #{index + 1}"
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_STEP_KEYS)}")
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ConfigError(f"{where}: needs an id of letters, digits, '_' and '-' (it names the child execution)")
    if not isinstance(raw.get("tool"), str):
        raise ConfigError(f"{where}: needs `tool`, the id of the tool it runs")
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise ConfigError(f"{where}: timeout must be a positive number of seconds, got {timeout!r}")
    try:
        return CompositeStep(
            id=name,
            tool_id=raw["tool"],
            version=raw.get("version"),
            parameters=raw.get("parameters", {}),
            depends_on=list(raw.get("depends_on", [])),
            timeout=None if timeout is None else timedelta(seconds=timeout),
            retry_count=raw.get("retry_count"),
            priority=None if raw.get("priority") is None else Priority(raw["priority"]),
        )
    except (ValidationError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_graph(steps: Sequence[CompositeStep], parameters: Iterable[str], output: Any) -> list[CompositeStep]:
    """Add the dependencies implied by references; reject duplicates, unknown names and cycles."""
    if not steps:
        raise ConfigError("a composite needs at least one [[tool.steps]]")
    ids = [step.id for step in steps]
    duplicates = sorted({step_id for step_id in ids if ids.count(step_id) > 1})
    if duplicates:
        raise ConfigError(f"step {duplicates[0]!r}: duplicate step id (each step id must be unique)")
    known_inputs = set(parameters)
    checked = []
    for step in steps:
        try:
            references = find_references(step.parameters)
        except BadReference as exc:
            raise ConfigError(f"step {step.id!r}: {exc}") from None
        depends = list(dict.fromkeys(step.depends_on))
        for reference in references:
            if reference.step is None:
                if reference.path and reference.path[0] not in known_inputs:
                    declared = ", ".join(sorted(known_inputs)) or "none"
                    raise ConfigError(
                        f"step {step.id!r}: {reference.text} names an undeclared parameter "
                        f"{reference.path[0]!r} (declared parameters: {declared})"
                    )
            elif reference.step not in depends:
                depends.append(reference.step)
        for dependency in depends:
            if dependency not in ids:
                raise ConfigError(f"step {step.id!r}: depends on unknown step {dependency!r} (steps: {', '.join(ids)})")
            if dependency == step.id:
                raise ConfigError(f"step {step.id!r}: depends on itself")
        checked.append(step.model_copy(update={"depends_on": depends}))
    try:
        output_references = find_references(output)
    except BadReference as exc:
        raise ConfigError(f"output: {exc}") from None
    for reference in output_references:
        if reference.step is not None and reference.step not in ids:
            raise ConfigError(f"output: {reference.text} names unknown step {reference.step!r}")
        if reference.step is None and reference.path and reference.path[0] not in known_inputs:
            raise ConfigError(f"output: {reference.text} names an undeclared parameter {reference.path[0]!r}")
    _reject_cycles(checked)
    return checked


def _reject_cycles(steps: Sequence[CompositeStep]) -> None:
    graph = {step.id: step.depends_on for step in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = [*path[path.index(node) :], node]
            raise ConfigError(f"step {node!r}: dependency cycle {' -> '.join(cycle)}")
        state[node] = 1
        for dependency in graph[node]:
            visit(dependency, [*path, node])
        state[node] = 2

    for step in steps:
        visit(step.id, [])


def composite_tool(
    tool_id: str,
    *,
    steps: Sequence[CompositeStep | Mapping[str, Any]],
    version: str = "1.0.0",
    description: str = "",
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    failure_policy: FailurePolicy | str = FailurePolicy.FAIL_FAST,
    output: Any = None,
    source: str = "python",
) -> CompositeTool:
    """Build and validate a composite tool; ``steps`` are CompositeStep or tables shaped like ``[[tool.steps]]``."""
    try:
        policy = FailurePolicy(failure_policy)
    except ValueError:
        raise ConfigError(
            f"failure_policy must be one of {', '.join(p.value for p in FailurePolicy)}, got {failure_policy!r}"
        ) from None
    declared = dict(parameters or {})
    parsed = [step if isinstance(step, CompositeStep) else _step(step, index) for index, step in enumerate(steps)]
    plan = CompositePlan(failure_policy=policy, steps=_check_graph(parsed, declared, output), output=output)
    return CompositeTool(
        id=tool_id,
        version=version,
        description=description,
        plan=plan,
        input_model=_parameters_model(tool_id, declared),
        source=source,
    )


def parse_composite_tool(table: Mapping[str, Any], path: Path) -> CompositeTool:
    """The ``KIND_PARSERS["composite"]`` parser: one ``[[tool]]`` table of a tool file."""
    unknown = set(table) - _TOOL_KEYS
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_TOOL_KEYS)}")
    for key in ("id", "version"):
        if not isinstance(table.get(key), str):
            raise ConfigError(f"needs `{key}` (a string)")
    steps = table.get("steps", [])
    if not isinstance(steps, list):
        raise ConfigError("declare steps as [[tool.steps]] tables")
    parameters = table.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise ConfigError("declare parameters as [tool.parameters.NAME] tables")
    return composite_tool(
        table["id"],
        version=table["version"],
        description=str(table.get("description", "")),
        parameters=parameters,
        failure_policy=table.get("failure_policy", FailurePolicy.FAIL_FAST),
        steps=steps,
        output=table.get("output"),
        source=str(path),
    )


def validate_composites(registry: ToolRegistry) -> None:
    """Check every composite's steps against the whole registry: tools and versions exist, no composite
    includes itself (directly or through other composites). Raises ConfigError naming file, tool and step.

    Fills in each step's ``kind`` (the workflow starts an atomic step as one activity, a composite step as
    child executions of its own)."""
    composites = [definition for definition in registry.all() if isinstance(definition, CompositeTool)]
    for composite in composites:
        for step in composite.plan.steps:
            try:
                resolved = registry.resolve(step.tool_id, step.version)
                step.kind, step.idempotent = resolved.kind, resolved.idempotent
            except ExecutorError as exc:
                raise ConfigError(f"{composite.where(step.id)}: {exc}") from None

    def visit(composite: CompositeTool, path: list[str]) -> None:
        label = f"{composite.id} {composite.version}"
        if label in path:
            raise ConfigError(f"{composite.where()}: composites include each other: {' -> '.join([*path, label])}")
        for step in composite.plan.steps:
            child = registry.resolve(step.tool_id, step.version)
            if isinstance(child, CompositeTool):
                visit(child, [*path, label])

    for composite in composites:
        visit(composite, [])
