"""2. Sync latency: one execution at a time, from the call to its result; p50 and p95 of each round.

Product: ``Executor.execute_tool`` of ``echo``. Bare: ``execute_workflow`` of a workflow running one activity.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.bare import BareWorkflow
from benchmarks.harness.context import Context
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stage import BARE_QUEUE
from benchmarks.harness.stats import Row, percentile
from stepflow.models import ExecutionRequest

NAME = "2 sync latency"


async def samples(count: int, one: Callable[[], Awaitable[Any]]) -> Measurement:
    """Milliseconds of ``count`` calls of ``one``, one after the other: their p50 and p95."""
    found = []
    for _ in range(count):
        started = time.perf_counter()
        await one()
        found.append((time.perf_counter() - started) * 1000)
    return {"p50": percentile(found, 50), "p95": percentile(found, 95)}


async def measure(context: Context) -> list[Row]:
    stage = context.stage
    count = context.pick(40, 10)

    async def product() -> Measurement:
        request = ExecutionRequest(tool_id="echo", parameters={"text": "hi"})
        return await samples(count, lambda: stage.executor.execute_tool(request))

    async def bare() -> Measurement:
        return await samples(
            count,
            lambda: stage.client.execute_workflow(
                BareWorkflow.run, {"text": "hi"}, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
            ),
        )

    found = await alternate(context.rounds(5), {"product": product, "bare": bare})
    subject, baseline = "echo, execute_tool", "1-activity execute_workflow"
    return [
        Row(
            NAME, f"p50 ms ({count}/round)", subject, baseline, found["product"]["p50"], found["bare"]["p50"], "<= 1.2x"
        ),
        Row(
            NAME, f"p95 ms ({count}/round)", subject, baseline, found["product"]["p95"], found["bare"]["p95"], "<= 1.2x"
        ),
    ]
