"""Rows of the projection's tables as the public models: the one place a row becomes an ExecutionInfo,
an ExecutionResult, a LogEntry, a Metric or a ToolInfo."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Row

from stepflow.models import (
    ErrorInfo,
    ExecutionInfo,
    ExecutionMetadata,
    ExecutionResult,
    ExecutionStatus,
    ExecutionTiming,
    LogEntry,
    LogLevel,
    Metric,
    ToolGrant,
    ToolInfo,
)


def execution_info(row: Row[Any]) -> ExecutionInfo:
    """An ``executions`` row as listed."""
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


def execution_result(row: Row[Any]) -> ExecutionResult:
    """An ``executions`` row as a result (when Temporal no longer holds the execution's history)."""
    error = None
    if row.error_message:
        kind, _, message = row.error_message.partition(": ")
        error = ErrorInfo(type=kind, message=message)
    return ExecutionResult(
        execution_id=row.id,
        status=ExecutionStatus(row.status),
        output=row.result_data,
        error=error,
        metadata=ExecutionMetadata(
            tool_id=row.tool_id,
            version=row.version,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            session_id=row.session_id,
            parent_execution_id=row.parent_execution_id,
        ),
        timing=ExecutionTiming(start_time=row.start_time, end_time=row.end_time, duration_ms=row.duration_ms),
    )


def log_entry(row: Row[Any]) -> LogEntry:
    """An ``execution_logs`` row."""
    return LogEntry(
        id=row.id,
        execution_id=row.execution_id,
        level=LogLevel(row.level),
        message=row.message,
        timestamp=row.timestamp,
        metadata=row.metadata or {},
    )


def metric(row: Row[Any]) -> Metric:
    """An ``execution_metrics`` row."""
    return Metric(
        execution_id=row.execution_id,
        name=row.metric_name,
        value=row.metric_value,
        unit=row.metric_unit,
        timestamp=row.timestamp,
    )


def tool_info(row: Row[Any]) -> ToolInfo:
    """A ``tools`` row (its latest version)."""
    return ToolInfo(
        id=row.id,
        version=row.version,
        kind=row.kind,
        description=row.description,
        parameters_schema=row.parameters_schema,
        versions=list(row.versions),
        idempotent=bool(row.idempotent),
    )


def tool_grant(row: Row[Any]) -> ToolGrant:
    """A ``tool_grants`` row."""
    return ToolGrant(tenant_id=row.tenant_id, tool_id=row.tool_id, subject=row.subject, created_at=row.created_at)
