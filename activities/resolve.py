"""``resolve_tool``: what the worker's registry says a tool is, for a workflow whose starter could not tell.

A starter reads a tool's kind and idempotence from the ``tools`` table; while that table cannot be read it
starts the execution without them, and the workflow asks a worker with this local activity (no task-queue
round trip, no database) before it runs anything.
"""

from __future__ import annotations

from temporalio import activity

from activities.names import RESOLVE_TOOL
from stepflow.contracts import ResolvedTool
from stepflow.errors import ExecutorError, to_application_error
from stepflow.models import ExecutionRequest
from stepflow.registry import ToolRegistry


class ResolveActivities:
    """Answers from the worker's tool registry."""

    def __init__(self, registry: ToolRegistry) -> None:
        self._registry = registry

    @activity.defn(name=RESOLVE_TOOL)
    async def resolve_tool(self, request: ExecutionRequest) -> ResolvedTool:
        """The requested tool's kind and idempotence; ToolNotFound (not retried) when this worker lacks it."""
        try:
            definition = self._registry.resolve(request.tool_id, request.version)
        except ExecutorError as error:
            raise to_application_error(error) from None
        return ResolvedTool(kind=definition.kind, idempotent=definition.idempotent)
