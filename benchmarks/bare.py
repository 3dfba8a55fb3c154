"""Bare Temporal: the workflows and activities the product is measured against, with nothing of the product in them.

Each does the same work as its product counterpart (return the parameters, sleep with heartbeats, start ``true``)
through Temporal's plainest route: the default JSON converter, no search attributes, memo or projection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

TIMEOUT = timedelta(seconds=60)
SLEEP_HEARTBEAT_EVERY = 1.0  # seconds, as the product's `sleep` tool reports progress


@activity.defn(name="bare_echo")
async def bare_echo(parameters: dict[str, Any]) -> dict[str, Any]:
    """Return the parameters (what the product's ``echo`` tool does, minus everything around it)."""
    return parameters


@activity.defn(name="bare_sleep")
async def bare_sleep(seconds: float) -> float:
    """Sleep ``seconds``, heartbeating each second (cancellable, like the product's ``sleep``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        activity.heartbeat(seconds - left)
        await asyncio.sleep(min(SLEEP_HEARTBEAT_EVERY, left))
    return seconds


@activity.defn(name="bare_true")
async def bare_true() -> int:
    """Start ``true`` and wait for it: a plain child process, no sandbox."""
    process = await asyncio.create_subprocess_exec("true")
    return await process.wait()


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    """Runs ``bare_echo`` once."""

    @workflow.run
    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(bare_echo, parameters, start_to_close_timeout=TIMEOUT)
        return result


@workflow.defn(name="BareActivityChain")
class BareActivityChain:
    """``steps`` ``bare_echo`` activities one after the other, each given the previous one's output."""

    @workflow.run
    async def run(self, steps: int) -> dict[str, Any]:
        output: dict[str, Any] = {"text": "hi"}
        for _ in range(steps):
            output = await workflow.execute_activity(bare_echo, output, start_to_close_timeout=TIMEOUT)
        return output


@workflow.defn(name="BareChildChain")
class BareChildChain:
    """``steps`` child :class:`BareWorkflow` executions one after the other, each given the previous one's output."""

    @workflow.run
    async def run(self, steps: int) -> dict[str, Any]:
        output: dict[str, Any] = {"text": "hi"}
        parent = workflow.info().workflow_id
        for step in range(steps):
            output = await workflow.execute_child_workflow(BareWorkflow.run, output, id=f"{parent}.s{step}")
        return output


@workflow.defn(name="BareActivityFan")
class BareActivityFan:
    """``steps`` ``bare_echo`` activities at once; their outputs by step."""

    @workflow.run
    async def run(self, steps: int) -> dict[str, Any]:
        outputs = await asyncio.gather(
            *(
                workflow.execute_activity(bare_echo, {"text": "hi"}, start_to_close_timeout=TIMEOUT)
                for _ in range(steps)
            )
        )
        return {f"s{step}": output for step, output in enumerate(outputs)}


@workflow.defn(name="BareChildFan")
class BareChildFan:
    """``steps`` child :class:`BareWorkflow` executions at once; their outputs by step."""

    @workflow.run
    async def run(self, steps: int) -> dict[str, Any]:
        parent = workflow.info().workflow_id
        outputs = await asyncio.gather(
            *(
                workflow.execute_child_workflow(BareWorkflow.run, {"text": "hi"}, id=f"{parent}.s{step}")
                for step in range(steps)
            )
        )
        return {f"s{step}": output for step, output in enumerate(outputs)}


@workflow.defn(name="BareSleep")
class BareSleep:
    """Runs ``bare_sleep`` once, with a heartbeat timeout as the product's tool activities have."""

    @workflow.run
    async def run(self, seconds: float, heartbeat_timeout: float) -> float:
        slept: float = await workflow.execute_activity(
            bare_sleep,
            seconds,
            start_to_close_timeout=timedelta(seconds=seconds + 60),
            heartbeat_timeout=timedelta(seconds=heartbeat_timeout),
        )
        return slept


@workflow.defn(name="BareTrue")
class BareTrue:
    """Runs ``bare_true`` once."""

    @workflow.run
    async def run(self) -> int:
        code: int = await workflow.execute_activity(bare_true, start_to_close_timeout=TIMEOUT)
        return code


WORKFLOWS: list[type] = [
    BareWorkflow,
    BareActivityChain,
    BareChildChain,
    BareActivityFan,
    BareChildFan,
    BareSleep,
    BareTrue,
]
ACTIVITIES: list[Callable[..., Any]] = [bare_echo, bare_sleep, bare_true]
