"""The reconciler: rows of recently closed executions that disagree with Temporal are mended, without a person.

Every write of the projection is idempotent and the workflow's record of an end overwrites an activity's
provisional one, so rows converge by themselves in the usual course. What remains is what no workflow code
runs for: an execution terminated in Temporal (its row stays ``running``), a row a fault lost altogether, an
end whose write was given up. The reconciler lists the executions of its task queue that closed since its last
successful round (Temporal's visibility; ``window`` back for its first), reads their rows in batches, and for
each whose row is missing or says another status reads the history and restores the row from it
(:mod:`stepflow.execution_records`). A round that fails (the database or Temporal down) is simply repeated
later over the same span, so an outage of any length is caught up: this is also how an execution whose end
could not be recorded when it closed (the workflow waits for the projection only so long) gets its row. Each
mend is logged and counted (``stepflow_projection_rows_mended_total``). Every worker runs one; mends are
idempotent, so several at once do no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from stepflow import temporal_state
from stepflow.db.projection import Projection
from stepflow.errors import ExecutorError
from stepflow.execution_records import compare, load_record, restore
from stepflow.models import ExecutionStatus
from stepflow.observability import metrics as ops_metrics
from stepflow.workflow_start import WORKFLOW_NAME

log = structlog.get_logger(__name__)

BATCH = 500  # executions whose rows one query reads


@contextlib.asynccontextmanager
async def running_reconciler(
    client: Client, projection: Projection, task_queue: str, *, interval: float
) -> AsyncIterator[Reconciler | None]:
    """A reconciler running beside the worker until the block ends (none when ``interval`` is 0)."""
    if interval <= 0:
        yield None
        return
    reconciler = Reconciler(client, projection, task_queue, interval=interval)
    stop = asyncio.Event()
    task = asyncio.create_task(reconciler.run(stop), name="stepflow-reconciler")
    try:
        yield reconciler
    finally:
        stop.set()
        await task


class Reconciler:
    """Mends the rows of one task queue's recently closed executions from Temporal's histories."""

    def __init__(self, client: Client, projection: Projection, task_queue: str, *, interval: float) -> None:
        self._client = client
        self._projection = projection
        self._task_queue = task_queue
        self._interval = interval
        self.window = timedelta(seconds=max(600.0, 10 * interval))
        self.overlap = timedelta(seconds=max(60.0, interval))  # visibility may list a close a moment late
        self.mended = 0
        self._since: datetime | None = None  # where the next round starts: the last good round's start

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile every ``interval`` seconds until ``stop`` is set; a failed round is logged, not fatal."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            if stop.is_set():
                return
            try:
                await self.reconcile()
            except (ExecutorError, RPCError, RuntimeError) as error:  # the database or Temporal is down
                log.warning("projection reconciliation skipped", error=str(error))

    async def reconcile(self) -> list[str]:
        """One round: the ids of the executions whose rows were mended."""
        started = datetime.now(UTC)
        since = (self._since or started - self.window).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f'WorkflowType="{WORKFLOW_NAME}" AND TaskQueue="{self._task_queue}" AND CloseTime > "{since}"'
        closed = [execution async for execution in self._client.list_workflows(query)]
        found: dict[str, Any] = {}
        for at in range(0, len(closed), BATCH):
            batch = [execution.id for execution in closed[at : at + BATCH]]
            found.update(await self._projection.reader.get_executions(batch))
        mended = []
        for execution in closed:
            row = found.get(execution.id)
            if row is not None and ExecutionStatus(row.status) is temporal_state.closed_status(execution):
                continue  # agrees (the usual case): no history read
            if await self._mend(execution, row):
                mended.append(execution.id)
        if mended:
            self.mended += len(mended)
            ops_metrics.projection_rows_mended(len(mended))
            log.warning("projection rows mended from Temporal", count=len(mended), execution_ids=mended)
        self._since = started - self.overlap
        return mended

    async def _mend(self, execution: WorkflowExecution, row: object) -> bool:
        record = await load_record(self._client, execution)
        if record.status is None or (row is None and record.error is not None and record.error.type == "ToolNotFound"):
            return False  # still running after all, or rejected before it could have a row
        if row is not None and not compare(record, row):
            return False
        return await restore(self._projection, record)
