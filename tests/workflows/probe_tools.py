"""Tools that exist only for tests: they count their attempts and raise the non-retryable kinds.

Load them into a worker with ``settings.model_copy(update={"tool_modules": [PROBE_MODULE]})``. The worker runs
in the test's own process, so :data:`CALLS` shows how many attempts of each execution really ran.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepflow.errors import InvalidParameters, PermissionDenied
from stepflow.registry import ToolContext, tool

PROBE_MODULE = __name__

CALLS: Counter[str] = Counter()
"""Attempts run, by execution id."""


class NoParams(BaseModel):
    """No parameters."""

    model_config = ConfigDict(extra="forbid")


class CountParams(BaseModel):
    """Anything; returned as the output."""

    model_config = ConfigDict(extra="allow")


class VersionParams(BaseModel):
    """Nothing needed."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="")


@tool("probe-count", version="1.0.0", description="Count the attempt, return the parameters.")
async def probe_count(params: CountParams, ctx: ToolContext) -> dict[str, Any]:
    CALLS[ctx.execution_id] += 1
    return {"attempt": ctx.attempt, **params.model_dump()}


@tool("probe-invalid", version="1.0.0", description="Count the attempt, raise InvalidParameters.")
async def probe_invalid(params: NoParams, ctx: ToolContext) -> None:
    CALLS[ctx.execution_id] += 1
    raise InvalidParameters("probe-invalid: the tool itself rejected its parameters")


@tool("probe-denied", version="1.0.0", description="Count the attempt, raise PermissionDenied.")
async def probe_denied(params: NoParams, ctx: ToolContext) -> None:
    CALLS[ctx.execution_id] += 1
    raise PermissionDenied("probe-denied: not allowed to touch this")


@tool("probe-versioned", version="1.2.0", description="Version 1.2.0.")
async def probe_versioned_12(params: VersionParams, ctx: ToolContext) -> dict[str, str]:
    return {"version": "1.2.0"}


@tool("probe-versioned", version="1.10.0", description="Version 1.10.0, the latest.")
async def probe_versioned_110(params: VersionParams, ctx: ToolContext) -> dict[str, str]:
    return {"version": "1.10.0"}


@tool("probe-crash", version="1.0.0", description="Count the attempt, raise a plain Python exception.")
async def probe_crash(params: NoParams, ctx: ToolContext) -> None:
    CALLS[ctx.execution_id] += 1
    raise ValueError(f"probe-crash: attempt {ctx.attempt} hit a bug")
