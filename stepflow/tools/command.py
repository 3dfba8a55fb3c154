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

    [tool.limits]                          # defaults for options.resource_limits
    memory_mb = 256
    cpu_seconds = 10

A ``{name}`` naming a declared parameter is replaced by the parameter's value inside one argv element: the element
stays one argument whatever the value holds (spaces, quotes, ``;``, ``$(...)``, newlines). An element naming an
optional parameter that was not given is left out. Braces that do not name a declared parameter stay literal, so
awk or jq programs can be written as they are. ``argv[0]`` must be literal: a parameter never chooses the program.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stepflow.errors import ExecutionFailed, InvalidParameters, ResourceLimitExceeded, TimeoutExceeded
from stepflow.models import JsonDict, ResourceLimits
from stepflow.observability import metrics as ops_metrics
from stepflow.observability import tracing
from stepflow.registry import ToolContext, ToolDefinition
from stepflow.sandbox import classify, resolve_limits, run_sandboxed, sandbox_unavailable
from stepflow.sandbox.streams import LineBudget

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
_KEYS = {"id", "version", "kind", "description", "argv", "stdin", "env", "output", "parameters", "limits", "idempotent"}
_PARAM_KEYS = {"type", "required", "default", "description", "enum", "max_length", "minimum", "maximum"}
_TIMEOUT_MARGIN = 0.25
_TIMEOUT_FALLBACK = 10.0


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
    """A program run in the sandbox: argv and stdin templates, a parameter schema, env allow-list, limits."""

    kind: str = "command"
    argv: tuple[str, ...] = ()
    stdin: str | None = None
    env: tuple[str, ...] = ()
    output: str = "text"
    parameters: tuple[Parameter, ...] = ()
    limits: ResourceLimits = field(default_factory=ResourceLimits)

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
        """Refuse when this machine cannot build the sandbox (every limit would go unenforced)."""
        reason = sandbox_unavailable()
        if reason is not None:
            raise ResourceLimitExceeded(f"command tool {self.id!r} cannot run with its limits enforced: {reason}")

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

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """The allow-listed variables of the worker's environment, then the execution's own."""
        env = {name: os.environ[name] for name in self.env if name in os.environ}
        env.update(extra)
        return env

    async def run(self, parameters: JsonDict, ctx: ToolContext) -> Any:
        self.check_resource_limits(ctx.resource_limits)
        limits = resolve_limits(ctx.resource_limits, self.limits)
        logger = ctx.logger
        budget = LineBudget(
            lambda stream, line: (logger.info if stream == "stdout" else logger.warning)(line, stream=stream)
        )
        argv = self.render_argv(parameters)
        deadline = _activity_deadline(ctx.cancel_grace)
        started = time.monotonic()
        result = await run_sandboxed(
            argv,
            self.environment(ctx.context.environment),
            limits,
            stdin=self.render_stdin(parameters),
            on_line=budget,
            cancel_grace=ctx.cancel_grace,
            deadline=deadline[0] if deadline else None,
        )
        if budget.dropped:
            logger.warning("output lines not logged", dropped=budget.dropped, logged=budget.passed)
        if result.cpu_time_ms is not None:
            ctx.record_metric("cpu_time_ms", result.cpu_time_ms, "ms")
        if result.max_rss_kb is not None:
            ctx.record_metric("max_rss_kb", float(result.max_rss_kb), "kB")
        if result.deadline_exceeded and deadline is not None:
            # The tree is dead; Temporal's own start-to-close timeout now ends this attempt (retried under the
            # request's retry policy, timed_out when none is left), so that status is only ever reported after
            # the processes are gone. The raise below is a fallback should that cancel not arrive.
            logger.warning("timeout reached: the process tree was killed", stream="engine")
            await asyncio.sleep(max(0.0, deadline[1] - (time.monotonic() - started)) + _TIMEOUT_FALLBACK)
            raise TimeoutExceeded(f"command tool {self.id!r} ran past its timeout; its process tree was killed")
        error = classify(result, limits, argv[0])
        ops_metrics.sandbox_finished(result.start_seconds, error)
        tracing.sandbox_spans(result.wall_ms, result.start_seconds)
        if error is not None:
            raise error
        stdout = result.stdout.decode("utf-8", errors="replace")
        if self.output == "json":
            try:
                return json.loads(stdout)
            except ValueError as exc:
                raise ExecutionFailed(f"{argv[0]} did not write JSON to stdout ({exc}): {stdout[:200]!r}") from None
        return stdout


def _substitute(template: str, declared: dict[str, Parameter], parameters: JsonDict) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in declared and name in parameters:
            return declared[name].render(parameters[name])
        return match.group(0)

    return _PLACEHOLDER.sub(replace, template)


def _activity_deadline(grace: float) -> tuple[float, float] | None:
    """(when to stop the tool, when the activity's start-to-close timeout fires), in seconds from now.

    The tool is stopped ``grace`` + a margin before Temporal's timeout, so that it is dead when the timeout fires.
    """
    from temporalio import activity

    if not activity.in_activity():
        return None
    info = activity.info()
    timeout = info.start_to_close_timeout
    if timeout is None:
        return None
    elapsed = max(0.0, time.time() - info.started_time.timestamp())
    remaining = max(0.1, timeout.total_seconds() - elapsed)
    return max(remaining * 0.5, remaining - grace - _TIMEOUT_MARGIN), remaining


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
    idempotent = table.get("idempotent", True)
    if not isinstance(idempotent, bool):
        raise ValueError(f"idempotent must be true or false, got {idempotent!r}")
    try:
        limits = ResourceLimits(**table.get("limits", {}))
    except ValidationError as exc:
        raise ValueError(f"limits: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    return CommandTool(
        id=table["id"],
        version=str(table.get("version", "1.0.0")),
        description=str(table.get("description", "")),
        idempotent=idempotent,
        argv=tuple(argv),
        stdin=table.get("stdin"),
        env=tuple(env),
        output=output,
        parameters=parameters,
        limits=limits,
    )
