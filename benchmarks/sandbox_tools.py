"""The Python tools benchmarks/command_overhead.py compares: one body, run in-process and in the sandbox.

A module of its own: a sandboxed tool is found again by module and name in the zygote, which a script's
``__main__`` cannot be.
"""

from __future__ import annotations

from pydantic import BaseModel

from stepflow.registry import ToolContext, tool


class Message(BaseModel):
    message: str = "hi"


async def _echo(params: Message, ctx: ToolContext) -> dict[str, str]:
    return {"message": params.message}


@tool("bench-echo")
async def echo_in_process(params: Message, ctx: ToolContext) -> dict[str, str]:
    """Return the message, inside the worker process."""
    return await _echo(params, ctx)


@tool("bench-echo-sandboxed", isolation="sandbox")
async def echo_sandboxed(params: Message, ctx: ToolContext) -> dict[str, str]:
    """Return the message, in the sandbox."""
    return await _echo(params, ctx)
