"""4. Parallel steps: a composite of N independent ``echo`` steps; milliseconds until the parent completed.

Product: ``execute_tool`` of the composite ``fan-N`` (N child executions at once). Bare: a workflow starting N
child workflows of one activity each at once, and one scheduling N activities at once. Also the CPU time of the
worker and of the server per step.
"""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks.bare import BareActivityFan, BareChildFan
from benchmarks.harness.context import Context
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stage import BARE_QUEUE
from benchmarks.harness.stats import Row
from benchmarks.harness.timing import timed
from stepflow.models import ExecutionRequest

NAME = "4 parallel steps"


def fan_out(context: Context) -> int:
    """How many steps: 100, or 25 under --quick (the composite ``fan-N`` of the suite's tool file)."""
    return context.pick(100, 25)


async def measure(context: Context) -> list[Row]:
    stage, client = context.stage, context.stage.client
    steps = fan_out(context)
    request = ExecutionRequest(tool_id=f"fan-{steps}", parameters={"text": "hi"})
    product_pids = {"worker": stage.product_worker.pid, "server": stage.server.pid}
    bare_pids = {"worker": stage.bare_worker.pid, "server": stage.server.pid}

    async def product() -> Measurement:
        return await timed(lambda: stage.executor.execute_tool(request), per=1, pids=product_pids)

    async def children() -> Measurement:
        async def run() -> Any:
            return await client.execute_workflow(
                BareChildFan.run, steps, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
            )

        return await timed(run, per=1, pids=bare_pids)

    async def activities() -> Measurement:
        async def run() -> Any:
            return await client.execute_workflow(
                BareActivityFan.run, steps, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
            )

        return await timed(run, per=1, pids=bare_pids)

    found = await alternate(context.rounds(5), {"product": product, "children": children, "activities": activities})
    product_, children_, activities_ = (found[side] for side in ("product", "children", "activities"))
    metric = f"ms to completion, {steps} steps"
    composite, child_fan, activity_fan = f"fan-{steps} composite", "bare: child workflows", "bare: activities"

    def per_step(values: list[float]) -> list[float]:
        return [value / steps for value in values]

    return [
        Row(NAME, metric, composite, child_fan, product_["ms"], children_["ms"]),
        Row(NAME, metric, composite, activity_fan, product_["ms"], activities_["ms"]),
        Row(NAME, metric, child_fan, activity_fan, children_["ms"], activities_["ms"]),
        Row(
            NAME,
            "CPU ms/step, worker",
            composite,
            child_fan,
            per_step(product_["worker_cpu"]),
            per_step(children_["worker_cpu"]),
        ),
        Row(
            NAME,
            "CPU ms/step, server",
            composite,
            child_fan,
            per_step(product_["server_cpu"]),
            per_step(children_["server_cpu"]),
        ),
    ]
