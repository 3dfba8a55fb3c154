"""3. Sequential steps: a composite of N ``echo`` steps, each given the previous output; milliseconds per step.

Product: ``execute_tool`` of the composite ``chain-N`` (each step a child execution with its own row). Bare: a
workflow running N child workflows of one activity each, one after the other, and one running N activities.
Per step = the whole execution's time / N, so the parent's own start and end are spread over its steps. Also the
CPU time per step of the worker and of the server, which says where the time of a step goes.
"""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks.bare import BareActivityChain, BareChildChain
from benchmarks.harness.context import Context
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stage import BARE_QUEUE
from benchmarks.harness.stats import Row
from benchmarks.harness.timing import timed
from stepflow.models import ExecutionRequest

NAME = "3 sequential steps"
STEPS = 20


async def measure(context: Context) -> list[Row]:
    stage, client = context.stage, context.stage.client
    request = ExecutionRequest(tool_id=f"chain-{STEPS}", parameters={"text": "hi"})
    product_pids = {"worker": stage.product_worker.pid, "server": stage.server.pid}
    bare_pids = {"worker": stage.bare_worker.pid, "server": stage.server.pid}

    async def product() -> Measurement:
        return await timed(lambda: stage.executor.execute_tool(request), per=STEPS, pids=product_pids)

    async def children() -> Measurement:
        async def run() -> Any:
            return await client.execute_workflow(
                BareChildChain.run, STEPS, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
            )

        return await timed(run, per=STEPS, pids=bare_pids)

    async def activities() -> Measurement:
        async def run() -> Any:
            return await client.execute_workflow(
                BareActivityChain.run, STEPS, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
            )

        return await timed(run, per=STEPS, pids=bare_pids)

    found = await alternate(context.rounds(5), {"product": product, "children": children, "activities": activities})
    product_, children_, activities_ = (found[side] for side in ("product", "children", "activities"))
    metric = f"ms per step, {STEPS} steps"
    composite, child_chain, activity_chain = f"chain-{STEPS} composite", "bare: child workflows", "bare: activities"
    return [
        Row(NAME, metric, composite, child_chain, product_["ms"], children_["ms"]),
        Row(NAME, metric, composite, activity_chain, product_["ms"], activities_["ms"], "<= 2x"),
        Row(NAME, metric, child_chain, activity_chain, children_["ms"], activities_["ms"]),
        Row(NAME, "CPU ms/step, worker", composite, child_chain, product_["worker_cpu"], children_["worker_cpu"]),
        Row(NAME, "CPU ms/step, server", composite, child_chain, product_["server_cpu"], children_["server_cpu"]),
    ]
