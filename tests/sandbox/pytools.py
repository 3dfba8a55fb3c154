"""Python tools for the sandbox tests (STEPFLOW_TOOL_MODULES=tests.sandbox.pytools): isolated ones, and one
in-process tool whose output is larger than Temporal accepts."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel

from stepflow.errors import InvalidParameters
from stepflow.models import ResourceLimits
from stepflow.registry import ToolContext, tool


class Probe(BaseModel):
    paths: list[str] = []


class Megabytes(BaseModel):
    mb: int


class Seconds(BaseModel):
    seconds: float


class Nothing(BaseModel):
    pass


@tool("py-iso-probe", isolation="sandbox", env=("PATH", "STEPFLOW_TEST_ALLOWED"))
async def probe(params: Probe, ctx: ToolContext) -> dict[str, Any]:
    """Report what the tool's process sees, and use every channel back to the execution."""
    ctx.logger.info("probing", paths=len(params.paths))
    ctx.report_progress({"step": 1})
    ctx.record_metric("paths_checked", len(params.paths), "count")
    print("printed line", flush=True)
    return {
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "exists": {path: os.path.exists(path) for path in params.paths},  # noqa: ASYNC240 - a probe
        "execution_id": ctx.execution_id,
        "tenant": ctx.context.tenant_id,
    }


@tool("py-iso-hog", isolation="sandbox", limits=ResourceLimits(memory_mb=64))
async def hog(params: Megabytes, ctx: ToolContext) -> int:
    """Touch ``mb`` MiB of memory, one MiB at a time."""
    blocks = [bytearray(b"x" * 2**20) for _ in range(params.mb)]
    return len(blocks)


@tool("py-iso-sleep", isolation="sandbox")
async def sleep(params: Seconds, ctx: ToolContext) -> str:
    """Sleep asynchronously (a cancel reaches it as asyncio.CancelledError at once)."""
    ctx.report_progress("sleeping")
    await asyncio.sleep(params.seconds)
    return "slept"


@tool("py-iso-stubborn", isolation="sandbox")
async def stubborn(params: Seconds, ctx: ToolContext) -> str:
    """Block the event loop (a cancel cannot reach it: only SIGKILL after the grace period stops it)."""
    ctx.report_progress("blocking")
    time.sleep(params.seconds)  # noqa: ASYNC251 - blocking on purpose
    return "blocked"


@tool("py-iso-fail", isolation="sandbox")
async def fail(params: Nothing, ctx: ToolContext) -> None:
    """Fail with a typed error."""
    raise InvalidParameters("the probe says no")


@tool("py-big-output")
async def big_output(params: Megabytes, ctx: ToolContext) -> str:
    """Return ``mb`` MiB of text (in-process)."""
    return "y" * (params.mb * 2**20)
