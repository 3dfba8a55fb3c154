"""The spec's tables as SQLAlchemy Core, on SQLite and PostgreSQL alike.

``executions``, ``execution_logs`` and ``execution_metrics`` follow the spec's DDL column for column (JSON is
stored as TEXT, times as UTC). ``tools`` is the table the spec's foreign key points at: one row per tool id,
holding the latest version, every known version and the parameter schema. ``tool_grants`` says which tools a
tenant's users (or roles) may run (:mod:`stepflow.identity`). Indexes are added for the filters
the Executor offers, plus two unique indexes that make retried writes idempotent: one metric value per
(execution, metric name), one log line per (execution, ``metadata.seq``).

The schema is created and upgraded by the Alembic migrations in :mod:`stepflow.db.migrations`; the initial
revision equals this module (a test compares them).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A DATETIME that always holds UTC and always hands back an aware datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON stored as TEXT, as the spec's DDL has it."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), default=str)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


metadata = MetaData()

tools = Table(
    "tools",
    metadata,
    Column("id", Text, primary_key=True),
    Column("version", Text, nullable=False, comment="latest version"),
    Column("versions", JSONText, nullable=False, comment="every registered version"),
    Column("kind", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("parameters_schema", JSONText, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("idempotent", Boolean, nullable=False, server_default=true()),
)

executions = Table(
    "executions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tool_id", Text, ForeignKey("tools.id"), nullable=False),
    Column("version", Text),
    Column("status", Text, nullable=False),
    Column("request_data", JSONText, nullable=False),
    Column("result_data", JSONText),
    Column("error_message", Text),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime),
    Column("duration_ms", Integer),
    Column("user_id", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("parent_execution_id", Text, ForeignKey("executions.id")),
    Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Index("ix_executions_tenant_start", "tenant_id", "start_time"),
    Index("ix_executions_tool_start", "tool_id", "start_time"),
    Index("ix_executions_status", "status"),
    Index("ix_executions_user", "user_id"),
    Index("ix_executions_parent", "parent_execution_id"),
)

execution_logs = Table(
    "execution_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("execution_id", Text, ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("level", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("timestamp", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("metadata", JSONText),
    Index("ix_execution_logs_execution", "execution_id", "id"),
    sqlite_autoincrement=True,
)

execution_metrics = Table(
    "execution_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("execution_id", Text, ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("metric_name", Text, nullable=False),
    Column("metric_value", Float, nullable=False),
    Column("metric_unit", Text),
    Column("timestamp", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Index("ux_execution_metrics_name", "execution_id", "metric_name", unique=True),
    sqlite_autoincrement=True,
)

tool_grants = Table(
    "tool_grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Text, nullable=False),
    Column("tool_id", Text, nullable=False, comment="a tool id, or * for every tool"),
    Column("subject", Text, nullable=False, comment="user:<user id> or role:<role>"),
    Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Index("ux_tool_grants", "tenant_id", "tool_id", "subject", unique=True),
    sqlite_autoincrement=True,
)

# A log line's ``metadata.seq`` is deterministic per line ("<attempt>.<n>", "prepare", "finish.<status>"), so a
# retried write of the same lines conflicts on this index and is skipped (ON CONFLICT DO NOTHING) instead of
# duplicating them.
LOG_SEQ_SQLITE = "json_extract(metadata, '$.seq')"
LOG_SEQ_POSTGRESQL = "(metadata::jsonb ->> 'seq')"
LOG_SEQ_INDEXES = (
    Index("ux_execution_logs_seq", execution_logs.c.execution_id, text(LOG_SEQ_SQLITE), unique=True).ddl_if(
        dialect="sqlite"
    ),
    Index("ux_execution_logs_seq_pg", execution_logs.c.execution_id, text(LOG_SEQ_POSTGRESQL), unique=True).ddl_if(
        dialect="postgresql"
    ),
)
