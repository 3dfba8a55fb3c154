"""Declarative tool files: TOML files holding ``[[tool]]`` tables, each with a ``kind``.

::

    [[tool]]
    id = "wc"
    version = "1.0.0"
    kind = "command"        # or "composite"
    ...

Each kind has a parser ``(table, source_path) -> ToolDefinition`` named in :data:`KIND_PARSERS` as
``"module:function"`` and imported on first use. A bad file is a ConfigError naming the file and the tool.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepflow.errors import ConfigError, ExecutorError
from stepflow.registry import ToolDefinition

KIND_PARSERS: dict[str, str] = {
    "command": "stepflow.tools.command:parse_command_tool",
    "composite": "stepflow.tools.composite:parse_composite_tool",
}

Parser = Callable[[dict[str, Any], Path], ToolDefinition]


def _parser(kind: str) -> Parser:
    module_name, _, function = KIND_PARSERS[kind].partition(":")
    parser: Parser = getattr(importlib.import_module(module_name), function)
    return parser


def load_tool_file(path: Path) -> list[ToolDefinition]:
    """Parse every ``[[tool]]`` of a TOML file into tool definitions."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read tool file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tool file {path} is not valid TOML: {exc}") from None
    tables = document.get("tool", [])
    if not isinstance(tables, list):
        raise ConfigError(f"tool file {path}: use [[tool]] tables (an array of tables)")
    definitions = []
    for index, table in enumerate(tables):
        name = table.get("id", f"#{index + 1}")
        kind = table.get("kind")
        if kind not in KIND_PARSERS:
            raise ConfigError(
                f"tool file {path}, tool {name!r}: kind must be one of {', '.join(sorted(KIND_PARSERS))}, got {kind!r}"
            )
        try:
            definitions.append(_parser(kind)(table, path))
        except (ExecutorError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"tool file {path}, tool {name!r}: {exc}") from None
    return definitions
