"""The tools a starter may ask for, from the ``tools`` table that every worker fills when it starts.

A request for an unknown tool or version is answered at once with ToolNotFound instead of starting a
workflow that would only fail. A tool found is remembered for TOOL_CACHE_SECONDS (tools are only ever
added) and concurrent starts share one read, so a burst of starts does not read the same row each time;
a tool or version not found is always looked up afresh.
"""

from __future__ import annotations

import asyncio
import time

from stepflow.db.reader import ProjectionReader
from stepflow.errors import ToolNotFound
from stepflow.models import ExecutionRequest, ToolInfo
from stepflow.observability import tracing

TOOL_CACHE_SECONDS = 5.0


class ToolCatalog:
    """Which tools (and versions) exist, and of which kind, as the workers registered them."""

    def __init__(self, reader: ProjectionReader) -> None:
        self._reader = reader
        self._found: dict[str, tuple[float, ToolInfo]] = {}
        self._reads: dict[str, asyncio.Future[ToolInfo | None]] = {}

    @tracing.traced("stepflow.check_tool")
    async def kind_of(self, request: ExecutionRequest) -> str:
        """The kind of the requested tool, or ToolNotFound naming what is missing and where to look."""
        found_at, known = self._found.get(request.tool_id, (-TOOL_CACHE_SECONDS, None))
        fresh = time.monotonic() - found_at < TOOL_CACHE_SECONDS
        if known is None or not fresh or (request.version is not None and request.version not in known.versions):
            known = await self._read(request.tool_id)
        if known is None:
            raise ToolNotFound(
                f"unknown tool {request.tool_id!r}; `stepflow tools` lists the registered ones "
                "(a tool is registered when a worker that has it starts)"
            )
        if request.version is not None and request.version not in known.versions:
            raise ToolNotFound(
                f"tool {request.tool_id!r} has no version {request.version!r}; versions: {', '.join(known.versions)}"
            )
        return known.kind

    async def _read(self, tool_id: str) -> ToolInfo | None:
        """The tool's row, read once for all the callers waiting for it at the same time."""
        reading = self._reads.get(tool_id)
        if reading is None:
            reading = asyncio.ensure_future(self._reader.get_tool(tool_id))
            self._reads[tool_id] = reading
            reading.add_done_callback(lambda _: self._reads.pop(tool_id, None))
        info = await asyncio.shield(reading)
        if info is not None:
            self._found[tool_id] = (time.monotonic(), info)
        return info
