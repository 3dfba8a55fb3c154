"""Built-in Python tools: ``echo``, ``sleep``, ``flaky`` and ``fail``.

They exist for demos, tests and smoke checks of a deployment: each exercises one path of the engine
(success, a long cancellable tool with progress, retries, a permanent failure).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepflow.errors import ExecutionFailed
from stepflow.registry import ToolContext, tool


class EchoParams(BaseModel):
    """Any parameters at all; echo returns them."""

    model_config = ConfigDict(extra="allow")


@tool("echo", version="1.0.0", description="Return the parameters as the output.")
async def echo(params: EchoParams, ctx: ToolContext) -> dict[str, Any]:
    ctx.logger.info("echoing", keys=sorted(params.model_dump()))
    return params.model_dump()


class SleepParams(BaseModel):
    """How long to sleep."""

    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=86_400, description="Seconds to sleep.")


@tool("sleep", version="1.0.0", description="Sleep, reporting progress each second; cancellable.")
async def sleep(params: SleepParams, ctx: ToolContext) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + params.seconds
    while (now := loop.time()) < deadline:
        ctx.report_progress({"slept": round(now - started, 3), "of": params.seconds})
        await asyncio.sleep(min(1.0, deadline - now))
    ctx.logger.info("slept", seconds=params.seconds)
    return {"slept": params.seconds}


class FlakyParams(BaseModel):
    """How many attempts fail before one succeeds."""

    model_config = ConfigDict(extra="forbid")
    failures: int = Field(ge=0, le=100, description="Attempts that fail before success.")


@tool("flaky", version="1.0.0", description="Fail the first `failures` attempts, then succeed.")
async def flaky(params: FlakyParams, ctx: ToolContext) -> dict[str, int]:
    if ctx.attempt <= params.failures:
        ctx.logger.warning("failing on purpose", attempt=ctx.attempt, failures=params.failures)
        raise ExecutionFailed(f"flaky: attempt {ctx.attempt} of {params.failures} planned failures")
    return {"attempt": ctx.attempt, "failures": params.failures}


class FailParams(BaseModel):
    """The message to fail with."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(default="failed on purpose", max_length=10_000)


@tool("fail", version="1.0.0", description="Always fail with `message`.")
async def fail(params: FailParams, ctx: ToolContext) -> None:
    ctx.logger.error("failing", message=params.message)
    raise ExecutionFailed(params.message)
