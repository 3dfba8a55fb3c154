"""5. Memory: N ``sleep`` executions held open at once; resident memory of the worker and of the server.

Each side gets a fresh server and fresh workers in every round (resident memory only grows within a process, so a
shared server would carry one side's high-water mark into the other's figure). Once every execution's activity has
started (asked of Temporal with ``describe``, the same way for both sides), the worker's and the server's resident
set is read three times half a second apart and the highest kept; the processes are then killed. Product: the
built-in ``sleep`` tool (reports progress each second). Bare: a workflow whose activity sleeps, heartbeating each
second, with the product's heartbeat timeout. Both workers have as many activity slots as executions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from benchmarks.bare import BareSleep
from benchmarks.harness.context import Context
from benchmarks.harness.processes import WorkerProcess, rss_mib
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stage import BARE_QUEUE, Stage, stage
from benchmarks.harness.stats import Row
from stepflow.models import ExecutionOptions, ExecutionRequest

NAME = "5 memory, sleeps held open"
HOLD_SECONDS = 3600.0  # longer than any round: the processes are killed once measured
STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED


async def wait_until_started(client: Client, workflow_ids: list[str], *, within: float = 600.0) -> None:
    """Return once every workflow's activity is running (TimeoutError after ``within`` seconds)."""
    pending, gate = set(workflow_ids), asyncio.Semaphore(20)

    async def started(workflow_id: str) -> bool:
        async with gate:
            description = await client.get_workflow_handle(workflow_id).describe()
        return any(a.state == STARTED for a in description.raw_description.pending_activities)

    async with asyncio.timeout(within):
        while pending:
            ids = sorted(pending)
            done = await asyncio.gather(*(started(workflow_id) for workflow_id in ids))
            pending -= {workflow_id for workflow_id, ok in zip(ids, done, strict=True) if ok}
            if pending:
                await asyncio.sleep(0.5)


async def resident(worker: WorkerProcess, server_pid: int) -> tuple[float, float]:
    """The highest of three readings, half a second apart, of the worker's and the server's resident MiB."""
    readings = []
    for _ in range(3):
        readings.append((rss_mib(worker.pid), rss_mib(server_pid)))
        await asyncio.sleep(0.5)
    return max(r[0] for r in readings), max(r[1] for r in readings)


async def held(running: Stage, worker: WorkerProcess, n: int, start: Callable[[int], Awaitable[str]]) -> Measurement:
    """Start ``n`` executions, wait until all run, measure; the worker is killed afterwards."""
    idle_worker, idle_server = rss_mib(worker.pid), rss_mib(running.server.pid)
    ids = await asyncio.gather(*(start(i) for i in range(n)))
    await wait_until_started(running.client, list(ids))
    worker_mib, server_mib = await resident(worker, running.server.pid)
    await worker.stop(graceful=False)
    return {
        "worker": worker_mib,
        "server": server_mib,
        "worker_per": (worker_mib - idle_worker) * 1024 / n,
        "server_per": (server_mib - idle_server) * 1024 / n,
    }


async def measure(context: Context) -> list[Row]:
    n = context.pick(1000, 100)
    extra = {"STEPFLOW_SCHEDULER_QUEUE_SIZE": str(10 * n)}  # admission control sized for the burst of starts
    tool_file = context.tool_file
    request = ExecutionRequest(
        tool_id="sleep",
        parameters={"seconds": HOLD_SECONDS},
        options=ExecutionOptions(timeout=timedelta(seconds=HOLD_SECONDS + 60)),
    )

    async def product() -> Measurement:
        async with stage(_fresh(context), tool_file, tuned=context.tuned, slots=n, **extra) as running:
            return await held(
                running, running.product_worker, n, lambda i: running.executor.execute_tool_async(request)
            )

    async def bare() -> Measurement:
        async with stage(_fresh(context), tool_file, tuned=context.tuned, slots=n, **extra) as running:
            heartbeat = running.settings.executor.heartbeat_timeout

            async def start(i: int) -> str:
                handle = await running.client.start_workflow(
                    BareSleep.run, args=[HOLD_SECONDS, heartbeat], id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
                )
                return handle.id

            return await held(running, running.bare_worker, n, start)

    found = await alternate(context.rounds(3, 1), {"product": product, "bare": bare})
    subject, baseline = f"{n} sleep executions", f"{n} bare sleep workflows"

    def row(metric: str, key: str, goal: str = "") -> Row:
        return Row(NAME, metric, subject, baseline, found["product"][key], found["bare"][key], goal)

    return [
        row("worker RSS MiB", "worker", "<= 1.2x"),
        row("server RSS MiB", "server", "<= 1.2x"),
        row("worker KiB/execution", "worker_per"),
        row("server KiB/execution", "server_per"),
    ]


def _fresh(context: Context) -> Path:
    return context.directory / f"memory-{uuid.uuid4().hex[:8]}"
