"""8. Step shapes (bare prototypes, ``--only shapes``; not in the default run): what a composite step would cost in
other shapes, before the product is changed to take one.

A chain of N steps, each a child workflow, in each shape of :mod:`benchmarks.bare_shapes`, against the bare
activity chain and against ``three-step`` (the product's step today, without its database work); and one execution
on its own in the ``one-activity`` and ``local`` shapes, against the suite's bare one-activity workflow.
"""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks.bare import BareActivityChain
from benchmarks.bare_shapes import SHAPES, BareShapedChain, BareShapedStep, start_attributes
from benchmarks.harness.context import Context
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stage import BARE_QUEUE
from benchmarks.harness.stats import Row
from benchmarks.harness.timing import timed
from benchmarks.latency import samples
from benchmarks.sequential import STEPS

NAME = "8 step shapes (bare)"


async def measure(context: Context) -> list[Row]:
    stage = context.stage
    client, pids = stage.client, {"worker": stage.bare_worker.pid, "server": stage.server.pid}

    def chain(shape: str) -> Any:
        async def once() -> Measurement:
            async def run() -> Any:
                return await client.execute_workflow(
                    BareShapedChain.run, args=[shape, STEPS], id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
                )

            return await timed(run, per=STEPS, pids=pids)

        return once

    async def activities() -> Measurement:
        async def run() -> Any:
            return await client.execute_workflow(
                BareActivityChain.run, STEPS, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
            )

        return await timed(run, per=STEPS, pids=pids)

    found = await alternate(context.rounds(5), {"activities": activities} | {s: chain(s) for s in SHAPES})
    metric = f"ms per step, {STEPS} steps"
    rows = [
        Row(NAME, metric, f"child: {s}", "bare: activities", found[s]["ms"], found["activities"]["ms"]) for s in SHAPES
    ]
    rows += [
        Row(NAME, metric, f"child: {s}", "child: three-step", found[s]["ms"], found["three-step"]["ms"])
        for s in SHAPES
        if s != "three-step"
    ]
    return rows + await single(context)


async def single(context: Context) -> list[Row]:
    """One execution at a time in the one-activity and local shapes, against the bare one-activity workflow."""
    client, count = context.stage.client, context.pick(40, 10)

    def one(shape: str) -> Any:
        attributes = None if shape == "activity" else start_attributes()

        async def run() -> Any:
            return await client.execute_workflow(
                BareShapedStep.run,
                args=[shape, {"text": "hi"}],
                id=f"bare-{uuid.uuid4()}",
                task_queue=BARE_QUEUE,
                search_attributes=attributes,
            )

        return lambda: samples(count, run)

    shapes = ("activity", "one-activity", "local")
    found = await alternate(context.rounds(5), {s: one(s) for s in shapes})
    return [
        Row(
            NAME,
            f"one execution, p50 ms ({count}/round)",
            f"{s}",
            "activity",
            found[s]["p50"],
            found["activity"]["p50"],
        )
        for s in shapes[1:]
    ]
