"""``stepflow demo``: a dev server, a worker, and one execution of each outcome, shown from the executions table.

The cases are declarative :class:`DemoCase` entries in :data:`DEMO_CASES`; to show another kind of tool
(a command tool, a composite), append an entry. The demo starts the Temporal dev server on 7233/8233 (or
free ports when those are taken) with its state in a fresh directory, runs a worker in this process,
starts every case at once, cancels the ones that ask for it, then prints the ``executions`` rows with the
Web UI address. It exits 0 when every case ended as expected, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.table import Table
from temporalio.client import WorkflowFailureError

from starter import console
from starter.console import styled
from starter.executor import Executor
from starter.server import parse_address, pick_port, running_server, stop_event
from stepflow.config import ExecutorSettings, Settings, TemporalSettings, load_settings
from stepflow.errors import ExecutorError
from stepflow.identity import LOCAL_ADMIN
from stepflow.logging import configure_logging
from stepflow.models import (
    ExecutionContext,
    ExecutionFilter,
    ExecutionInfo,
    ExecutionOptions,
    ExecutionRequest,
    ExecutionStatus,
)
from stepflow.temporal import connect
from worker.build import build_registry, build_worker, running_projection

DEMO_DIR = Path(".stepflow/demo")
DEMO_TENANT = "demo"
CASE_DEADLINE = 60.0
"""Seconds the demo waits for all its executions before it gives up."""


@dataclass(frozen=True)
class DemoCase:
    """One demo execution: what to run, how it should end, and whether to cancel it once it runs."""

    name: str
    tool_id: str
    expect: ExecutionStatus
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0
    retry_delay_ms: int | None = None
    cancel_after: float | None = None
    """Cancel this many seconds after the tool started running."""
    expect_error: str | None = None
    """The error kind a failed case must report (``ExecutionFailed``, ``InvalidParameters``...)."""
    refused: bool = False
    """The request must be refused with ``expect_error`` before anything starts: no execution, no row."""

    def request(self) -> ExecutionRequest:
        return ExecutionRequest(
            tool_id=self.tool_id,
            parameters=self.parameters,
            context=ExecutionContext(tenant_id=DEMO_TENANT, user_id="demo", session_id=f"demo-{self.name}"),
            options=ExecutionOptions(
                timeout=timedelta(seconds=self.timeout) if self.timeout is not None else None,
                retry_count=self.retries,
                retry_delay=timedelta(milliseconds=self.retry_delay_ms) if self.retry_delay_ms is not None else None,
            ),
        )


DEMO_CASES: list[DemoCase] = [
    DemoCase("completes", "echo", ExecutionStatus.COMPLETED, "echo returns its parameters", {"message": "hello"}),
    DemoCase(
        "command tool",
        "wc",
        ExecutionStatus.COMPLETED,
        "awk counts lines and words of stdin in the sandbox (no network, read-only fs, own uid)",
        {"text": "durable tools on Temporal\nkilled when cancelled\n"},
    ),
    DemoCase(
        "retries",
        "flaky",
        ExecutionStatus.COMPLETED,
        "fails twice, succeeds on the third attempt",
        {"failures": 2},
        retries=2,
        retry_delay_ms=200,
    ),
    DemoCase(
        "times out",
        "sleep",
        ExecutionStatus.TIMED_OUT,
        "sleeps 30 s under a 1 s timeout",
        {"seconds": 30},
        timeout=1,
        expect_error="TimeoutExceeded",
    ),
    DemoCase(
        "fails",
        "fail",
        ExecutionStatus.FAILED,
        "always fails",
        {"message": "failed on purpose"},
        expect_error="ExecutionFailed",
    ),
    DemoCase(
        "rejected",
        "sleep",
        ExecutionStatus.FAILED,
        "parameters fail the tool's schema: refused before anything starts",
        {"seconds": -1},
        expect_error="InvalidParameters",
        refused=True,
    ),
    DemoCase(
        "cancelled",
        "sleep",
        ExecutionStatus.CANCELLED,
        "sleeps 30 s, cancelled after 1 s",
        {"seconds": 30},
        cancel_after=1.0,
    ),
    DemoCase(
        "composite",
        "fan-out-in",
        ExecutionStatus.COMPLETED,
        "a composite: echo, then sleep 1 s and echo in parallel, then join; each step a child execution",
        {"text": "hello", "seconds": 1},
    ),
]


@dataclass
class CaseOutcome:
    """How a case ended, as Temporal and the executions table report it."""

    case: DemoCase
    execution_id: str | None
    status: ExecutionStatus | None
    row_status: ExecutionStatus | None
    error_type: str | None

    @property
    def ok(self) -> bool:
        if self.case.refused:
            return self.execution_id is None and self.error_type == self.case.expect_error
        return (
            self.status == self.case.expect
            and self.row_status == self.case.expect
            and (self.case.expect_error is None or self.error_type == self.case.expect_error)
        )


def demo_settings(base: Settings, data_dir: Path) -> Settings:
    """The user's settings, with the demo's own data dir, SQLite file, ports and task queue.

    The ports are those of the settings (7233 and 8233 unless STEPFLOW_TEMPORAL_ADDRESS / _UI_PORT say
    otherwise) when they are free, else free ones the OS picks.
    """
    preferred = parse_address(base)
    address = pick_port(preferred.port)
    ui_port = pick_port(preferred.ui_port, avoid=(address,))
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": None,
            "executor": ExecutorSettings.model_validate(
                {**base.executor.model_dump(), "heartbeat_timeout": 2, "cancel_grace": 1}
            ),
            "temporal": TemporalSettings.model_validate(
                {
                    **base.temporal.model_dump(),
                    "address": f"127.0.0.1:{address}",
                    "ui_port": ui_port,
                    "task_queue": "stepflow-demo",
                }
            ),
        }
    )


@asynccontextmanager
async def demo_data_dir(keep_data: bool) -> AsyncIterator[Path]:
    """A fresh directory for the demo's state: ``.stepflow/demo`` (kept) or a temp dir (removed)."""
    if keep_data:
        await asyncio.to_thread(shutil.rmtree, DEMO_DIR, ignore_errors=True)
        await asyncio.to_thread(DEMO_DIR.mkdir, parents=True)
        yield DEMO_DIR
        return
    path = Path(tempfile.mkdtemp(prefix="stepflow-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def run_case(executor: Executor, case: DemoCase) -> CaseOutcome:
    """Start one case, cancel it when it asks for it, wait for its end and read its row."""
    try:
        execution_id = await executor.execute_tool_async(case.request())
    except ExecutorError as error:
        if not case.refused:
            raise
        refused = CaseOutcome(case=case, execution_id=None, status=None, row_status=None, error_type=error.kind)
        mark = "[green]ok[/]" if refused.ok else "[bold red]UNEXPECTED[/]"
        console.stdout.print(f"  {mark}  {case.name:<10} {case.tool_id:<6} -> refused  ({case.description})")
        return refused
    if case.cancel_after is not None:
        # Temporal pushes no "activity started" event to clients: poll the execution's description.
        while (await executor.get_execution_status(execution_id)) is not ExecutionStatus.RUNNING:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(case.cancel_after)
        await executor.cancel_execution(execution_id)
    with contextlib.suppress(WorkflowFailureError):  # the typed error is read from the result below
        await executor.client.get_workflow_handle(execution_id).result()
    result = await executor.get_execution_result(execution_id)
    row = await executor.projection.reader.get_execution(execution_id)
    outcome = CaseOutcome(
        case=case,
        execution_id=execution_id,
        status=result.status,
        row_status=ExecutionStatus(row.status) if row is not None else None,
        error_type=result.error.type if result.error else None,
    )
    mark = "[green]ok[/]" if outcome.ok else "[bold red]UNEXPECTED[/]"
    console.stdout.print(
        f"  {mark}  {case.name:<10} {case.tool_id:<6} -> {styled(result.status)}  ({case.description})"
    )
    return outcome


async def run_cases(executor: Executor, cases: list[DemoCase]) -> tuple[list[CaseOutcome], list[str]]:
    """Run every case at once; the outcomes, and the names of cases that raised or did not end in time."""
    tasks = {asyncio.create_task(run_case(executor, case)): case for case in cases}
    done, pending = await asyncio.wait(tasks, timeout=CASE_DEADLINE)
    problems = []
    for task in pending:
        task.cancel()
        console.stdout.print(f"  [bold red]STUCK[/]  {tasks[task].name}: not finished within {CASE_DEADLINE:.0f} s")
        problems.append(tasks[task].name)
    await asyncio.gather(*pending, return_exceptions=True)
    outcomes = []
    for task, case in tasks.items():
        if task not in done:
            continue
        error = task.exception()
        if error is None:
            outcomes.append(task.result())
            continue
        kind = error.kind if isinstance(error, ExecutorError) else type(error).__name__
        console.stdout.print(f"  [bold red]ERROR[/]  {case.name}: {kind}: {error}", highlight=False)
        problems.append(case.name)
    return outcomes, problems


def demo_table(outcomes: list[CaseOutcome], rows: list[ExecutionInfo]) -> Table:
    """The demo's rows of the ``executions`` table, each beside its case and the status it was expected to end in."""
    cases = {outcome.execution_id: outcome for outcome in outcomes}
    table = Table(title="executions (from the executions table)")
    for column in ("case", "execution_id", "tool", "status", "expected", "duration", "error_message"):
        table.add_column(column, overflow="fold", no_wrap=column == "execution_id")
    starts = {row.execution_id: row.start_time for row in rows}

    def order(row: ExecutionInfo) -> tuple[datetime, datetime]:
        """A composite's steps (ids "<parent>.<step>") right below their parent, in the order they started."""
        return starts.get(row.execution_id.split(".")[0], row.start_time), row.start_time

    for row in sorted(rows, key=order):
        outcome = cases.get(row.execution_id)
        error = row.error_message or ""
        parent = row.parent_execution_id
        step = f"└ step {row.execution_id.removeprefix(parent + '.')}" if parent else ""  # a composite's child
        table.add_row(
            outcome.case.name if outcome else step,
            row.execution_id,
            f"{row.tool_id} {row.version or ''}".strip(),
            styled(row.status),
            (("[green]✓[/] " if outcome.ok else "[red]✗[/] ") + outcome.case.expect.value) if outcome else "",
            f"{row.duration_ms} ms" if row.duration_ms is not None else "",
            error if len(error) <= 80 else error[:77] + "...",
        )
    return table


async def run_demo(*, keep_data: bool = False, keep_running: bool = False, cases: list[DemoCase] | None = None) -> int:
    """Run the demo; 0 when every case ended as expected, 1 otherwise."""
    began = time.monotonic()
    cases = cases if cases is not None else DEMO_CASES
    base = load_settings()
    configure_logging(fmt=base.log_format, level=logging.ERROR)
    # failed attempts are the point of the demo: keep Temporal's and the tools' own reports of them quiet
    logging.getLogger("temporalio").setLevel(logging.CRITICAL)
    logging.getLogger("stepflow.tool").setLevel(logging.CRITICAL)
    async with demo_data_dir(keep_data) as data_dir:
        config = demo_settings(base, data_dir)
        async with running_server(config, headless=False) as server:
            client = await connect(config.temporal)
            registry = build_registry(config)
            async with running_projection(config, registry) as projection:
                worker = build_worker(client, config, registry, projection)
                async with worker:
                    executor = Executor(client, projection, config, principal=LOCAL_ADMIN)
                    console.stdout.print(
                        f"\nRunning {len(cases)} executions on task queue {config.temporal.task_queue}:"
                    )
                    outcomes, problems = await run_cases(executor, cases)
                    rows = await executor.list_executions(ExecutionFilter(tenant_id=DEMO_TENANT, limit=1000))
                    console.stdout.print()
                    console.stdout.print(demo_table(outcomes, rows))
                    console.stdout.print(
                        f'Temporal Web UI: [bold]{server.where.ui_url}[/] (filter: StepflowTenantId="{DEMO_TENANT}")',
                        highlight=False,
                    )
                    if keep_running:
                        console.stdout.print("Server and worker keep running; Ctrl-C stops them.")
                        await _until_interrupted()
    failed = [*problems, *(outcome.case.name for outcome in outcomes if not outcome.ok)]
    elapsed = time.monotonic() - began
    if failed:
        names = ", ".join(failed)
        console.stderr.print(f"[bold red]demo: {len(failed)} case(s) ended unexpectedly: {names}[/]")
        return 1
    console.stdout.print(
        f"demo: all {len(outcomes)} cases ended as expected in {elapsed:.1f} s; server and worker stopped"
    )
    return 0


async def _until_interrupted() -> None:
    await stop_event().wait()
