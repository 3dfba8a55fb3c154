"""The checks of a request that depend on the settings or on the tool, made before anything starts.

The models (:mod:`stepflow.models`, :mod:`stepflow.constraints`) refuse what no engine accepts; this module
refuses what this engine's settings or the tool's schema do not:

- :func:`check_caps`: parameters at most ``STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES`` as JSON (InvalidParameters),
  ``retry_count`` at most ``STEPFLOW_EXECUTOR_MAX_RETRY_COUNT`` (InvalidParameters: refused, never silently
  capped), resource limits at most ``STEPFLOW_EXECUTOR_MAX_*`` (ResourceLimitExceeded). The Executor runs it
  before it starts anything, and the worker again with its own settings (``activities/validation.py``).
- :func:`check_schema`: the parameters against the tool's JSON schema as the ``tools`` table holds it, so a
  wrong-type parameter is refused at submission; the worker checks again against the tool itself. The check
  allows what pydantic's lax mode converts (``"3"`` for an integer, ``"yes"`` for a boolean), so a request
  the worker would accept is never refused here.
- :func:`parse_request`, :func:`revalidated` and :func:`checked_execution_id`: the models' constraints as
  InvalidParameters, for plain data (the CLI's options, a JSON body), for a request made without them
  (``model_copy``, ``model_construct``) and for an execution id given to status, result, cancel or logs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import jsonschema
import referencing.exceptions
from jsonschema.protocols import Validator
from pydantic import ValidationError
from pydantic_core import to_json

from stepflow import constraints
from stepflow.config import ExecutorSettings
from stepflow.errors import InvalidParameters, ResourceLimitExceeded
from stepflow.models import ExecutionRequest, JsonDict, ResourceLimits, ToolInfo

MAX_SCHEMA_PROBLEMS = 5
"""How many schema problems an InvalidParameters message lists."""


def check_caps(caps: ExecutorSettings, request: ExecutionRequest) -> None:
    """InvalidParameters or ResourceLimitExceeded when the request asks for more than ``caps`` allow."""
    size = len(to_json(request.parameters))
    if size > caps.max_parameters_bytes:
        raise InvalidParameters(
            f"parameters are {size} bytes as JSON, above this engine's maximum of {caps.max_parameters_bytes} "
            "(STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES); pass large data by reference (a path or a URL the tool "
            "reads), or raise the setting"
        )
    retries = request.options.retry_count
    if retries > caps.max_retry_count:
        raise InvalidParameters(
            f"options.retry_count={retries} is above this engine's maximum of {caps.max_retry_count} "
            f"(STEPFLOW_EXECUTOR_MAX_RETRY_COUNT); ask for at most {caps.max_retry_count} retries, or raise the "
            "setting"
        )
    check_resource_limits(caps, request.options.resource_limits)


class Caps(Protocol):
    """The engine's maxima for resource limits (``ExecutorSettings``' ``max_*`` fields)."""

    @property
    def max_memory_mb(self) -> int: ...
    @property
    def max_cpu_seconds(self) -> int: ...
    @property
    def max_processes(self) -> int: ...
    @property
    def max_output_bytes(self) -> int: ...


def cap_problems(limits: ResourceLimits, caps: Caps) -> list[str]:
    """One message per limit above the engine's maximum, naming the limit and the variable that sets it."""
    maxima = {
        "memory_mb": caps.max_memory_mb,
        "cpu_seconds": caps.max_cpu_seconds,
        "max_processes": caps.max_processes,
        "max_output_bytes": caps.max_output_bytes,
    }
    return [
        f"resource_limits.{name}={value} is above this engine's maximum of {cap} "
        f"(STEPFLOW_EXECUTOR_MAX_{name.upper().removeprefix('MAX_')})"
        for name, cap in maxima.items()
        if (value := getattr(limits, name)) is not None and value > cap
    ]


def check_resource_limits(caps: Caps, limits: ResourceLimits) -> None:
    """ResourceLimitExceeded if a requested limit is above the engine's configured maximum."""
    problems = cap_problems(limits, caps)
    if problems:
        raise ResourceLimitExceeded(f"{'; '.join(problems)}: ask for less, or raise the setting")


def check_schema(tool: ToolInfo, request: ExecutionRequest) -> None:
    """InvalidParameters naming each field that fails the tool's parameter schema.

    Skipped when the schema is not known here: the tools table could not be read (``kind`` None), or the
    request names a version other than the latest, whose schema is the only one the table holds.
    """
    if tool.kind is None or not tool.parameters_schema:
        return
    if request.version is not None and request.version != tool.version:
        return
    validator = _validator(tool)
    if validator is None:
        return
    try:
        errors = list(validator.iter_errors(request.parameters))
    except (referencing.exceptions.Unresolvable, jsonschema.exceptions.UnknownType, RecursionError):
        return  # a schema this check cannot follow: the worker checks the parameters against the tool itself
    if not errors:
        return
    errors.sort(key=lambda error: [str(part) for part in error.absolute_path])
    problems = [_problem(error) for error in errors[:MAX_SCHEMA_PROBLEMS]]
    if len(errors) > MAX_SCHEMA_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_SCHEMA_PROBLEMS} more")
    raise InvalidParameters(
        f"parameters for tool {tool.id!r} {tool.version} are invalid: {'; '.join(problems)}. "
        "See `stepflow tools --json` for its parameter schema."
    )


def parse_request(raw: Mapping[str, Any], names: Mapping[str, str] | None = None) -> ExecutionRequest:
    """A request from plain data (a JSON body, the CLI's options), or InvalidParameters naming each field that
    fails the models' constraints (``names`` renames fields in the message, e.g. to the CLI's options)."""
    try:
        return ExecutionRequest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidParameters(f"invalid request: {constraints.describe_validation_error(exc, names)}") from None


def revalidated(request: ExecutionRequest) -> ExecutionRequest:
    """The request checked against the models' constraints again (``model_copy`` and ``model_construct`` skip
    them); InvalidParameters naming each field that fails."""
    return parse_request(request.model_dump(warnings=False))


def checked_execution_id(execution_id: str) -> str:
    """The id, or InvalidParameters when it cannot be an execution id (empty, too long, odd characters)."""
    problem = constraints.execution_id_problem(execution_id)
    if problem is not None:
        raise InvalidParameters(problem)
    return execution_id


def _problem(error: jsonschema.ValidationError) -> str:
    where = ".".join(["parameters", *(str(part) for part in error.absolute_path)])
    message = error.message if len(error.message) <= 200 else f"{error.message[:200]}..."
    return f"{where}: {message}"


# --- the `type` keyword with pydantic's lax conversions ---------------------------------------------------

_BOOLEAN_TEXT = frozenset({"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"})


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _converts(instance: Any, json_type: str) -> bool:
    """Whether pydantic's lax mode turns ``instance`` into ``json_type`` (only where a JSON type differs)."""
    if json_type == "integer":
        if isinstance(instance, str):
            number = _number(instance)
            return number is not None and number.is_integer()
        return isinstance(instance, bool)
    if json_type == "number":
        return isinstance(instance, bool) or (isinstance(instance, str) and _number(instance) is not None)
    if json_type == "boolean":
        if isinstance(instance, str):
            return instance.strip().lower() in _BOOLEAN_TEXT
        return isinstance(instance, int | float) and instance in (0, 1)
    return False


def _lax_type(validator: Any, types: Any, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """The ``type`` keyword, also passing what pydantic converts. Only this keyword is lax: ``minimum`` and the
    others still see a string as a string (and leave it to the worker)."""
    types = [types] if isinstance(types, str) else list(types)
    if not any(validator.is_type(instance, kind) or _converts(instance, kind) for kind in types):
        yield jsonschema.ValidationError(f"{instance!r} is not of type {', '.join(repr(kind) for kind in types)}")


_STRICT: Any = jsonschema.Draft202012Validator
_extend: Any = jsonschema.validators.extend
_LAX: Any = _extend(_STRICT, validators={"type": _lax_type})


_VALIDATORS: dict[tuple[str, str, bool], tuple[JsonDict, Validator | None]] = {}
"""A validator per tool, version and strictness, kept while the tool's schema stays equal to the one it checks."""


def _validator(tool: ToolInfo) -> Validator | None:
    """A validator of the tool's schema (strict types for command tools, pydantic's lax ones for the others);
    None when the schema is not a valid JSON schema."""
    strict = tool.kind == "command"
    key = (tool.id, tool.version, strict)
    cached = _VALIDATORS.get(key)
    if cached is not None and cached[0] == tool.parameters_schema:
        return cached[1]
    schema = copy.deepcopy(tool.parameters_schema)
    cls: Callable[..., Validator] = _STRICT if strict else _LAX
    try:
        _STRICT.check_schema(schema)
        validator: Validator | None = cls(schema)
    except jsonschema.SchemaError:
        validator = None
    _VALIDATORS[key] = (schema, validator)
    return validator
