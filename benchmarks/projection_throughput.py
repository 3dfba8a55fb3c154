"""Benchmark: what the SQL projection costs next to Temporal itself, and what group commit buys.

Run: ``.venv/bin/python -m benchmarks.projection_throughput [--executions 300] [--rounds 3] [--rows 5000]``

On one dev server, in one run:

(a) executions/sec of a bare Temporal workflow with one trivial activity;
(b) executions/sec of ``echo`` through the full product (Executor, ToolExecutionWorkflow, its
    ``run_and_record`` activity with the tool's log lines, metrics and the executions row) on a SQLite
    projection;

both with the same worker settings (slots, pollers), N executions started at once. They run side by side in
rounds, (a) then (b), then (b) then (a), and so on, so that the machine's drift (other processes, the dev
server's growing in-memory store) falls on both alike; the ratio is the median of the rounds' ratios. Each
run also reports the CPU time per execution of this process (client and worker) and of the dev server.
Then the projection writer alone: rows/sec with group commit (one transaction per batch) versus one
transaction per row.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from benchmarks.bare import BareWorkflow, bare_echo
from starter.executor import Executor
from stepflow import search_attributes
from stepflow.config import ExecutorSettings, Settings, TemporalSettings, load_settings
from stepflow.converter import DATA_CONVERTER
from stepflow.db.projection import Projection
from stepflow.db.writer import ExecutionStart
from stepflow.logging import configure_logging
from stepflow.models import ExecutionFilter, ExecutionRequest, LogEntry, LogLevel, ToolInfo
from worker.build import build_registry, build_worker

SLOTS = 200


def _settings(data_dir: Path) -> Settings:
    return load_settings(
        data_dir=data_dir,
        executor=ExecutorSettings(max_concurrent_executions=SLOTS, heartbeat_timeout=30),
        temporal=TemporalSettings(task_queue=f"bench-{uuid.uuid4().hex[:8]}"),
    )


async def _bare_worker(client: Client, settings: Settings) -> Worker:
    """The product's Worker settings (slots, pollers), with the bare workflow and activity instead."""
    unused = await Projection.open(settings.resolved_database_url)
    probe = build_worker(client, settings, build_registry(settings), unused, task_queue=f"probe-{uuid.uuid4()}")
    config = probe.config()
    await unused.close()
    return Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=[BareWorkflow],
        activities=[bare_echo],
        tuner=config.get("tuner"),
        workflow_task_poller_behavior=config["workflow_task_poller_behavior"],
        activity_task_poller_behavior=config["activity_task_poller_behavior"],
    )


async def bare(client: Client, n: int, data_dir: Path) -> float:
    settings = _settings(data_dir)
    async with await _bare_worker(client, settings):
        started = time.perf_counter()
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    BareWorkflow.run, {"i": i}, id=f"bare-{uuid.uuid4()}", task_queue=settings.temporal.task_queue
                )
                for i in range(n)
            )
        )
        await asyncio.gather(*(handle.result() for handle in handles))
        return n / (time.perf_counter() - started)


async def product(client: Client, n: int, data_dir: Path) -> tuple[float, int]:
    settings = _settings(Path(tempfile.mkdtemp(dir=data_dir)))  # a fresh projection for each run
    registry = build_registry(settings)
    projection = await Projection.open(settings.resolved_database_url)
    await projection.writer.upsert_tools([definition.info() for definition in registry.all()])
    executor = Executor(client, projection, settings)
    try:
        async with build_worker(client, settings, registry, projection):
            started = time.perf_counter()
            ids = await asyncio.gather(
                *(executor.execute_tool_async(ExecutionRequest(tool_id="echo", parameters={"i": i})) for i in range(n))
            )
            await asyncio.gather(*(client.get_workflow_handle(i).result() for i in ids))
            rate = n / (time.perf_counter() - started)
        rows = len(await projection.reader.list_executions(ExecutionFilter(limit=10_000)))
        if rows != n:
            raise RuntimeError(f"{rows} executions rows for {n} executions")
        return rate, projection.committer.transactions
    finally:
        await projection.close()


async def writer(rows: int, max_batch: int, data_dir: Path) -> float:
    """Rows/sec of concurrent idempotent writes (an executions row plus its log line each)."""
    projection = await Projection.open(
        f"sqlite+aiosqlite:///{data_dir / f'writer-{max_batch}.db'}", max_batch=max_batch
    )
    try:
        await projection.writer.upsert_tools([ToolInfo(id="echo", version="1.0.0")])
        now = datetime.now(UTC)

        async def one(i: int) -> None:
            execution_id = f"w-{i}"
            line = LogEntry(
                execution_id=execution_id,
                level=LogLevel.INFO,
                message="validated",
                timestamp=now,
                metadata={"seq": "prepare"},
            )
            start = ExecutionStart(execution_id, ExecutionRequest(tool_id="echo"), "1.0.0", now)
            await projection.writer.record_execution_start(start, lines=[line])

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(rows)))
        return rows / (time.perf_counter() - started)
    finally:
        await projection.close()


def compile_sources() -> None:
    """Write the project's bytecode caches, as an installed package has them.

    The workflow sandbox re-imports the workflow modules for every workflow it starts; with
    PYTHONDONTWRITEBYTECODE set (as in this development environment) that means compiling them from source
    each time, which is a cost of the environment, not of the product, and would be charged to (b) only.
    """
    sys.dont_write_bytecode = False
    root = Path(__file__).resolve().parent.parent
    for package in ("workflows", "activities", "stepflow", "starter", "worker", "benchmarks"):
        compileall.compile_dir(root / package, quiet=1)


@dataclass(frozen=True)
class Run:
    """One measured run: throughput and CPU milliseconds per execution (this process; the dev server)."""

    rate: float
    own_cpu_ms: float
    server_cpu_ms: float

    def __str__(self) -> str:
        return f"{self.rate:6.1f} executions/s, CPU {self.own_cpu_ms:4.1f} + {self.server_cpu_ms:4.1f} ms/execution"


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    """CPU seconds used so far by this process's children (the dev server), from /proc."""
    total, me, tick = 0.0, os.getpid(), os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


async def measured(run: Callable[[], Awaitable[float]], n: int) -> Run:
    own, server = _own_cpu(), _children_cpu()
    rate = await run()
    return Run(rate, (_own_cpu() - own) / n * 1000, (_children_cpu() - server) / n * 1000)


async def main() -> None:
    compile_sources()
    configure_logging()  # as `stepflow worker` does: the tool's lines go to stderr too (JSON unless a TTY)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="(a)/(b) pairs, alternating which runs first.")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--only", choices=["product", "bare", "writer"], default=None, help="Run one part (profiling).")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="stepflow-bench-"))
    if args.only == "writer":
        print(f"writer: {await writer(args.rows, 500, data_dir):.0f} rows/s batched")
        return
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=search_attributes.ALL_KEYS,
        dev_server_extra_args=["--dynamic-config-value", "frontend.workerHeartbeatsEnabled=false"],
    )
    try:
        n, client = args.executions, env.client

        async def run_bare() -> float:
            return await bare(client, n, data_dir)

        async def run_product() -> float:
            return (await product(client, n, data_dir))[0]

        if args.only == "product":
            print(f"product: {await measured(run_product, n)}")
            return
        await bare(client, 20, data_dir)  # warm up the server
        ratios = []
        for round_ in range(1, args.rounds + 1):
            if round_ % 2:
                a, b = await measured(run_bare, n), await measured(run_product, n)
            else:
                b, a = await measured(run_product, n), await measured(run_bare, n)
            ratios.append(b.rate / a.rate)
            print(f"round {round_}: (a) bare {a}")
            print(f"         (b) echo {b}   (b)/(a) {b.rate / a.rate:.2f}")
        print(f"(b)/(a), median of {args.rounds} rounds of {n} executions each: {statistics.median(ratios):.2f}")
    finally:
        await env.shutdown()
    batched = await writer(args.rows, 500, data_dir)
    single = await writer(args.rows, 1, data_dir)
    print(f"writer, group commit (500/tx)  : {batched:9.0f} rows/s ({args.rows} rows)")
    print(f"writer, one transaction per row: {single:9.0f} rows/s")
    print(f"    speed-up                   : {batched / single:7.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
