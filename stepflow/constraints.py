"""The static constraints of the public models: what a well-formed request is, whatever the settings.

:mod:`stepflow.models` applies them, so every request is checked where it is built: by the CLI, the Executor,
the API to come, and again when a worker decodes it. What depends on the settings (the parameters' size, the
retry and resource caps) and on the tool (its parameter schema) is in :mod:`stepflow.request_checks`.

- Ids: a tool id or version is :data:`TOOL_ID_PATTERN` (the registry uses the same); a tenant is
  :data:`TENANT_ID_PATTERN` (it is also Temporal's fairness key, so plain ASCII); user, session and request ids
  are printable text; an execution id is :data:`EXECUTION_ID_PATTERN`.
- Parameters are JSON: objects with string keys, arrays, strings of valid Unicode, finite numbers, booleans and
  null, nested at most :data:`MAX_PARAMETERS_DEPTH` levels. The walk is iterative, so no depth raises
  RecursionError.
- Durations: a timeout is finite, above 0 and at most :data:`MAX_TIMEOUT`; a retry delay is finite, 0 or more
  and at most :data:`MAX_RETRY_DELAY`.

Every check here is deterministic and free of I/O: workflows import it through the models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

TOOL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
"""A tool id or version: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most 200."""
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:\-]{0,63}")
"""A tenant id: ASCII letters, digits, ``.``, ``_``, ``@``, ``:`` and ``-``, at most 64 (Temporal's fairness key)."""
EXECUTION_ID_PATTERN = re.compile(r"\w[\w.\-]{0,999}")
"""An execution id: ``exec-<uuid>``, and ``<parent id>.<step id>`` for a composite's steps; at most 1000."""
MAX_TEXT_ID_LENGTH = 200
"""The longest user, session or request id."""

MAX_PARAMETERS_DEPTH = 64
"""How deep parameters may nest: ``{"a": 1}`` is 1 level, ``{"a": [1]}`` 2."""
MAX_TIMEOUT = timedelta(days=7)
"""The longest per-attempt timeout a request may ask for."""
MAX_RETRY_DELAY = timedelta(hours=1)
"""The longest delay before the first retry a request may ask for (it doubles per retry after)."""
MAX_ENVIRONMENT_BYTES = 64 * 1024
"""The most ``context.environment`` may hold, names and values together, in UTF-8 bytes."""
ENVIRONMENT_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")

T = TypeVar("T")


def check_tool_id(value: str, what: str = "tool id") -> str:
    if not TOOL_ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a {what}: use 1 to 200 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (`stepflow tools` lists the tools)"
        )
    return value


def check_version(value: str) -> str:
    return check_tool_id(value, "version")


def check_tenant_id(value: str) -> str:
    if not TENANT_ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a tenant id: use 1 to 64 ASCII letters, digits, '.', '_', '@', ':' and '-', "
            "starting with a letter or digit"
        )
    return value


def check_text_id(value: str, *, required: bool) -> str:
    """A user, session or request id: printable text (no control, format or separator characters but space)."""
    if required and not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_TEXT_ID_LENGTH:
        raise ValueError(f"is {len(value)} characters long; at most {MAX_TEXT_ID_LENGTH} are allowed")
    if not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        raise ValueError(
            f"{_shown(value)} holds the unprintable character U+{ord(bad):04X}; "
            "ids are printable text (no control characters, line breaks or invalid Unicode)"
        )
    return value


def check_filter_text(value: str | None) -> str | None:
    """A value to filter on (a list's tenant, user, tool...): printable, at most 1000 characters, as any id is."""
    if value is not None and (len(value) > 1000 or not value.isprintable()):
        raise ValueError(f"{_shown(value)} cannot be an id to filter on: ids are printable text, at most 1000")
    return value


def execution_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an execution id, or None when it can."""
    if not value:
        return "an execution id must not be empty"
    if not EXECUTION_ID_PATTERN.fullmatch(value):
        return (
            f"{_shown(value)} is not an execution id: an id is what `stepflow start` printed, like "
            "exec-8d6ffac8-755c-5201-8beb-9c08e8acad5a (letters, digits, '.', '_' and '-'; at most 1000)"
        )
    return None


def check_execution_id(value: str) -> str:
    problem = execution_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_environment(environment: Mapping[str, str]) -> Mapping[str, str]:
    """Names like shell variables, values without NUL (no process can receive one), at most 64 KiB in all."""
    size = 0
    for name, value in environment.items():
        if not ENVIRONMENT_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"{_shown(name)} is not a variable name: use letters, digits and '_', not first a digit")
        if "\x00" in value:
            raise ValueError(f"the value of {name} holds a NUL character, which no process environment can hold")
        size += len(name.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_ENVIRONMENT_BYTES:
        raise ValueError(f"holds {size} bytes; at most {MAX_ENVIRONMENT_BYTES} are allowed")
    return environment


def duration_seconds(value: T, *, maximum: timedelta, zero_allowed: bool) -> T:
    """A number of seconds (or a timedelta) checked to be finite and in range; other input is left to pydantic."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds, not true or false")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        return value
    low = "0 or more" if zero_allowed else "more than 0"
    limit = f"{low} and at most {maximum.total_seconds():g} seconds ({_human(maximum)})"
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite number of seconds, {limit}; got {seconds}")
    if seconds < 0 or (seconds == 0 and not zero_allowed) or seconds > maximum.total_seconds():
        raise ValueError(f"must be {limit}; got {seconds:g} seconds")
    return value


def json_problem(value: Any) -> str | None:
    """Why ``value`` is not JSON the engine accepts (``where: what``), or None. Iterative: any depth is safe."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list | tuple):
            children = enumerate(item)
        else:
            problem = _scalar_problem(item)
            if problem is not None:
                return f"{_path(path)}: {problem}"
            continue
        if depth > MAX_PARAMETERS_DEPTH:
            return (
                f"{_path(path)}: nested deeper than {MAX_PARAMETERS_DEPTH} levels "
                "(MAX_PARAMETERS_DEPTH); flatten the structure or pass it as a string"
            )
        for key, child in children:
            if isinstance(item, dict):
                key_problem = "a key that is not a string" if not isinstance(key, str) else _string_problem(key)
                if key_problem is not None:
                    return f"{_path(path)}: {key_problem} ({key!r})"
            stack.append((child, depth + 1, (path, key)))
    return None


def _scalar_problem(item: Any) -> str | None:
    if item is None or isinstance(item, bool | int):
        return None
    if isinstance(item, float):
        if math.isfinite(item):
            return None
        return f"{item} is not a JSON number (JSON has no NaN or Infinity); send a finite number, or a string"
    if isinstance(item, str):
        return _string_problem(item)
    return (
        f"a value of type {type(item).__name__} is not JSON; use strings, numbers, booleans, null, arrays and objects"
    )


def _string_problem(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"a string holds U+{ord(text[exc.start]):04X}, a lone surrogate, which is not valid Unicode "
            "(was the input decoded from invalid UTF-8?)"
        )
    return None


def _path(path: tuple[Any, ...]) -> str:
    """``a.b[2]`` for the value at ``(((), "a"), "b"), 2)``; ``the top level`` for the root."""
    keys: list[Any] = []
    while path:
        path, key = path
        keys.append(key)
    keys.reverse()
    if len(keys) > 6:  # a deep path: its start, how deep, its end
        keys = [*keys[:3], f"...{len(keys) - 5} more...", *keys[-2:]]
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else str(key)
    return text or "the top level"


def _human(duration: timedelta) -> str:
    if duration.days and not duration.seconds:
        return f"{duration.days} days"
    hours = duration.total_seconds() / 3600
    return f"{hours:g} hour" + ("s" if hours != 1 else "")


def _shown(value: str, limit: int = 60) -> str:
    """``value`` quoted for a message, cut short when long."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def describe_validation_error(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """The problems of a ValidationError, one per field, as ``field: what is wrong``; ``names`` renames fields
    (the CLI names its options: ``{"options.timeout": "--timeout"}``)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "(request)"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{(names or {}).get(field, field)}: {message}")
    return "; ".join(problems)
