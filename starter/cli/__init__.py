"""The ``stepflow`` command line.

Each command module defines ``register(app: typer.Typer) -> None`` and adds its commands there; to add
commands, write a module (``starter/cli/projection.py``...), import it here and add it to the tuple below.
Shared helpers (settings, connections, JSON output, errors and exit codes) are in :mod:`starter.cli.common`;
what is printed (tables, status colours) in :mod:`starter.console`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from starter.cli import common, executions, grants, projection, services, tools

app = typer.Typer(
    name="stepflow",
    help="Durable tool execution on Temporal: run tools, watch executions, start a dev server and a worker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Say which Temporal profile, address and namespace the command uses."),
    ] = False,
) -> None:
    common.VERBOSE = verbose


for _module in (services, executions, tools, grants, projection):
    _module.register(app)


def main() -> None:
    """Entry point of the ``stepflow`` console script.

    The process ends with ``os._exit`` once the command has returned and its output is flushed. A normal
    interpreter shutdown races with the Temporal SDK's Rust threads, which may still call back into Python
    while it finalizes and then abort the process ("Fatal Python error: PyGILState_Release"): a command that
    did its work would exit -6. Everything the commands own (connections, files, the worker) is closed by
    the commands themselves before they return, so nothing is lost by skipping the shutdown.
    """
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    if isinstance(code, str):  # SystemExit("message"): print it, exit 1, as the interpreter would
        sys.stderr.write(f"{code}\n")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


__all__ = ["app", "main"]
