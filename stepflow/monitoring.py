"""The spec's Monitoring interface, and the queue length that ExecutionMetrics takes from Temporal.

:class:`Monitoring` is the interface the activities record through; its implementation is the projection's
:class:`~stepflow.db.writer.ProjectionWriter`. The queue length is not kept anywhere of ours: Temporal's task
queue is the queue, so it is the backlog that ``describe_task_queue(report_stats=True)`` reports for the
workflow and activity task queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from stepflow.errors import InternalError
from stepflow.models import ExecutionResult, LogEntry, Metric, MetricFilter

if TYPE_CHECKING:
    from stepflow.db.writer import ExecutionStart


class Monitoring(Protocol):
    """The spec's Monitoring trait: an execution's start, end and measurements, and reading them back."""

    async def record_execution_start(self, start: ExecutionStart, *, lines: Sequence[LogEntry] = ()) -> None: ...
    async def record_execution_end(
        self,
        start: ExecutionStart,
        result: ExecutionResult,
        *,
        lines: Sequence[LogEntry] = (),
        metrics: Sequence[Metric] = (),
    ) -> None: ...
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


__all__ = ["Monitoring", "queue_length"]
