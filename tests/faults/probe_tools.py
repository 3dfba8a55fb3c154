"""Tools for the fault-injection tests: they sleep like ``sleep`` and append every run to a file.

The worker runs in another process (the one the test kills), so each run leaves its trace in the file named by
the ``path`` parameter: one ``start`` line when the tool begins and one ``end`` line when it returns, with the
execution id, the tool's attempt, the worker's pid and the time. :func:`runs` reads it back. Loaded into a ``stepflow
worker`` with ``STEPFLOW_TOOL_MODULES=tests.faults.probe_tools`` (the repository root on ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepflow.registry import ToolContext, tool

PROBE_MODULE = __name__
IDEMPOTENT = "fault-probe"
NOT_IDEMPOTENT = "fault-probe-once"


class ProbeParams(BaseModel):
    """Where to record the run and how long to sleep."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="File each run appends its start and end lines to.")
    seconds: float = Field(ge=0, le=600, description="Seconds to sleep.")


def _append(path: str, line: str) -> None:
    """One write of one line with O_APPEND: lines of concurrent runs and processes never interleave."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (line + "\n").encode())
    finally:
        os.close(descriptor)


async def _probe(params: ProbeParams, ctx: ToolContext) -> dict[str, Any]:
    began = time.time()
    _append(params.path, f"start {ctx.execution_id} {ctx.attempt} {os.getpid()} {began:.3f}")
    ctx.logger.info("probe sleeping", seconds=params.seconds)
    loop = asyncio.get_running_loop()
    since = loop.time()
    while (slept := loop.time() - since) < params.seconds:
        ctx.report_progress({"slept": round(slept, 3), "of": params.seconds})
        await asyncio.sleep(min(0.5, params.seconds - slept))
    ctx.record_metric("probe_seconds", params.seconds, "s")
    ctx.logger.info("probe woke")
    _append(params.path, f"end {ctx.execution_id} {ctx.attempt} {os.getpid()} {time.time():.3f}")
    return {"slept": params.seconds, "pid": os.getpid(), "began": round(began, 3)}  # like most outputs: per run


@tool(IDEMPOTENT, version="1.0.0", description="Sleep, recording each run in a file; safe to run again.")
async def fault_probe(params: ProbeParams, ctx: ToolContext) -> dict[str, Any]:
    return await _probe(params, ctx)


@tool(
    NOT_IDEMPOTENT,
    version="1.0.0",
    description="Sleep, recording each run in a file; declared not safe to run again.",
    idempotent=False,
)
async def fault_probe_once(params: ProbeParams, ctx: ToolContext) -> dict[str, Any]:
    return await _probe(params, ctx)


@dataclass
class Runs:
    """What a probe file says: runs begun and runs finished, by execution id, and when and where each began."""

    started: Counter[str]
    finished: Counter[str]
    pids: dict[str, list[int]]
    began: dict[str, list[float]]


def runs(path: Path) -> Runs:
    """Read a probe file (missing: no run yet)."""
    found = Runs(Counter(), Counter(), {}, {})
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        event, execution_id, _attempt, pid, at = line.split()
        (found.started if event == "start" else found.finished)[execution_id] += 1
        if event == "start":
            found.pids.setdefault(execution_id, []).append(int(pid))
            found.began.setdefault(execution_id, []).append(float(at))
    return found
