"""The spec's Monitoring interface over the SQL projection, and ExecutionMetrics with Temporal's queue length.

:class:`Monitoring` is the interface (a Protocol); :class:`SqlMonitoring` implements it on the projection's
tables: the activities record starts, ends and metrics through it, and the Executor and ``stepflow metrics``
read through it. The queue length is not kept anywhere of ours: Temporal's task queue is the queue, so it is
the backlog that ``describe_task_queue(report_stats=True)`` reports for the workflow and activity task queues.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from stepflow.db.projection import Projection
from stepflow.errors import InternalError
from stepflow.models import ExecutionMetrics, ExecutionResult, Metric, MetricFilter


class Monitoring(Protocol):
    """The spec's Monitoring trait."""

    async def record_execution_start(self, execution_id: str) -> None: ...
    async def record_execution_end(self, execution_id: str, result: ExecutionResult) -> None: ...
    async def record_metric(self, execution_id: str, metric: Metric) -> None: ...
    async def get_metrics(self, metric_filter: MetricFilter | None = None) -> list[Metric]: ...


async def queue_length(client: Client, task_queue: str) -> int:
    """Backlog of ``task_queue`` (workflow plus activity tasks waiting for a worker), from Temporal's stats."""
    total = 0
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        try:
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=kind,
                    report_stats=True,
                )
            )
        except RPCError as exc:
            raise InternalError(f"cannot describe task queue {task_queue!r}: {exc.message}") from exc
        total += response.stats.approximate_backlog_count
    return total


class SqlMonitoring:
    """Monitoring on the projection tables; ExecutionMetrics adds the task queue's backlog when a client is given."""

    def __init__(self, projection: Projection, client: Client | None = None, task_queue: str | None = None) -> None:
        self._projection = projection
        self._client = client
        self._task_queue = task_queue

    async def record_execution_start(self, execution_id: str) -> None:
        """The execution's attempt started: its row moves from pending to running (no-op otherwise)."""
        await self._projection.mark_running(execution_id)

    async def record_execution_end(self, execution_id: str, result: ExecutionResult) -> None:
        """Write the terminal state, its lifecycle line and the duration / attempts / output metrics (once)."""
        if not result.status.is_terminal:
            raise ValueError(f"record_execution_end needs a terminal status, got {result.status}")
        await self._projection.finish_execution(
            execution_id,
            status=result.status,
            end_time=result.timing.end_time or datetime.now(UTC),
            output=result.output,
            error=result.error,
        )

    async def record_metric(self, execution_id: str, metric: Metric) -> None:
        """Record one value (recording the same name again replaces it; ``attempts`` only grows)."""
        await self._projection.record_metrics(execution_id, [metric])

    async def get_metrics(self, metric_filter: MetricFilter | None = None) -> list[Metric]:
        """Metric rows matching the filter."""
        return await self._projection.get_metrics(metric_filter)

    async def execution_metrics(self, metric_filter: MetricFilter | None = None) -> ExecutionMetrics:
        """The spec's ExecutionMetrics for the executions the filter selects."""
        backlog = 0
        if self._client is not None and self._task_queue is not None:
            backlog = await queue_length(self._client, self._task_queue)
        return await self._projection.execution_metrics(metric_filter, queue_length=backlog)


__all__ = ["Monitoring", "SqlMonitoring", "queue_length"]
