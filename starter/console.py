"""What the CLI and the demo print: the terminal streams and rich views of executions and results."""

from __future__ import annotations

import json
import os
import sys

from rich.console import Console
from rich.table import Table

from stepflow.models import ExecutionInfo, ExecutionResult, ExecutionStatus


def _console(*, stderr: bool) -> Console:
    # Piped output (make demo, CI logs) gets wide tables rather than rich's 80-column default.
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, soft_wrap=True, width=160 if wide else None)


stdout = _console(stderr=False)
stderr = _console(stderr=True)

_STATUS_STYLE = {
    ExecutionStatus.PENDING: "yellow",
    ExecutionStatus.RUNNING: "cyan",
    ExecutionStatus.COMPLETED: "green",
    ExecutionStatus.FAILED: "red",
    ExecutionStatus.CANCELLED: "magenta",
    ExecutionStatus.TIMED_OUT: "red",
}


def styled(status: ExecutionStatus) -> str:
    """A status with its colour, as rich markup."""
    return f"[{_STATUS_STYLE[status]}]{status.value}[/]"


def render_result(result: ExecutionResult) -> None:
    """A human view of a result on stdout."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("execution", result.execution_id)
    table.add_row("status", styled(result.status))
    meta = result.metadata
    table.add_row("tool", f"{meta.tool_id} {meta.version or ''}".strip())
    if result.timing.duration_ms is not None:
        table.add_row("duration", f"{result.timing.duration_ms} ms")
    if result.output is not None:
        table.add_row("output", json.dumps(result.output, ensure_ascii=False, default=str))
    if result.error is not None:
        table.add_row("error", f"[red]{result.error.type}[/]: {result.error.message}")
    stdout.print(table)


def steps_table(parent_id: str, steps: list[ExecutionInfo]) -> Table:
    """A composite's steps (child executions) as a rich table, for ``status``."""
    table = Table(title="steps", title_justify="left", show_lines=False)
    for column in ("step", "tool", "status", "duration", "error"):
        table.add_column(column, overflow="fold")
    for row in steps:
        table.add_row(
            row.execution_id.removeprefix(parent_id + "."),
            f"{row.tool_id} {row.version or ''}".strip(),
            styled(row.status),
            f"{row.duration_ms} ms" if row.duration_ms is not None else "",
            row.error_message or "",
        )
    return table


def executions_table(rows: list[ExecutionInfo], *, title: str | None = None) -> Table:
    """Executions as a rich table (used by ``list`` and the demo)."""
    table = Table(title=title, show_lines=False)
    for column in ("execution", "tool", "status", "tenant", "user", "started (UTC)", "duration", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.execution_id,
            f"{row.tool_id} {row.version or ''}".strip(),
            styled(row.status),
            row.tenant_id,
            row.user_id,
            row.start_time.strftime("%Y-%m-%d %H:%M:%S"),
            f"{row.duration_ms} ms" if row.duration_ms is not None else "",
            row.error_message or "",
        )
    if not rows:
        table.caption = "no executions match"
    return table
