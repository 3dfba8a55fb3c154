"""The SELECTs behind list_executions: a filter's query, and a row as an ExecutionInfo."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.engine import Row

from stepflow.db.schema import executions
from stepflow.models import ExecutionFilter, ExecutionInfo, ExecutionStatus


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


def row_to_info(row: Row[Any]) -> ExecutionInfo:
    return ExecutionInfo(
        execution_id=row.id,
        tool_id=row.tool_id,
        version=row.version,
        status=ExecutionStatus(row.status),
        user_id=row.user_id,
        tenant_id=row.tenant_id,
        session_id=row.session_id,
        parent_execution_id=row.parent_execution_id,
        start_time=row.start_time,
        end_time=row.end_time,
        duration_ms=row.duration_ms,
        error_message=row.error_message,
    )
