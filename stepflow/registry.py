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

A Python tool runs inside the worker process by default (``isolation="process"``: fast, trusted, no
per-execution limit can hold there, so a request asking for limits is refused). ``isolation="sandbox"`` runs each
execution in a process of its own inside the sandbox command tools run in (own uid, namespaces, minimal root,
cgroup limits, environment allow-list, tree kill), with ``limits``, ``env`` and ``mounts`` as a command tool's;
see :mod:`stepflow.tools.isolated` and docs/command-tools.md.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from pydantic import BaseModel, ValidationError

from stepflow.constraints import TOOL_ID_PATTERN
from stepflow.errors import ConfigError, InternalError, InvalidParameters, ResourceLimitExceeded, ToolNotFound
from stepflow.models import JsonDict, ResourceLimits, ToolInfo
from stepflow.tool_interface import ToolContext, ToolLogger

if TYPE_CHECKING:
    from stepflow.request_checks import Caps
    from stepflow.tools.sandboxed import Isolation

_TOOL_ATTRIBUTE = "__stepflow_tool__"


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

    @property
    def default_limits(self) -> ResourceLimits | None:
        """The limits the tool asks for when a request gives none (None: it has no limits of its own)."""
        return None

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


ISOLATIONS = ("process", "sandbox")


@dataclass(frozen=True)
class PythonTool(ToolDefinition):
    """A tool implemented by an async Python function taking a pydantic model and a ToolContext."""

    function: ToolFunction | None = None
    input_model: type[BaseModel] = field(default=BaseModel)
    isolation: str = "process"
    sandbox: Isolation | None = None

    @property
    def parameters_schema(self) -> JsonDict:
        return self.input_model.model_json_schema()

    @property
    def default_limits(self) -> ResourceLimits | None:
        return self.sandbox.limits if self.sandbox is not None else None

    def validate_parameters(self, parameters: JsonDict) -> JsonDict:
        return validate_with_model(self.input_model, parameters, f"tool {self.id!r} {self.version}")

    def check_resource_limits(self, limits: ResourceLimits) -> None:
        """A sandboxed tool: refused only if the sandbox cannot hold the limits. In-process: limits are refused,
        since none can be enforced per execution inside the worker process."""
        if self.sandbox is not None:
            from stepflow.tools.sandboxed import check_sandbox

            check_sandbox(self.id, limits, self.sandbox)
        elif not limits.is_empty:
            raise ResourceLimitExceeded(
                f"tool {self.id!r} is a Python tool running inside the worker process, where memory, CPU, process "
                "and output limits cannot be enforced per execution; drop options.resource_limits, or declare the "
                'tool with @tool(..., isolation="sandbox") to run it in the sandbox (docs/command-tools.md)'
            )

    async def run(self, parameters: JsonDict, ctx: ToolContext) -> Any:
        from stepflow.tools.output import check_output

        self.check_resource_limits(ctx.resource_limits)
        if self.sandbox is not None:
            from stepflow.tools.isolated import run_isolated

            output = await run_isolated(self.id, self.function, self.sandbox, parameters, ctx)
        else:
            assert self.function is not None
            output = await self.function(self.input_model.model_validate(parameters), ctx)
        await check_output(output, self.id)
        return output


F = TypeVar("F", bound=ToolFunction)


def tool(
    tool_id: str,
    *,
    version: str = "1.0.0",
    description: str = "",
    idempotent: bool = True,
    isolation: str = "process",
    limits: ResourceLimits | None = None,
    env: tuple[str, ...] = (),
    mounts: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Mark an async function as a Python tool; its first parameter's pydantic model is the schema.

    ``idempotent=False`` says the tool must not run again after its worker was lost while it ran: the
    execution then fails with the worker-lost error instead (see docs/reliability.md).
    ``isolation="sandbox"`` runs it in the sandbox with ``limits`` as defaults, the worker variables named in
    ``env`` and the read-only ``mounts`` ("/host/path" or "/host/path:/sandbox/path"); it must then be a
    module-level function, found again by name in a process of its own.
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"tool {tool_id!r}: isolation must be one of {ISOLATIONS}, got {isolation!r}")

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
            isolation=isolation,
            sandbox=_sandbox(tool_id, function, isolation, limits, env, mounts),
        )
        setattr(function, _TOOL_ATTRIBUTE, definition)
        return function

    return mark


def _sandbox(
    tool_id: str,
    function: ToolFunction,
    isolation: str,
    limits: ResourceLimits | None,
    env: tuple[str, ...],
    mounts: tuple[str, ...],
) -> Isolation | None:
    if isolation == "process":
        if limits is not None or env or mounts:
            raise ValueError(f'tool {tool_id!r}: limits, env and mounts need isolation="sandbox"')
        return None
    from stepflow.tools.sandboxed import Isolation, parse_mounts

    if function.__qualname__ != function.__name__:
        raise TypeError(f"tool {tool_id!r}: a sandboxed tool must be a module-level function")
    return Isolation(limits=limits or ResourceLimits(), env=tuple(env), mounts=parse_mounts(mounts))


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-]", version))


class ToolRegistry:
    """All tools a worker can run, by id and version.

    With ``caps`` (the engine's ``STEPFLOW_EXECUTOR_MAX_*``), a tool whose own default limits are above them is
    refused when it is registered (ConfigError naming the limit), not when a request meets it.
    """

    def __init__(self, tools: Iterable[ToolDefinition] = (), *, caps: Caps | None = None) -> None:
        self._tools: dict[str, dict[str, ToolDefinition]] = {}  # each id's versions kept in version order
        self._caps = caps
        for definition in tools:
            self.register(definition)

    def _check_limits(self, definition: ToolDefinition) -> None:
        limits = definition.default_limits
        if limits is None or self._caps is None:
            return
        from stepflow.sandbox.limits import above_caps

        problems = above_caps(limits, self._caps)
        if problems:
            raise ConfigError(
                f"tool {definition.id!r} {definition.version} asks for limits this engine does not allow: "
                f"{'; '.join(problems)}; lower them in the tool's definition or raise the maximum"
            )

    def register(self, definition: ToolDefinition) -> None:
        self._check_limits(definition)
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


__all__ = [
    "ISOLATIONS",
    "PythonTool",
    "ToolContext",
    "ToolDefinition",
    "ToolFunction",
    "ToolLogger",
    "ToolRegistry",
    "tool",
    "validate_with_model",
]
