"""Turning command-line options into an ExecutionRequest or a time, with InvalidParameters on bad input.

Parsing happens before anything connects, so a malformed option never starts an execution.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from stepflow.errors import InvalidParameters
from stepflow.models import ExecutionContext, ExecutionOptions, ExecutionRequest, Priority, ResourceLimits

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_value(text: str) -> Any:
    """A ``-p`` value: JSON when it parses (``3``, ``true``, ``[1,2]``, ``"x"``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(pairs: list[str] | None, params_json: str | None) -> dict[str, Any]:
    """``--params`` (a JSON object) overlaid with each ``-p key=value``."""
    parameters: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
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


def build_options(timeout: float | None, retries: int, retry_delay: int | None, priority: Priority) -> ExecutionOptions:
    """ExecutionOptions from ``--timeout`` (s), ``--retries``, ``--retry-delay`` (ms) and ``--priority``."""
    if timeout is not None and timeout <= 0:
        raise InvalidParameters(f"--timeout must be a positive number of seconds, got {timeout:g}")
    if retries < 0:
        raise InvalidParameters(f"--retries must be 0 or more, got {retries}")
    if retry_delay is not None and retry_delay < 0:
        raise InvalidParameters(f"--retry-delay must be 0 or more milliseconds, got {retry_delay}")
    return ExecutionOptions(
        timeout=timedelta(seconds=timeout) if timeout is not None else None,
        retry_count=retries,
        retry_delay=timedelta(milliseconds=retry_delay) if retry_delay is not None else None,
        priority=priority,
    )


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
    options = build_options(timeout, retries, retry_delay, priority)
    who = context or RequestContext()
    if limits is not None:
        options.resource_limits = limits
    try:
        return ExecutionRequest(
            tool_id=tool,
            version=version,
            parameters=parameters,
            context=ExecutionContext(
                tenant_id=who.tenant, user_id=who.user, session_id=who.session, request_id=who.request_id or ""
            ),
            options=options,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidParameters(f"invalid request: {problems}") from None


def parse_time(text: str, option: str, *, now: datetime | None = None) -> datetime:
    """An aware datetime from ISO 8601 (naive means UTC) or an age before now (``30s``, ``10m``, ``2h``, ``1d``)."""
    age = _AGE.match(text.strip())
    if age:
        delta = timedelta(**{_AGE_UNITS[age.group(2)]: float(age.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidParameters(
            f"{option} expects an ISO 8601 time (2026-01-31T12:00:00Z) or an age (30s, 10m, 2h, 1d), got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
