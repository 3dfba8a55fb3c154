"""execution_logs and execution_metrics: idempotent writes and the reads behind logs, metrics and monitoring.

Log lines carry a deterministic ``metadata.seq`` and metrics are unique per (execution, name), so a retried
write skips what an earlier try committed: ``ON CONFLICT DO NOTHING`` for lines, ``DO UPDATE`` for metrics
(a later attempt's value replaces an earlier one; ``attempts`` only grows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepflow.db.group_commit import RowStatement
from stepflow.db.schema import JSONText, UTCDateTime, execution_logs, execution_metrics, executions
from stepflow.models import (
    TERMINAL_STATUSES,
    ErrorInfo,
    ExecutionMetrics,
    ExecutionStatus,
    LogEntry,
    LogLevel,
    Metric,
    MetricFilter,
)

METRIC_UNITS: dict[str, str] = {
    "duration_ms": "ms",
    "queue_wait_ms": "ms",
    "attempts": "count",
    "output_bytes": "bytes",
    "cpu_time_ms": "ms",
    "max_rss_kb": "KiB",
}
TERMINAL_VALUES = sorted(status.value for status in TERMINAL_STATUSES)
# inline literals: an expanding IN parameter cannot be used with executemany
_TERMINAL_LITERALS: list[Any] = [literal_column(f"'{value}'") for value in TERMINAL_VALUES]
GROWING_METRIC = "attempts"  # only ever grows: a late write of an earlier attempt must not lower it


def terminal_event(status: ExecutionStatus, error: ErrorInfo | None) -> tuple[LogLevel, str]:
    """The lifecycle line finish_execution logs for a terminal status."""
    detail = "" if error is None else f": {error.type}: {error.message}"
    if status is ExecutionStatus.COMPLETED:
        return LogLevel.INFO, "completed"
    if status is ExecutionStatus.TIMED_OUT:
        return LogLevel.ERROR, f"timed out{detail}"
    if status is ExecutionStatus.CANCELLED:
        return LogLevel.WARNING, "cancelled"
    return LogLevel.ERROR, f"failed{detail}"


def output_size(output: Any) -> int:
    """Bytes of the output as compact JSON (what the projection stores)."""
    return len(json.dumps(output, separators=(",", ":"), default=str).encode())


def dialect_insert(engine_or_connection: AsyncEngine | AsyncConnection, table: Any) -> Any:
    """``INSERT`` of the engine's dialect (SQLite or PostgreSQL), which has ``on_conflict_do_*``."""
    dialect = engine_or_connection.dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def _dialect(connection: AsyncConnection) -> Any:
    return postgresql if connection.dialect.name == "postgresql" else sqlite


def log_row(entry: LogEntry) -> dict[str, Any]:
    return {
        "execution_id": entry.execution_id,
        "level": entry.level.value,
        "message": entry.message,
        "timestamp": entry.timestamp,
        "metadata": entry.metadata,
    }


async def insert_logs(connection: AsyncConnection, entries: Sequence[LogEntry]) -> None:
    """Insert lines; a line whose (execution, seq) is already there is skipped."""
    if entries:
        await connection.execute(LOG_INSERT.build(connection), [log_row(e) for e in entries])


def metric_rows(execution_id: str, metrics: Sequence[Metric]) -> list[dict[str, Any]]:
    """One row per metric name (the last value given wins), with its unit."""
    now = datetime.now(UTC)
    latest: dict[str, Metric] = {metric.name: metric for metric in metrics}
    return [
        {
            "execution_id": execution_id,
            "metric_name": metric.name,
            "metric_value": float(metric.value),
            "metric_unit": metric.unit or METRIC_UNITS.get(metric.name),
            "timestamp": metric.timestamp or now,
        }
        for metric in latest.values()
    ]


def _metric_upsert(connection: AsyncConnection) -> Any:
    statement = dialect_insert(connection, execution_metrics)
    bigger = func.greatest if connection.dialect.name == "postgresql" else func.max
    value = case(
        (
            statement.excluded.metric_name == GROWING_METRIC,
            bigger(execution_metrics.c.metric_value, statement.excluded.metric_value),
        ),
        else_=statement.excluded.metric_value,
    )
    return statement.on_conflict_do_update(
        index_elements=[execution_metrics.c.execution_id, execution_metrics.c.metric_name],
        set_={
            "metric_value": value,
            "metric_unit": statement.excluded.metric_unit,
            "timestamp": statement.excluded.timestamp,
        },
    )


EXECUTION_INSERT = RowStatement(
    "executions.insert", 0, lambda c: dialect_insert(c, executions).on_conflict_do_nothing(index_elements=["id"])
)
LOG_INSERT = RowStatement("logs.insert", 1, lambda c: dialect_insert(c, execution_logs).on_conflict_do_nothing())
METRIC_UPSERT = RowStatement("metrics.upsert", 2, _metric_upsert)
MARK_RUNNING = RowStatement(
    "executions.running",
    3,
    lambda c: (
        update(executions)
        .where(and_(executions.c.id == bindparam("running_id"), executions.c.status == ExecutionStatus.PENDING.value))
        .values(status=ExecutionStatus.RUNNING.value)
    ),
)


FINISH_UPDATE = RowStatement(
    "executions.finish",
    4,
    lambda c: (
        update(executions)
        .where(and_(executions.c.id == bindparam("finish_id"), executions.c.status.not_in(_TERMINAL_LITERALS)))
        .values(
            status=bindparam("finish_status"),
            result_data=bindparam("finish_result", type_=JSONText()),
            error_message=bindparam("finish_error"),
            end_time=bindparam("finish_end", type_=UTCDateTime()),
            duration_ms=bindparam("finish_duration"),
        )
    ),
)


async def upsert_metrics(connection: AsyncConnection, execution_id: str, metrics: Sequence[Metric]) -> None:
    """Write one value per (execution, metric); ``attempts`` keeps the largest value seen."""
    if metrics:
        await connection.execute(METRIC_UPSERT.build(connection), metric_rows(execution_id, metrics))


async def read_logs(connection: AsyncConnection, execution_id: str, *, after_id: int = 0) -> list[LogEntry]:
    """An execution's lines in the order they were logged (by timestamp, then insertion)."""
    rows = (
        await connection.execute(
            select(execution_logs)
            .where(and_(execution_logs.c.execution_id == execution_id, execution_logs.c.id > after_id))
            .order_by(execution_logs.c.timestamp, execution_logs.c.id)
        )
    ).all()
    return [
        LogEntry(
            id=row.id,
            execution_id=row.execution_id,
            level=LogLevel(row.level),
            message=row.message,
            timestamp=row.timestamp,
            metadata=row.metadata or {},
        )
        for row in rows
    ]


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


async def read_metrics(connection: AsyncConnection, metric_filter: MetricFilter) -> list[Metric]:
    """Metric rows matching the filter, oldest first."""
    conditions = _execution_conditions(metric_filter)
    if metric_filter.name is not None:
        conditions.append(execution_metrics.c.metric_name == metric_filter.name)
    rows = (
        await connection.execute(
            select(execution_metrics)
            .join(executions, executions.c.id == execution_metrics.c.execution_id)
            .where(and_(True, *conditions))
            .order_by(execution_metrics.c.timestamp, execution_metrics.c.id)
            .limit(metric_filter.limit)
        )
    ).all()
    return [
        Metric(
            execution_id=row.execution_id,
            name=row.metric_name,
            value=row.metric_value,
            unit=row.metric_unit,
            timestamp=row.timestamp,
        )
        for row in rows
    ]


async def aggregate(connection: AsyncConnection, metric_filter: MetricFilter, *, queue_length: int) -> ExecutionMetrics:
    """ExecutionMetrics over the executions the filter selects.

    successful = completed; failed = failed + timed_out; concurrent = pending + running rows;
    average = mean ``duration_ms`` of terminal rows; error rate = failed / (successful + failed).
    """

    def count(*statuses: ExecutionStatus) -> Any:
        return func.sum(case((executions.c.status.in_([s.value for s in statuses]), 1), else_=0))

    row = (
        await connection.execute(
            select(
                func.count().label("total"),
                count(ExecutionStatus.COMPLETED).label("ok"),
                count(ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT).label("failed"),
                count(ExecutionStatus.PENDING, ExecutionStatus.RUNNING).label("live"),
                func.avg(executions.c.duration_ms).label("avg_ms"),
            ).where(and_(True, *_execution_conditions(metric_filter)))
        )
    ).one()
    ok, failed = int(row.ok or 0), int(row.failed or 0)
    return ExecutionMetrics(
        total_executions=int(row.total or 0),
        successful_executions=ok,
        failed_executions=failed,
        average_execution_time=timedelta(milliseconds=float(row.avg_ms or 0)),
        current_concurrent_executions=int(row.live or 0),
        queue_length=queue_length,
        error_rate=failed / (ok + failed) if ok + failed else 0.0,
    )
