"""The tool registry: what tools exist, their versions, their parameter schemas and how to run them.

A Python tool is an ``async`` function decorated with :func:`tool`; its first argument is a pydantic model
whose JSON schema is the tool's parameter schema, its second a :class:`ToolContext`::

    class GreetParams(BaseModel):
        name: str

    @tool("greet", version="1.0.0", description="Say hello")
    async def greet(params: GreetParams, ctx: ToolContext) -> dict[str, str]:
        ctx.logger.info("greeting", name=params.name)
        return {"greeting": f"hello {params.name}"}

The decorator only marks the function; :meth:`ToolRegistry.load_module` collects the marked functions of a
module, so importing a module never mutates global state. Other tool kinds (command tools, composite tools)
subclass :class:`ToolDefinition` and are registered the same way.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, get_type_hints

from pydantic import BaseModel, ValidationError

from stepflow.constraints import TOOL_ID_PATTERN
from stepflow.errors import ConfigError, InternalError, InvalidParameters, ResourceLimitExceeded, ToolNotFound
from stepflow.models import ExecutionContext, JsonDict, ResourceLimits, ToolInfo

_TOOL_ATTRIBUTE = "__stepflow_tool__"


class ToolLogger(Protocol):
    """What a tool logs through: structlog-style methods with keyword context."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


class ToolContext(Protocol):
    """What a running tool may use: who it runs for, a logger, and progress reporting (heartbeats)."""

    @property
    def execution_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def context(self) -> ExecutionContext: ...
    @property
    def resource_limits(self) -> ResourceLimits: ...
    @property
    def logger(self) -> ToolLogger: ...
    @property
    def cancel_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL when a subprocess must be stopped."""
        ...

    def report_progress(self, progress: Any) -> None:
        """Record the tool's progress; it is sent with the next heartbeat and shown by ``status``."""

    def record_metric(self, name: str, value: float, unit: str | None = None) -> None:
        """Record a measurement of this attempt (``cpu_time_ms``, ``max_rss_kb``...) for execution_metrics."""


@dataclass(frozen=True)
class ToolDefinition:
    """A registered tool of any kind. Subclasses say how it runs."""

    id: str
    version: str
    description: str = ""
    kind: str = "python"
    idempotent: bool = True
    """Safe to run again after its worker was lost mid-run (see docs/reliability.md)."""

    def __post_init__(self) -> None:
        if not TOOL_ID_PATTERN.fullmatch(self.id):
            raise ValueError(f"invalid tool id {self.id!r}: use letters, digits, '.', '_' and '-'")
        if not TOOL_ID_PATTERN.fullmatch(self.version):
            raise ValueError(f"invalid version {self.version!r} for tool {self.id!r}")

    @property
    def parameters_schema(self) -> JsonDict:
        return {"type": "object"}

    def validate_parameters(self, parameters: JsonDict) -> JsonDict:
        """Check parameters against the schema; return them normalised or raise InvalidParameters."""
        return dict(parameters)

    def check_resource_limits(self, limits: ResourceLimits) -> None:
        """Raise ResourceLimitExceeded when this tool cannot run with ``limits`` enforced (default: it can)."""

    async def run(self, parameters: JsonDict, ctx: ToolContext) -> Any:
        """Run one attempt inside the ``run_tool`` activity. Kinds run by the workflow itself refuse."""
        raise InternalError(f"tool {self.id!r} of kind {self.kind!r} cannot run inside an activity")

    def info(self) -> ToolInfo:
        return ToolInfo(
            id=self.id,
            version=self.version,
            kind=self.kind,
            description=self.description,
            parameters_schema=self.parameters_schema,
            idempotent=self.idempotent,
        )


ToolFunction = Callable[[Any, ToolContext], Awaitable[Any]]


def validate_with_model(model: type[BaseModel], parameters: JsonDict, what: str) -> JsonDict:
    """``parameters`` checked by a pydantic model and normalised to JSON, or InvalidParameters naming ``what``."""
    try:
        return model.model_validate(parameters).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidParameters(
            f"parameters for {what} are invalid: {problems}. See `stepflow tools --json` for its parameter schema."
        ) from None


@dataclass(frozen=True)
class PythonTool(ToolDefinition):
    """A tool implemented by an async Python function taking a pydantic model and a ToolContext."""

    function: ToolFunction | None = None
    input_model: type[BaseModel] = field(default=BaseModel)

    @property
    def parameters_schema(self) -> JsonDict:
        return self.input_model.model_json_schema()

    def validate_parameters(self, parameters: JsonDict) -> JsonDict:
        return validate_with_model(self.input_model, parameters, f"tool {self.id!r} {self.version}")

    def check_resource_limits(self, limits: ResourceLimits) -> None:
        """Python tools run inside the worker process, where no per-execution limit can hold: refuse them."""
        if not limits.is_empty:
            raise ResourceLimitExceeded(
                f"tool {self.id!r} is a Python tool: it runs inside the worker process, where memory, CPU, process "
                "and output limits cannot be enforced per execution; drop options.resource_limits or use a "
                "command tool (docs/command-tools.md)"
            )

    async def run(self, parameters: JsonDict, ctx: ToolContext) -> Any:
        self.check_resource_limits(ctx.resource_limits)
        assert self.function is not None
        return await self.function(self.input_model.model_validate(parameters), ctx)


F = TypeVar("F", bound=ToolFunction)


def tool(tool_id: str, *, version: str = "1.0.0", description: str = "", idempotent: bool = True) -> Callable[[F], F]:
    """Mark an async function as a Python tool; its first parameter's pydantic model is the schema.

    ``idempotent=False`` says the tool must not run again after its worker was lost while it ran: the
    execution then fails with the worker-lost error instead (see docs/reliability.md)."""

    def mark(function: F) -> F:
        hints = get_type_hints(function)
        params = [name for name in function.__code__.co_varnames[: function.__code__.co_argcount]]
        model = hints.get(params[0]) if params else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"tool {tool_id!r}: the first parameter must be annotated with a pydantic model")
        doc = description or (function.__doc__ or "").strip().splitlines()[0:1]
        definition = PythonTool(
            id=tool_id,
            version=version,
            description=doc if isinstance(doc, str) else "".join(doc),
            function=function,
            input_model=model,
            idempotent=idempotent,
        )
        setattr(function, _TOOL_ATTRIBUTE, definition)
        return function

    return mark


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-]", version))


class ToolRegistry:
    """All tools a worker can run, by id and version."""

    def __init__(self, tools: Iterable[ToolDefinition] = ()) -> None:
        self._tools: dict[str, dict[str, ToolDefinition]] = {}  # each id's versions kept in version order
        for definition in tools:
            self.register(definition)

    def register(self, definition: ToolDefinition) -> None:
        versions = self._tools.setdefault(definition.id, {})
        if definition.version in versions and versions[definition.version] != definition:
            raise ValueError(f"tool {definition.id!r} version {definition.version} is registered twice")
        versions[definition.version] = definition
        self._tools[definition.id] = {version: versions[version] for version in sorted(versions, key=_version_key)}

    def load_module(self, module_name: str) -> list[ToolDefinition]:
        """Import a module and register every tool function marked with :func:`tool` in it."""
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"tool module {module_name!r} (STEPFLOW_TOOL_MODULES) cannot be imported: {exc}; "
                "name a module importable by the worker's Python, e.g. mypackage.tools"
            ) from None
        found = [
            getattr(value, _TOOL_ATTRIBUTE)
            for value in vars(module).values()
            if isinstance(getattr(value, _TOOL_ATTRIBUTE, None), ToolDefinition)
        ]
        for definition in found:
            self.register(definition)
        return found

    def resolve(self, tool_id: str, version: str | None = None) -> ToolDefinition:
        """The tool with this id and version (latest when ``version`` is None), or ToolNotFound."""
        versions = self._tools.get(tool_id)
        if not versions:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotFound(f"unknown tool {tool_id!r}; registered tools: {known}")
        if version is None:
            return next(reversed(versions.values()))
        if version not in versions:
            known = ", ".join(versions)
            raise ToolNotFound(f"tool {tool_id!r} has no version {version!r}; versions: {known}")
        return versions[version]

    def all(self) -> list[ToolDefinition]:
        return [definition for tool_id in sorted(self._tools) for definition in self._tools[tool_id].values()]

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._tools.values())
