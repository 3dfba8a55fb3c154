"""The ``stepflow`` command line.

Each module named in :data:`COMMAND_MODULES` defines ``register(app: typer.Typer) -> None`` and adds its
commands there; to add commands, write a module (``starter/cli/projection.py``...) and add its name to the
tuple. Shared helpers (settings, connections, JSON output, errors and exit codes) are in
:mod:`starter.cli.common`.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "starter.cli.services",
    "starter.cli.executions",
    "starter.cli.tools",
    "starter.cli.projection",
)

app = typer.Typer(
    name="stepflow",
    help="Durable tool execution on Temporal: run tools, watch executions, start a dev server and a worker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Entry point of the ``stepflow`` console script."""
    app()


__all__ = ["COMMAND_MODULES", "app", "main"]
