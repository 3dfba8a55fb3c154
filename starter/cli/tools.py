"""``stepflow tools``: the registered tools, read from the ``tools`` table a worker writes at start."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from starter import console
from starter.cli import common


def tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, parameter schemas included.")] = False,
) -> None:
    """List the registered tools: id, versions, kind, description (--json adds the parameter schema)."""

    async def body() -> int:
        async with common.projection() as projection:
            tools_found = await projection.reader.list_tools()
        entries = [tool.model_dump(mode="json") for tool in tools_found]
        if as_json:
            common.print_json(entries)
            return 0
        if not entries:
            console.stderr.print(
                "no tools registered yet: a worker registers its tools when it starts "
                "(`stepflow worker`, or `stepflow dev` for a server and a worker)"
            )
            return 0
        table = Table(title="tools")
        for column in ("id", "versions", "kind", "description"):
            table.add_column(column, overflow="fold")
        for entry in entries:
            table.add_row(entry["id"], ", ".join(entry["versions"]), entry["kind"], entry["description"])
        console.stdout.print(table)
        return 0

    common.run(body(), as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add ``tools`` to ``app``."""
    app.command()(tools)


__all__ = ["register"]
