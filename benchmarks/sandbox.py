"""6. Sandbox start: ``true`` in the sandbox against a plain child process, alone and through a whole execution.

Alone (in the suite's process, needs root like a command tool's worker): ``run_sandboxed(["true"])`` (namespaces,
read-only mounts, an unprivileged uid, rlimits, a fresh working directory created and removed, /proc checks that
nothing survived) against ``subprocess.run(["true"])``. Through an execution: ``execute_tool`` of a command tool
``true`` against a bare workflow whose activity starts ``true`` as a plain child process, and against the product's
Python ``echo`` tool (what the sandbox adds inside the product). And one Python tool body run in-process against
the same body with ``isolation="sandbox"`` (:mod:`benchmarks.sandbox_tools`). Median (p50) and p95 milliseconds of
each round's runs, one at a time.

The API round trip (an HTTP request to the product's API against ``execute_tool`` in process) belongs beside this
one once the API exists: a module ``api_round_trip.py`` with the same ``measure`` function, listed in ``SUITE``.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import sandbox_tools
from benchmarks.bare import BareTrue
from benchmarks.harness.context import Context, Skipped
from benchmarks.harness.rounds import Measurement, alternate
from benchmarks.harness.stage import BARE_QUEUE
from benchmarks.harness.stats import Row
from stepflow.models import ExecutionRequest
from stepflow.registry import ToolRegistry
from stepflow.sandbox import DEFAULT_LIMITS, run_sandboxed, sandbox_unavailable

NAME = "6 sandbox start"
ENV = {"PATH": "/usr/bin:/bin"}


def median_ms(count: int, one: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Measurement]]:
    async def once() -> Measurement:
        found = []
        for _ in range(count):
            started = time.perf_counter()
            await one()
            found.append((time.perf_counter() - started) * 1000)
        ordered = sorted(found)
        return {"ms": statistics.median(found), "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]}

    return once


def python_tool(definition: Any) -> Callable[[], Awaitable[Any]]:
    """One run of a Python tool's body outside Temporal, in whichever isolation the tool declares."""
    return lambda: definition.run({"message": "hi"}, sandbox_tools.QuietContext())


async def sandboxed() -> None:
    result = await run_sandboxed(["true"], ENV, DEFAULT_LIMITS)
    if not result.ok:
        raise RuntimeError(f"`true` in the sandbox did not succeed: {result}")


async def plain() -> None:
    subprocess.run(["true"], check=True)  # noqa: ASYNC221 - the baseline is the blocking call itself


async def measure(context: Context) -> list[Row]:
    reason = sandbox_unavailable()
    if reason is not None:
        raise Skipped(reason)
    count, rounds = context.pick(20, 5), context.rounds(5)
    alone = await alternate(rounds, {"sandbox": median_ms(count, sandboxed), "plain": median_ms(count, plain)})
    tools = {definition.id: definition for definition in ToolRegistry().load_module(sandbox_tools.__name__)}
    isolated, in_process = tools["bench-echo-sandboxed"], tools["bench-echo"]
    await python_tool(isolated)()  # warm-up: the Python zygote starts once per worker, not per run
    python = await alternate(
        rounds,
        {"isolated": median_ms(count, python_tool(isolated)), "in_process": median_ms(count, python_tool(in_process))},
    )
    stage = context.stage
    command, echo = ExecutionRequest(tool_id="true"), ExecutionRequest(tool_id="echo", parameters={"text": "hi"})

    async def bare() -> Any:
        return await stage.client.execute_workflow(BareTrue.run, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE)

    through = await alternate(
        rounds,
        {
            "command": median_ms(count, lambda: stage.executor.execute_tool(command)),
            "bare": median_ms(count, bare),
            "echo": median_ms(count, lambda: stage.executor.execute_tool(echo)),
        },
    )
    p50, p95 = (f"{stat} ms ({count}/round, one at a time)" for stat in ("median", "p95"))
    alone_names, through_name = (
        ("run_sandboxed(['true'])", "subprocess.run(['true'])"),
        "command tool true, execute_tool",
    )
    pairs = [  # (metric, subject, baseline, figures, subject's key, baseline's key, statistic)
        (p50, *alone_names, alone, "sandbox", "plain", "ms"),
        (p95, *alone_names, alone, "sandbox", "plain", "p95"),
        (p50, "Python tool, isolation=sandbox", "the same, in-process", python, "isolated", "in_process", "ms"),
        (p95, "Python tool, isolation=sandbox", "the same, in-process", python, "isolated", "in_process", "p95"),
        (p50, through_name, "bare: activity starts true", through, "command", "bare", "ms"),
        (p50, through_name, "echo, execute_tool", through, "command", "echo", "ms"),
    ]
    return [Row(NAME, metric, s, b, got[sk][stat], got[bk][stat]) for metric, s, b, got, sk, bk, stat in pairs]
