"""Every statement that writes the projection, and the rows they take: one place for SQL that changes data.

Each write is idempotent, so a retried activity or a replayed write is harmless:

- an ``executions`` row is inserted once (``ON CONFLICT DO NOTHING``); its status moves only forwards
  (``pending`` -> ``running`` -> terminal). An activity's terminal write is provisional (it changes only a
  row that is not terminal yet); the workflow's record of the end is final and overwrites it, so the row
  ends as Temporal says even when an attempt's completion was not accepted;
- a log line carries a deterministic ``metadata.seq`` and is skipped when its (execution, seq) exists;
- a metric is unique per (execution, name): a later value replaces an earlier one, ``attempts`` only grows;
- ``tools`` rows and rebuilt ``executions`` rows are upserts.

The row statements (:class:`~stepflow.db.group_commit.RowStatement`) run as one ``executemany`` per batch of
the group committer, ordered by ``phase`` so a row exists before the lines that reference it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, literal_column, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepflow.db.group_commit import RowStatement
from stepflow.db.schema import (
    JSONText,
    UTCDateTime,
    execution_logs,
    execution_metrics,
    executions,
    tool_grants,
    tools,
)
from stepflow.models import (
    TERMINAL_STATUSES,
    ErrorInfo,
    ExecutionRequest,
    ExecutionStatus,
    LogEntry,
    LogLevel,
    Metric,
    ToolInfo,
)

METRIC_UNITS: dict[str, str] = {
    "duration_ms": "ms",
    "queue_wait_ms": "ms",
    "attempts": "count",
    "output_bytes": "bytes",
    "cpu_time_ms": "ms",
    "max_rss_kb": "KiB",
}
GROWING_METRIC = "attempts"  # only ever grows: a late write of an earlier attempt must not lower it
# inline literals: an expanding IN parameter cannot be used with executemany
_TERMINAL_LITERALS: list[Any] = [literal_column(f"'{s.value}'") for s in sorted(TERMINAL_STATUSES)]

Rows = list[tuple[RowStatement, Sequence[dict[str, Any]]]]


def dialect_insert(engine_or_connection: AsyncEngine | AsyncConnection | Any, table: Any) -> Any:
    """``INSERT`` of the engine's dialect (SQLite or PostgreSQL), which has ``on_conflict_do_*``."""
    dialect = engine_or_connection.dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def _metric_upsert(connection: Any) -> Any:
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


def _tools_upsert(connection: Any) -> Any:
    statement = dialect_insert(connection, tools)
    columns = ("version", "versions", "kind", "description", "parameters_schema", "idempotent", "updated_at")
    return statement.on_conflict_do_update(
        index_elements=[tools.c.id], set_={name: statement.excluded[name] for name in columns}
    )


def _execution_restore(connection: Any) -> Any:
    statement = dialect_insert(connection, executions)
    columns = [column.name for column in executions.columns if column.name not in ("id", "created_at")]
    return statement.on_conflict_do_update(
        index_elements=[executions.c.id], set_={name: statement.excluded[name] for name in columns}
    )


EXECUTION_INSERT = RowStatement(
    "executions.insert", 0, lambda c: dialect_insert(c, executions).on_conflict_do_nothing(index_elements=["id"])
)
EXECUTION_RESTORE = RowStatement("executions.restore", 0, _execution_restore)
TOOLS_UPSERT = RowStatement("tools.upsert", 0, _tools_upsert)
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
_FINISH_VALUES = {
    "status": bindparam("finish_status"),
    "result_data": bindparam("finish_result", type_=JSONText()),
    "error_message": bindparam("finish_error"),
    "end_time": bindparam("finish_end", type_=UTCDateTime()),
    "duration_ms": bindparam("finish_duration"),
}
GRANT_KEY = ["tenant_id", "tool_id", "subject"]
GRANT_INSERT = RowStatement(
    "grants.insert", 0, lambda c: dialect_insert(c, tool_grants).on_conflict_do_nothing(index_elements=GRANT_KEY)
)

FINISH_UPDATE = RowStatement(
    "executions.finish",
    4,
    lambda c: (
        update(executions)
        .where(and_(executions.c.id == bindparam("finish_id"), executions.c.status.not_in(_TERMINAL_LITERALS)))
        .values(**_FINISH_VALUES)
    ),
)
"""A provisional end (an activity's): written only over a row that is not terminal yet."""
FINISH_FINAL = RowStatement(
    "executions.finish_final",
    5,
    lambda c: update(executions).where(executions.c.id == bindparam("finish_id")).values(**_FINISH_VALUES),
)
"""The final end (the workflow's record): written over whatever the row says."""


def execution_row(
    execution_id: str, request: ExecutionRequest, *, version: str | None, start_time: datetime, status: ExecutionStatus
) -> dict[str, Any]:
    """An ``executions`` row as inserted: who runs what since when, the whole request as JSON."""
    context = request.context
    return {
        "id": execution_id,
        "tool_id": request.tool_id,
        "version": version,
        "status": status.value,
        "request_data": request.model_dump(mode="json"),
        "result_data": None,
        "error_message": None,
        "start_time": start_time,
        "end_time": None,
        "duration_ms": None,
        "user_id": context.user_id,
        "tenant_id": context.tenant_id,
        "session_id": context.session_id,
        "parent_execution_id": context.parent_execution_id,
    }


def error_text(error: ErrorInfo | None) -> str | None:
    """How an error is stored in ``executions.error_message``: ``"<kind>: <message>"``."""
    return None if error is None else f"{error.type}: {error.message}"


def finish_row(
    execution_id: str,
    status: ExecutionStatus,
    *,
    end_time: datetime,
    duration_ms: int,
    output: Any,
    error: ErrorInfo | None,
) -> dict[str, Any]:
    """The parameters of :data:`FINISH_UPDATE` (a no-op on a row that is terminal already)."""
    return {
        "finish_id": execution_id,
        "finish_status": status.value,
        "finish_result": output,
        "finish_error": error_text(error),
        "finish_end": end_time,
        "finish_duration": duration_ms,
    }


def log_row(entry: LogEntry) -> dict[str, Any]:
    return {
        "execution_id": entry.execution_id,
        "level": entry.level.value,
        "message": entry.message,
        "timestamp": entry.timestamp,
        "metadata": entry.metadata,
    }


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


def tool_rows(infos: Sequence[ToolInfo]) -> list[dict[str, Any]]:
    """One ``tools`` row per id: the latest version's kind, description and schema, and every version."""
    by_id: dict[str, list[ToolInfo]] = {}
    for info in infos:
        by_id.setdefault(info.id, []).append(info)
    now = datetime.now(UTC)
    return [
        {
            "id": tool_id,
            "version": versions[-1].version,
            "versions": [info.version for info in versions],
            "kind": versions[-1].kind,
            "description": versions[-1].description,
            "parameters_schema": versions[-1].parameters_schema,
            "idempotent": versions[-1].idempotent,
            "updated_at": now,
        }
        for tool_id, versions in by_id.items()
    ]


def terminal_event(status: ExecutionStatus, error: ErrorInfo | None) -> tuple[LogLevel, str]:
    """The lifecycle line an execution's end is logged with."""
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
