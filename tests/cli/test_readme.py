"""The README stays in step with the code: every STEPFLOW_* setting and every CLI command is documented."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from starter.cli import app
from stepflow.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def setting_variables() -> list[str]:
    variables = []
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseSettings):
            prefix = group.model_config.get("env_prefix", "")
            variables += [f"{prefix}{sub.upper()}" for sub in group.model_fields]
        else:
            variables.append(f"STEPFLOW_{name.upper()}")
    return variables


def test_every_setting_is_in_the_configuration_table() -> None:
    text = README.read_text()
    variables = setting_variables()
    assert len(variables) > 20
    missing = [variable for variable in variables if f"| `{variable}` |" not in text]
    assert not missing, f"add these to the configuration table of README.md: {missing}"


def test_every_command_is_documented() -> None:
    text = README.read_text()
    commands = [
        command.name or (command.callback.__name__ if command.callback else "") for command in app.registered_commands
    ]
    missing = [name for name in commands if f"stepflow {name}" not in text and f"`{name}`" not in text]
    assert not missing, f"document these commands in README.md: {missing}"
