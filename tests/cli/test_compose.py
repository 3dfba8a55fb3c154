"""temporal-dev.yml stays in step with ``stepflow server``: same command line, same search attributes and pragmas.

The Compose file cannot run here (no container engine), so its ``command:`` list is read textually (no YAML
dependency) and compared with :func:`starter.server.dev_server_command` for the same address and ports.
"""

from __future__ import annotations

import re
from pathlib import Path

from starter.server import DYNAMIC_CONFIG, SQLITE_PRAGMAS, dev_server_command
from stepflow.config import TemporalSettings, load_settings
from stepflow.search_attributes import DEV_SERVER_ARGS

COMPOSE = Path(__file__).resolve().parents[2] / "temporal-dev.yml"


def block_list(text: str, key: str) -> list[str]:
    """The items of the YAML block list under ``key:`` (plain or double-quoted scalars, comments dropped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^\s*{key}:\s*$", line))
    indent = len(lines[start]) - len(lines[start].lstrip())
    items = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(line) - len(line.lstrip()) <= indent and not stripped.startswith("- "):
            break
        if not stripped.startswith("- "):
            break
        value = re.sub(r"\s+#.*$", "", stripped[2:]).strip()
        items.append(value[1:-1] if value.startswith('"') and value.endswith('"') else value)
    return items


def pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_compose_command_is_the_dev_server_command(tmp_path: Path) -> None:
    command = block_list(COMPOSE.read_text(), "command")
    # in the container both listen on every interface; the host publishes the Web UI on 127.0.0.1 only
    temporal = TemporalSettings(address="0.0.0.0:7233", ui_port=8233, ui_host="0.0.0.0")
    settings = load_settings(data_dir=tmp_path, temporal=temporal)
    expected = dev_server_command(settings)[1:]  # without the binary: the image's entrypoint is `temporal`
    expected[expected.index("--db-filename") + 1] = "/home/temporal/temporal.db"
    assert command == expected


def test_compose_registers_the_search_attributes_pragmas_and_server_settings() -> None:
    command = block_list(COMPOSE.read_text(), "command")
    registered = [arg for i, arg in enumerate(command) if i and command[i - 1] == "--search-attribute"]
    assert registered == pairs(list(DEV_SERVER_ARGS), "--search-attribute")
    assert tuple(pairs(command, "--sqlite-pragma")) == SQLITE_PRAGMAS
    assert pairs(command, "--dynamic-config-value") == [f"{key}={value}" for key, value in DYNAMIC_CONFIG]


def test_compose_publishes_grpc_and_ui_ports_and_keeps_the_database() -> None:
    text = COMPOSE.read_text()
    ports = block_list(text, "ports")
    assert ports == ["7233:7233", "127.0.0.1:8233:8233"]
    assert block_list(text, "volumes")[0] == "temporal-data:/home/temporal"
    assert "--db-filename" in block_list(text, "command")
