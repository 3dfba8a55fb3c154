"""``stepflow metrics``, ``stepflow logs ID [--follow]`` and ``stepflow projection verify|rebuild``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from starter import console
from starter.cli import common
from starter.projection_admin import rebuild, verify
from stepflow.errors import ExecutionNotFound
from stepflow.models import ExecutionStatus, LogEntry, MetricFilter
from stepflow.request_checks import checked_execution_id
from worker.build import build_registry

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ToolOpt = Annotated[str | None, typer.Option("--tool", help="Only executions of this tool.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only executions of this tenant.")]
TaskQueueOpt = Annotated[
    str | None, typer.Option("--task-queue", help="Only executions of this task queue (default: all).")
]

projection_app = typer.Typer(help="Check the SQL projection against Temporal, or rebuild it from Temporal.")


def metrics(tool: ToolOpt = None, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """ExecutionMetrics: totals, success and failure counts, average time, concurrency, queue length, error rate."""

    async def body() -> int:
        async with common.executor() as executor:
            figures = await executor.get_metrics(MetricFilter(tool_id=tool, tenant_id=tenant))
        if as_json:
            common.print_json(figures)
            return 0
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_row("total executions", str(figures.total_executions))
        table.add_row("successful", str(figures.successful_executions))
        table.add_row("failed", str(figures.failed_executions))
        table.add_row("average execution time", f"{figures.average_execution_time.total_seconds() * 1000:.1f} ms")
        table.add_row("current concurrent", str(figures.current_concurrent_executions))
        table.add_row("queue length", str(figures.queue_length))
        table.add_row("error rate", f"{figures.error_rate:.1%}")
        console.stdout.print(table)
        return 0

    common.run(body(), as_json=as_json)


def _print_line(entry: LogEntry) -> None:
    context = {k: v for k, v in entry.metadata.items() if k not in ("seq", "tool_id", "version")}
    extra = " ".join(f"{key}={value}" for key, value in context.items())
    console.stdout.print(
        f"{entry.timestamp:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" {entry.level.value:<7} {entry.message} {extra}".rstrip(),
        highlight=False,
        markup=False,
    )


def logs(
    execution_id: Annotated[str, typer.Argument(help="The execution id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until it ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print an execution's log lines: the tool's own and the engine's lifecycle events."""

    async def body() -> int:
        checked_execution_id(execution_id)
        async with common.executor() as executor:
            last_id = 0

            async def emit() -> None:
                nonlocal last_id
                for entry in await executor.get_logs(execution_id, after_id=last_id):
                    if as_json:
                        typer.echo(entry.model_dump_json())
                    else:
                        _print_line(entry)
                    last_id = max(last_id, entry.id or 0)

            if not follow and await executor.projection.reader.get_execution(execution_id) is None:
                raise ExecutionNotFound(f"no execution with id {execution_id!r} in the projection")
            while True:
                await emit()
                if not follow:
                    return 0
                row = await executor.projection.reader.get_execution(execution_id)
                if row is not None and ExecutionStatus(row.status).is_terminal:
                    await asyncio.sleep(1.0)  # the attempt's last lines may land just after the terminal one
                    await emit()
                    return 0
                await asyncio.sleep(0.5)

    common.run(body(), as_json=as_json)


@projection_app.command("verify")
def verify_command(task_queue: TaskQueueOpt = None, as_json: JsonOpt = False) -> None:
    """Compare every execution in Temporal with its row (status, times, result); exit 1 on any mismatch."""

    async def body() -> int:
        async with common.executor() as executor:
            report, _ = await verify(executor.client, executor.projection, task_queue=task_queue)
        if as_json:
            common.print_json(
                {
                    "checked": report.checked,
                    "mismatches": [m.__dict__ for m in report.mismatches],
                    "skipped": report.skipped,
                }
            )
        else:
            for mismatch in report.mismatches:
                console.stdout.print(str(mismatch), highlight=False, markup=False)
            for execution_id, reason in report.skipped.items():
                console.stdout.print(f"{execution_id}: skipped ({reason})", highlight=False, markup=False)
            console.stdout.print(
                f"checked {report.checked} executions: {len(report.wrong_ids)} with mismatches, "
                f"{len(report.skipped)} skipped",
                highlight=False,
            )
        return 0 if report.ok else 1

    common.run(body(), as_json=as_json)


@projection_app.command("rebuild")
def rebuild_command(task_queue: TaskQueueOpt = None, as_json: JsonOpt = False) -> None:
    """Recreate missing or wrong rows from Temporal's histories (idempotent; tools from this worker's registry)."""

    async def body() -> int:
        config = common.settings()
        tools = [definition.info() for definition in build_registry(config).all()]
        async with common.executor(config) as executor:
            written, before = await rebuild(executor.client, executor.projection, tools=tools, task_queue=task_queue)
            after, _ = await verify(executor.client, executor.projection, task_queue=task_queue)
        summary = {
            "rows_written": written,
            "mismatched_before": len(before.wrong_ids),
            "mismatched_after": len(after.wrong_ids),
        }
        if as_json:
            common.print_json(summary)
        else:
            console.stdout.print(
                f"rebuilt {written} rows ({len(before.wrong_ids)} mismatched before, {len(after.wrong_ids)} after)",
                highlight=False,
            )
        return 0 if after.ok else 1

    common.run(body(), as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add ``metrics``, ``logs`` and the ``projection`` group."""
    app.command("metrics")(metrics)
    app.command("logs")(logs)
    app.add_typer(projection_app, name="projection")
