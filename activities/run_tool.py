"""The ``run_tool`` activity: runs one attempt of a tool, heartbeating, and reports typed failures."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.names import RUN_TOOL
from activities.tool_context import ActivityToolContext
from stepflow.db.projection import Projection
from stepflow.errors import ExecutorError, to_application_error
from stepflow.models import RunToolInput
from stepflow.registry import ToolRegistry

log = structlog.get_logger(__name__)


class ToolActivities:
    """Runs tools from a registry; marks the projection row running when an attempt starts."""

    def __init__(
        self,
        registry: ToolRegistry,
        projection: Projection,
        *,
        heartbeat_every: timedelta,
        cancel_grace: timedelta = timedelta(seconds=5),
    ) -> None:
        self._registry = registry
        self._projection = projection
        self._heartbeat_every = heartbeat_every.total_seconds()
        self._cancel_grace = cancel_grace.total_seconds()

    @activity.defn(name=RUN_TOOL)
    async def run_tool(self, run: RunToolInput) -> Any:
        info = activity.info()
        ctx = ActivityToolContext(run, info.attempt, cancel_grace=self._cancel_grace)
        try:
            definition = self._registry.resolve(run.tool_id, run.version)
        except ExecutorError as error:
            raise to_application_error(error) from None
        await self._projection.mark_running(run.execution_id)
        heartbeater = asyncio.create_task(self._heartbeat(ctx))
        try:
            return await definition.run(run.parameters, ctx)
        except ExecutorError as error:
            ctx.logger.warning("attempt failed", error_type=error.kind, error=error.message)
            raise to_application_error(error) from None
        except (ApplicationError, asyncio.CancelledError):
            raise
        except Exception as error:
            ctx.logger.warning("attempt failed", error_type=type(error).__name__, error=str(error))
            raise ApplicationError(f"{type(error).__name__}: {error}", type="ExecutionFailed") from error
        finally:
            heartbeater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeater

    async def _heartbeat(self, ctx: ActivityToolContext) -> None:
        while True:
            activity.heartbeat(ctx.progress)
            await asyncio.sleep(self._heartbeat_every)
