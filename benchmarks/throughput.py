"""1. Throughput: N ``echo`` executions started at once, executions per second until the last one completed.

Product: ``Executor.execute_tool`` of ``echo`` (the tool's activity, its row, log lines and metrics in the SQLite
projection, search attributes). Bare: ``execute_workflow`` of a workflow running one activity that returns its
input. Same server, same worker sizing (200 slots), same N, alternating rounds. Also the CPU time per execution of
the suite's process (the clients), of the worker process and of the server, from /proc.
"""

from __future__ import annotations

import asyncio
import uuid

from benchmarks.bare import BareWorkflow
from benchmarks.harness.context import Context
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stage import BARE_QUEUE
from benchmarks.harness.stats import Row
from benchmarks.harness.timing import CPU_FIGURES, timed
from stepflow.models import ExecutionRequest

NAME = "1 throughput"


async def measure(context: Context) -> list[Row]:
    stage = context.stage
    n = context.pick(300, 40)

    async def product() -> Measurement:
        requests = [ExecutionRequest(tool_id="echo", parameters={"i": i}) for i in range(n)]

        async def run() -> object:
            return await asyncio.gather(*(stage.executor.execute_tool(request) for request in requests))

        return await timed(run, per=n, pids={"worker": stage.product_worker.pid, "server": stage.server.pid})

    async def bare() -> Measurement:
        async def run() -> object:
            return await asyncio.gather(
                *(
                    stage.client.execute_workflow(
                        BareWorkflow.run, {"i": i}, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
                    )
                    for i in range(n)
                )
            )

        return await timed(run, per=n, pids={"worker": stage.bare_worker.pid, "server": stage.server.pid})

    found = await alternate(context.rounds(5), {"product": product, "bare": bare})
    product_rate = [1000 / ms for ms in found["product"]["ms"]]
    bare_rate = [1000 / ms for ms in found["bare"]["ms"]]
    subject, baseline = "echo, Executor", "1-activity workflow"
    rows = [Row(NAME, f"executions/s, {n} at once", subject, baseline, product_rate, bare_rate, ">= 0.95x")]
    for key, label in CPU_FIGURES:
        rows.append(
            Row(NAME, f"CPU ms/execution, {label}", subject, baseline, found["product"][key], found["bare"][key])
        )
    return rows
