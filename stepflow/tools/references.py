"""The reference syntax of composite tools: ``{{ input.NAME... }}`` and ``{{ steps.STEP.output... }}``.

A parameter value of a composite step (or the composite's ``output``) is any JSON value; every string in it
may hold references, resolved just before the step starts:

- ``{{ input.text }}`` is the composite's parameter ``text``; ``{{ input }}`` is all of them;
- ``{{ steps.a.output }}`` is the output of step ``a``; ``{{ steps.a.output.items.0.name }}`` walks into it
  (dict keys by name, list items by index).

A string that is exactly one reference takes the referenced value with its JSON type (a number stays a
number, a dict a dict). A reference inside longer text is interpolated: strings as they are, anything
else as compact JSON. There is no escape for a literal ``{{``.

Pure functions without I/O or clocks: the loader validates references with them when a tool file is
read, the workflow resolves them deterministically at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_REFERENCE = re.compile(r"\{\{(.*?)\}\}")
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")


class BadReference(ValueError):
    """A reference is malformed, or names something that is not there when it is resolved."""


@dataclass(frozen=True)
class Reference:
    """One ``{{ ... }}`` reference: to the composite's input, or to a step's output, plus a path into it."""

    text: str
    step: str | None
    path: tuple[str, ...]

    @property
    def is_input(self) -> bool:
        return self.step is None


def parse_reference(text: str) -> Reference:
    """Parse ``{{ input.x }}`` / ``{{ steps.a.output.y }}``; BadReference says what is wrong."""
    inner = text.strip()[2:-2].strip()
    segments = inner.split(".") if inner else []
    if not segments or not all(_SEGMENT.match(segment) for segment in segments):
        raise BadReference(
            f"malformed reference {text!r}: use {{{{ input.NAME }}}} or {{{{ steps.STEP.output }}}}, "
            "with names of letters, digits, '_' and '-' joined by '.'"
        )
    if segments[0] == "input":
        return Reference(text=text, step=None, path=tuple(segments[1:]))
    if segments[0] == "steps" and len(segments) >= 3 and segments[2] == "output":
        return Reference(text=text, step=segments[1], path=tuple(segments[3:]))
    raise BadReference(
        f"malformed reference {text!r}: it must start with 'input' or 'steps.STEP.output' "
        "(e.g. {{ input.text }} or {{ steps.fetch.output.body }})"
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def find_references(value: Any) -> list[Reference]:
    """Every reference in the strings of a JSON value, in order; BadReference on a malformed one."""
    return [parse_reference(match.group(0)) for text in _strings(value) for match in _REFERENCE.finditer(text)]


def _lookup(reference: Reference, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    if reference.step is None:
        current: Any = inputs
        where = "the composite's input"
    else:
        if reference.step not in outputs:
            raise BadReference(f"{reference.text}: step {reference.step!r} has no output")
        current = outputs[reference.step]
        where = f"the output of step {reference.step!r}"
    for depth, segment in enumerate(reference.path):
        at = ".".join(reference.path[:depth]) or "(root)"
        if isinstance(current, Mapping):
            if segment not in current:
                keys = ", ".join(sorted(str(key) for key in current)) or "none"
                raise BadReference(f"{reference.text}: {where} has no key {segment!r} at {at} (keys: {keys})")
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit():
            if int(segment) >= len(current):
                raise BadReference(f"{reference.text}: {where} has only {len(current)} items at {at}")
            current = current[int(segment)]
        else:
            raise BadReference(
                f"{reference.text}: {where} is a {type(current).__name__} at {at}, cannot look up {segment!r}"
            )
    return current


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def resolve(value: Any, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    """A copy of ``value`` with every reference replaced by what it names; BadReference if it is missing."""
    if isinstance(value, str):
        matches = list(_REFERENCE.finditer(value))
        if not matches:
            return value
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return _lookup(parse_reference(value), inputs, outputs)
        return _REFERENCE.sub(lambda m: _as_text(_lookup(parse_reference(m.group(0)), inputs, outputs)), value)
    if isinstance(value, Mapping):
        return {key: resolve(item, inputs, outputs) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(item, inputs, outputs) for item in value]
    return value
