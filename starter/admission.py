"""Admission control: new executions are refused while the task queue's backlog is at its limit.

Temporal's task queue is the queue, so its own backlog statistics (``describe_task_queue``) are the queue
length; nothing is counted on our side. The backlog is read at most once a second and concurrent starts
share that reading: a burst of starts must not become a burst of RPCs (the server rate-limits them).
"""

from __future__ import annotations

import asyncio
import time

import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from stepflow.errors import InternalError, ResourceLimitExceeded
from stepflow.monitoring import queue_length
from stepflow.observability import metrics as ops_metrics
from stepflow.observability import tracing

log = structlog.get_logger(__name__)

BACKLOG_CHECK_INTERVAL = 1.0  # seconds between two reads of the task queue's backlog


class AdmissionControl:
    """STEPFLOW_SCHEDULER_QUEUE_SIZE over one task queue's backlog (0 admits everything)."""

    def __init__(self, client: Client, task_queue: str, queue_size: int) -> None:
        self._client = client
        self._task_queue = task_queue
        self._limit = queue_size
        self._backlog = 0
        self._read_at = -BACKLOG_CHECK_INTERVAL
        self._lock = asyncio.Lock()

    @tracing.traced("stepflow.admission")
    async def admit(self) -> None:
        """Return if a new execution may start; ResourceLimitExceeded naming the limit and the backlog if not."""
        if self._limit == 0:
            return
        if time.monotonic() - self._read_at >= BACKLOG_CHECK_INTERVAL:
            async with self._lock:
                if time.monotonic() - self._read_at >= BACKLOG_CHECK_INTERVAL:
                    await self._read_backlog()
        if self._backlog >= self._limit:
            ops_metrics.admission_refused(self._task_queue)
            raise ResourceLimitExceeded(
                f"the task queue {self._task_queue!r} has {self._backlog} tasks waiting for a worker, at or above "
                f"STEPFLOW_SCHEDULER_QUEUE_SIZE={self._limit}; retry later, start more workers or raise the limit"
            )

    async def _read_backlog(self) -> None:
        try:
            self._backlog = await queue_length(self._client, self._task_queue)
        except InternalError as error:
            cause = error.__cause__
            if isinstance(cause, RPCError) and cause.status == RPCStatusCode.UNIMPLEMENTED:
                log.warning("admission control off: this Temporal server reports no task-queue backlog")
                self._backlog, self._read_at = 0, float("inf")  # never ask again
                return
            raise
        self._read_at = time.monotonic()
