"""The SELECTs behind the projection's reads: executions by filter, logs, metrics and their aggregate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, case, func, select

from stepflow.db.schema import execution_logs, execution_metrics, executions
from stepflow.models import ExecutionFilter, ExecutionStatus, MetricFilter


def filtered_executions(execution_filter: ExecutionFilter) -> Select[Any]:
    """The SELECT for a filter, newest first."""
    conditions = []
    f = execution_filter
    for column, value in (
        (executions.c.tool_id, f.tool_id),
        (executions.c.tenant_id, f.tenant_id),
        (executions.c.user_id, f.user_id),
        (executions.c.status, f.status.value if f.status else None),
        (executions.c.parent_execution_id, f.parent_execution_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if f.started_after is not None:
        conditions.append(executions.c.start_time >= f.started_after)
    if f.started_before is not None:
        conditions.append(executions.c.start_time < f.started_before)
    return (
        select(executions)
        .where(and_(True, *conditions))
        .order_by(executions.c.start_time.desc(), executions.c.id)
        .limit(f.limit)
    )


def execution_logs_after(execution_id: str, after_id: int, tenant_id: str | None = None) -> Select[Any]:
    """An execution's lines in the order they were logged (by timestamp, then insertion); with ``tenant_id``,
    only if the execution is that tenant's (filtered in the query, so another tenant's lines never leave SQL)."""
    query = select(execution_logs).where(
        and_(execution_logs.c.execution_id == execution_id, execution_logs.c.id > after_id)
    )
    if tenant_id is not None:
        query = query.join(executions, executions.c.id == execution_logs.c.execution_id).where(
            executions.c.tenant_id == tenant_id
        )
    return query.order_by(execution_logs.c.timestamp, execution_logs.c.id)


def _execution_conditions(metric_filter: MetricFilter) -> list[Any]:
    f = metric_filter
    conditions: list[Any] = []
    if f.execution_id is not None:
        conditions.append(executions.c.id == f.execution_id)
    if f.tool_id is not None:
        conditions.append(executions.c.tool_id == f.tool_id)
    if f.tenant_id is not None:
        conditions.append(executions.c.tenant_id == f.tenant_id)
    if f.since is not None:
        conditions.append(executions.c.start_time >= f.since)
    if f.until is not None:
        conditions.append(executions.c.start_time < f.until)
    return conditions


def filtered_metrics(metric_filter: MetricFilter) -> Select[Any]:
    """Metric rows of the executions the filter selects, oldest first."""
    conditions = _execution_conditions(metric_filter)
    if metric_filter.name is not None:
        conditions.append(execution_metrics.c.metric_name == metric_filter.name)
    return (
        select(execution_metrics)
        .join(executions, executions.c.id == execution_metrics.c.execution_id)
        .where(and_(True, *conditions))
        .order_by(execution_metrics.c.timestamp, execution_metrics.c.id)
        .limit(metric_filter.limit)
    )


def execution_counts(metric_filter: MetricFilter) -> Select[Any]:
    """Counts behind ExecutionMetrics: total, completed, failed (+ timed out), live, mean duration."""

    def count(*statuses: ExecutionStatus) -> Any:
        return func.sum(case((executions.c.status.in_([s.value for s in statuses]), 1), else_=0))

    return select(
        func.count().label("total"),
        count(ExecutionStatus.COMPLETED).label("ok"),
        count(ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT).label("failed"),
        count(ExecutionStatus.PENDING, ExecutionStatus.RUNNING).label("live"),
        func.avg(executions.c.duration_ms).label("avg_ms"),
    ).where(and_(True, *_execution_conditions(metric_filter)))
