"""Turning command-line options into an ExecutionRequest or a time, with InvalidParameters on bad input.

Parsing happens before anything connects, so a malformed option never starts an execution. The options go
to the models as given (seconds for ``--timeout``, ``--retry-delay`` turned from milliseconds into seconds):
the models' constraints (:mod:`stepflow.constraints`) decide what is valid, and their messages name the
option. The engine's caps are checked by the Executor before it starts anything.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stepflow.constraints import MAX_PARAMETERS_DEPTH
from stepflow.errors import InvalidParameters
from stepflow.models import ExecutionRequest, Priority, ResourceLimits
from stepflow.request_checks import parse_request

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


OPTION_NAMES = {
    "tool_id": "TOOL",
    "version": "--version",
    "context.tenant_id": "--tenant",
    "context.user_id": "--user",
    "context.session_id": "--session",
    "context.request_id": "--request-id",
    "options.timeout": "--timeout",
    "options.retry_count": "--retries",
    "options.retry_delay": "--retry-delay (given in milliseconds, checked in seconds)",
    "options.priority": "--priority",
}
"""The option that sets each field of the request, for error messages."""


def _too_deep(option: str) -> InvalidParameters:
    return InvalidParameters(
        f"{option} is nested too deeply to read; parameters may nest at most {MAX_PARAMETERS_DEPTH} levels: "
        "flatten the structure or pass it as a string"
    )


def parse_value(text: str) -> Any:
    """A ``-p`` value: JSON when it parses (``3``, ``true``, ``[1,2]``, ``"x"``), else the text itself."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _too_deep("-p") from None
    except ValueError:
        return text


def parse_params(pairs: list[str] | None, params_json: str | None) -> dict[str, Any]:
    """``--params`` (a JSON object) overlaid with each ``-p key=value``."""
    parameters: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except RecursionError:
            raise _too_deep("--params") from None
        except json.JSONDecodeError as exc:
            raise InvalidParameters(
                f"--params is not valid JSON ({exc.msg} at position {exc.pos}, near "
                f"{params_json[max(0, exc.pos - 10) : exc.pos + 10]!r}); "
                'pass an object such as --params \'{"message": "hi"}\''
            ) from None
        if not isinstance(loaded, dict):
            raise InvalidParameters(
                f"--params must be a JSON object, got {type(loaded).__name__}; "
                'pass an object such as --params \'{"message": "hi"}\''
            )
        parameters.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidParameters(f"-p expects key=value, got {pair!r}; for example -p message=hi")
        parameters[key.strip()] = parse_value(value)
    return parameters


@dataclass(frozen=True)
class RequestContext:
    """``--tenant``, ``--user``, ``--session`` and ``--request-id`` as given."""

    tenant: str = "default"
    user: str = "anonymous"
    session: str = ""
    request_id: str | None = None


def build_limits(
    memory_mb: int | None = None,
    cpu_limit: float | None = None,
    cpu_seconds: int | None = None,
    max_processes: int | None = None,
    max_output_bytes: int | None = None,
    network: bool = False,
) -> ResourceLimits:
    """ResourceLimits from ``--memory-mb``, ``--cpu-limit``, ``--cpu-seconds``, ``--max-processes``,
    ``--max-output-bytes`` and ``--network``; each value must be positive."""
    given = {
        "memory_mb": memory_mb,
        "cpu_limit": cpu_limit,
        "cpu_seconds": cpu_seconds,
        "max_processes": max_processes,
        "max_output_bytes": max_output_bytes,
    }
    for name, value in given.items():
        if value is not None and value <= 0:
            raise InvalidParameters(f"--{name.replace('_', '-')} must be positive, got {value:g}")
    return ResourceLimits(**given, network=network)


def build_request(
    tool: str,
    pairs: list[str] | None,
    params_json: str | None,
    *,
    version: str | None = None,
    context: RequestContext | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_delay: int | None = None,
    priority: Priority = Priority.NORMAL,
    limits: ResourceLimits | None = None,
) -> ExecutionRequest:
    """The request the ``run`` / ``start`` options describe, or InvalidParameters saying what is wrong."""
    parameters = parse_params(pairs, params_json)
    who = context or RequestContext()
    raw: dict[str, Any] = {
        "tool_id": tool,
        "version": version,
        "parameters": parameters,
        "context": {
            "tenant_id": who.tenant,
            "user_id": who.user,
            "session_id": who.session,
            "request_id": who.request_id or "",
        },
        "options": {
            "timeout": timeout,
            "retry_count": retries,
            "retry_delay": None if retry_delay is None else _seconds(retry_delay),
            "priority": priority,
            "resource_limits": {} if limits is None else limits.model_dump(exclude_defaults=True),
        },
    }
    try:
        return parse_request(raw, OPTION_NAMES)
    except InvalidParameters as error:
        raise InvalidParameters(f"{error.message}; `stepflow run --help` lists the options") from None


def _seconds(milliseconds: int) -> float:
    """``--retry-delay`` in seconds, for the model to check (infinite when too large for a float)."""
    try:
        return milliseconds / 1000
    except OverflowError:
        return math.inf if milliseconds > 0 else -math.inf


def parse_time(text: str, option: str, *, now: datetime | None = None) -> datetime:
    """An aware datetime from ISO 8601 (naive means UTC) or an age before now (``30s``, ``10m``, ``2h``, ``1d``)."""
    age = _AGE.match(text.strip())
    if age:
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_AGE_UNITS[age.group(2)]: float(age.group(1))})
        except OverflowError:
            raise InvalidParameters(f"{option} {text!r} reaches before the year 1; give a shorter age") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidParameters(
            f"{option} expects an ISO 8601 time (2026-01-31T12:00:00Z) or an age (30s, 10m, 2h, 1d), got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
