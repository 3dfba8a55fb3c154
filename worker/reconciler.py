"""The reconciler: rows of recently closed executions that disagree with Temporal are mended, without a person.

Every write of the projection is idempotent and the workflow's record of an end overwrites an activity's
provisional one, so rows converge by themselves in the usual course. What remains is what no workflow code
runs for: an execution terminated in Temporal (its row stays ``running``), a row a fault lost altogether, an
end whose write was given up. The reconciler lists the executions of its task queue that closed in the last
``window`` (Temporal's visibility), reads their rows in one query, and for each whose row is missing or says
another status reads the history and restores the row from it (:mod:`stepflow.execution_records`). Each
mend is logged and counted (``stepflow_projection_rows_mended_total``). Every worker runs one; mends are
idempotent, so several at once do no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import structlog
from temporalio.client import Client, WorkflowExecution

from stepflow import temporal_state
from stepflow.db.projection import Projection
from stepflow.errors import ExecutorError
from stepflow.execution_records import compare, load_record, restore
from stepflow.models import ExecutionStatus
from stepflow.observability import metrics as ops_metrics
from stepflow.workflow_start import WORKFLOW_NAME

log = structlog.get_logger(__name__)


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
        self.mended = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile every ``interval`` seconds until ``stop`` is set; a failed round is logged, not fatal."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            if stop.is_set():
                return
            try:
                await self.reconcile()
            except (ExecutorError, RuntimeError) as error:  # the database or Temporal is down: next round
                log.warning("projection reconciliation skipped", error=str(error))

    async def reconcile(self) -> list[str]:
        """One round: the ids of the executions whose rows were mended."""
        since = (datetime.now(UTC) - self.window).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f'WorkflowType="{WORKFLOW_NAME}" AND TaskQueue="{self._task_queue}" AND CloseTime > "{since}"'
        closed = [execution async for execution in self._client.list_workflows(query)]
        found = await self._projection.reader.get_executions([execution.id for execution in closed])
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
        return mended

    async def _mend(self, execution: WorkflowExecution, row: object) -> bool:
        record = await load_record(self._client, execution)
        if record.status is None or (row is None and record.error is not None and record.error.type == "ToolNotFound"):
            return False  # still running after all, or rejected before it could have a row
        if row is not None and not compare(record, row):
            return False
        return await restore(self._projection, record)
