"""Command tools: programs declared in TOML, run in the sandbox with per-execution limits.

::

    [[tool]]
    id = "wc"
    version = "1.0.0"
    kind = "command"
    description = "Count the lines, words and bytes of `text`."
    argv = ["wc", "-l", "-w", "-c"]        # a list, never a shell; "{name}" placeholders per element
    stdin = "{text}"                       # optional stdin template
    env = ["PATH", "LANG"]                 # names copied from the worker's environment (+ context.environment)
    output = "text"                        # or "json": stdout parsed as JSON

    [tool.parameters.text]
    type = "string"                        # string | integer | number | boolean
    required = true
    description = "The text to count."

    mounts = ["/usr/share/dict"]            # read-only binds into the tool's minimal root ("/host:/in/sandbox")

    [tool.limits]                          # defaults for options.resource_limits
    memory_mb = 256
    cpu_limit = 0.5
    cpu_seconds = 10

A ``{name}`` naming a declared parameter is replaced by the parameter's value inside one argv element: the element
stays one argument whatever the value holds (spaces, quotes, ``;``, ``$(...)``, newlines). An element naming an
optional parameter that was not given is left out. Braces that do not name a declared parameter stay literal, so
awk or jq programs can be written as they are. ``argv[0]`` must be literal: a parameter never chooses the program.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stepflow.errors import ExecutionFailed, InvalidParameters
from stepflow.models import JsonDict, ResourceLimits
from stepflow.registry import ToolContext, ToolDefinition
from stepflow.sandbox import classify
from stepflow.tools.output import check_output
from stepflow.tools.sandboxed import Isolation, check_sandbox, parse_mounts, run_in_sandbox

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
_KEYS = {"id", "version", "kind", "description", "argv", "stdin", "env", "output", "parameters", "limits", "mounts"}
_PARAM_KEYS = {"type", "required", "default", "description", "enum", "max_length", "minimum", "maximum"}


@dataclass(frozen=True)
class Parameter:
    """One declared parameter of a command tool."""

    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    description: str = ""
    enum: tuple[Any, ...] = ()
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None

    def schema(self) -> JsonDict:
        schema: JsonDict = {"type": self.type}
        for key in ("description", "default", "max_length", "minimum", "maximum"):
            value = getattr(self, key)
            if value not in (None, ""):
                schema[{"max_length": "maxLength"}.get(key, key)] = value
        if self.enum:
            schema["enum"] = list(self.enum)
        return schema

    def check(self, value: Any) -> Any:
        """The value if it fits, else a message saying why not (raised by the caller)."""
        if (isinstance(value, bool) and self.type != "boolean") or not isinstance(value, _TYPES[self.type]):
            raise ValueError(f"{self.name}: expected {self.type}, got {type(value).__name__}")
        return self._check_range(value)

    def _check_range(self, value: Any) -> Any:
        if self.enum and value not in self.enum:
            raise ValueError(f"{self.name}: must be one of {list(self.enum)}, got {value!r}")
        if self.max_length is not None and isinstance(value, str) and len(value) > self.max_length:
            raise ValueError(f"{self.name}: longer than {self.max_length} characters")
        if self.minimum is not None and not isinstance(value, str) and value < self.minimum:
            raise ValueError(f"{self.name}: below the minimum {self.minimum}")
        if self.maximum is not None and not isinstance(value, str) and value > self.maximum:
            raise ValueError(f"{self.name}: above the maximum {self.maximum}")
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{self.name}: contains a NUL character, which no program argument can hold")
        return value

    def render(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


@dataclass(frozen=True)
class CommandTool(ToolDefinition):
    """A program run in the sandbox: argv and stdin templates, a parameter schema, its isolation (default limits,
    env allow-list, read-only mounts)."""

    kind: str = "command"
    argv: tuple[str, ...] = ()
    stdin: str | None = None
    output: str = "text"
    parameters: tuple[Parameter, ...] = ()
    isolation: Isolation = field(default_factory=Isolation)

    @property
    def default_limits(self) -> ResourceLimits:
        return self.isolation.limits

    @property
    def parameters_schema(self) -> JsonDict:
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.parameters},
            "required": [p.name for p in self.parameters if p.required],
            "additionalProperties": False,
        }

    def validate_parameters(self, parameters: JsonDict) -> JsonDict:
        declared = {p.name: p for p in self.parameters}
        problems = [f"{name}: not a parameter of this tool" for name in sorted(set(parameters) - set(declared))]
        normalised: JsonDict = {}
        for name, parameter in declared.items():
            if name in parameters:
                try:
                    normalised[name] = parameter.check(parameters[name])
                except ValueError as exc:
                    problems.append(str(exc))
            elif parameter.default is not None:
                normalised[name] = parameter.default
            elif parameter.required:
                problems.append(f"{name}: required")
        if problems:
            raise InvalidParameters(
                f"parameters for tool {self.id!r} {self.version} are invalid: {'; '.join(problems)}. "
                "See `stepflow tools --json` for its parameter schema."
            )
        return normalised

    def check_resource_limits(self, limits: ResourceLimits) -> None:
        """Refuse when this machine cannot build the sandbox or hold one of the limits (none would go unenforced)."""
        check_sandbox(self.id, limits, self.isolation)

    def render_argv(self, parameters: JsonDict) -> list[str]:
        """The argv for these (validated) parameters: one element per template element, never split."""
        declared = {p.name: p for p in self.parameters}
        argv: list[str] = []
        for element in self.argv:
            names = [n for n in _PLACEHOLDER.findall(element) if n in declared]
            if any(n not in parameters for n in names):
                continue
            argv.append(_substitute(element, declared, parameters))
        return argv

    def render_stdin(self, parameters: JsonDict) -> bytes | None:
        if self.stdin is None:
            return None
        return _substitute(self.stdin, {p.name: p for p in self.parameters}, parameters).encode()

    async def run(self, parameters: JsonDict, ctx: ToolContext) -> Any:
        argv = self.render_argv(parameters)
        result, limits = await run_in_sandbox(self.id, argv, ctx, self.isolation, stdin=self.render_stdin(parameters))
        error = classify(result, limits, argv[0])
        if error is not None:
            raise error
        stdout = result.stdout.decode("utf-8", errors="replace")
        output: Any = stdout
        if self.output == "json":
            try:
                output = json.loads(stdout)
            except ValueError as exc:
                raise ExecutionFailed(f"{argv[0]} did not write JSON to stdout ({exc}): {stdout[:200]!r}") from None
        await check_output(output, self.id)
        return output


def _substitute(template: str, declared: dict[str, Parameter], parameters: JsonDict) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in declared and name in parameters:
            return declared[name].render(parameters[name])
        return match.group(0)

    return _PLACEHOLDER.sub(replace, template)


def _parameter(name: str, table: Any) -> Parameter:
    if not isinstance(table, dict):
        raise ValueError(f"parameter {name!r} must be a table")
    unknown = set(table) - _PARAM_KEYS
    if unknown:
        raise ValueError(f"parameter {name!r}: unknown keys {sorted(unknown)}")
    if table.get("type", "string") not in _TYPES:
        raise ValueError(f"parameter {name!r}: type must be one of {sorted(_TYPES)}")
    return Parameter(name=name, **{**table, "enum": tuple(table.get("enum", ()))})


def parse_command_tool(table: dict[str, Any], path: Path) -> CommandTool:
    """A CommandTool from one ``[[tool]]`` table of a tool file (ValueError says what is wrong)."""
    unknown = set(table) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    argv = table.get("argv")
    if not (isinstance(argv, list) and argv and all(isinstance(part, str) for part in argv)):
        raise ValueError("argv must be a non-empty list of strings (no shell is ever used)")
    parameters = tuple(_parameter(name, spec) for name, spec in table.get("parameters", {}).items())
    if any(_PLACEHOLDER.fullmatch(argv[0]) or p.name in _PLACEHOLDER.findall(argv[0]) for p in parameters):
        raise ValueError("argv[0] must be a literal program name, not a parameter")
    output = table.get("output", "text")
    if output not in ("text", "json"):
        raise ValueError(f"output must be 'text' or 'json', got {output!r}")
    env = table.get("env", [])
    if not (isinstance(env, list) and all(isinstance(name, str) for name in env)):
        raise ValueError("env must be a list of variable names")
    try:
        limits = ResourceLimits(**table.get("limits", {}))
    except ValidationError as exc:
        raise ValueError(f"limits: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    mounts = table.get("mounts", [])
    if not isinstance(mounts, list):
        raise ValueError("mounts must be a list of paths ('/host/path' or '/host/path:/sandbox/path')")
    return CommandTool(
        id=table["id"],
        version=str(table.get("version", "1.0.0")),
        description=str(table.get("description", "")),
        argv=tuple(argv),
        stdin=table.get("stdin"),
        output=output,
        parameters=parameters,
        isolation=Isolation(limits=limits, env=tuple(env), mounts=parse_mounts(mounts)),
    )
