"""The tools a starter may ask for, from the ``tools`` table that every worker fills when it starts.

A request for an unknown tool or version is answered at once with ToolNotFound instead of starting a
workflow that would only fail. A tool found is remembered for TOOL_CACHE_SECONDS (tools are only ever
added) and concurrent starts share one read, so a burst of starts does not read the same row each time;
a tool or version not found is always looked up afresh.

The table is a convenience, not the authority: every worker checks the request again against its own
tools. So while the projection database is unreachable a start does not fail: the tool is taken as the
catalog last saw it, or as unknown (``kind`` None), and the workflow asks the worker what it is.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from stepflow.db.reader import ProjectionReader
from stepflow.errors import DatabaseError, ToolNotFound
from stepflow.models import ExecutionRequest, ToolInfo
from stepflow.observability import tracing

log = structlog.get_logger(__name__)

TOOL_CACHE_SECONDS = 5.0


class ToolCatalog:
    """Which tools (and versions) exist, and of which kind, as the workers registered them."""

    def __init__(self, reader: ProjectionReader) -> None:
        self._reader = reader
        self._found: dict[str, tuple[float, ToolInfo]] = {}
        self._reads: dict[str, asyncio.Future[ToolInfo | None]] = {}

    @tracing.traced("stepflow.check_tool")
    async def find(self, request: ExecutionRequest) -> ToolInfo:
        """The requested tool (its kind, idempotence, schema), or ToolNotFound naming what is missing."""
        found_at, known = self._found.get(request.tool_id, (-TOOL_CACHE_SECONDS, None))
        fresh = time.monotonic() - found_at < TOOL_CACHE_SECONDS
        if known is None or not fresh or (request.version is not None and request.version not in known.versions):
            try:
                known = await self._read(request.tool_id)
            except DatabaseError as error:
                return self._unchecked(request, known, error)
        if known is None:
            raise ToolNotFound(
                f"unknown tool {request.tool_id!r}; `stepflow tools` lists the registered ones "
                "(a tool is registered when a worker that has it starts)"
            )
        if request.version is not None and request.version not in known.versions:
            raise ToolNotFound(
                f"tool {request.tool_id!r} has no version {request.version!r}; versions: {', '.join(known.versions)}"
            )
        return known

    @staticmethod
    def _unchecked(request: ExecutionRequest, last_seen: ToolInfo | None, error: DatabaseError) -> ToolInfo:
        """The tool as last seen (or unknown) while the tools table cannot be read: the worker will check it."""
        log.warning("tool not checked at start: the projection database is unreachable", error=str(error))
        if last_seen is not None and (request.version is None or request.version in last_seen.versions):
            return last_seen
        return ToolInfo(id=request.tool_id, version=request.version or "", kind=None)

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
