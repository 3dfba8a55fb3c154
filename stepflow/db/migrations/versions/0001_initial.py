"""Initial projection schema: tools, executions, execution_logs, execution_metrics (as stepflow/db/schema.py).

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_SEQ_SQLITE = "json_extract(metadata, '$.seq')"
LOG_SEQ_POSTGRESQL = "(metadata::jsonb ->> 'seq')"


def upgrade() -> None:
    """Create the four tables and their indexes."""
    op.create_table(
        "tools",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Text(), nullable=False, comment="latest version"),
        sa.Column("versions", sa.Text(), nullable=False, comment="every registered version"),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("parameters_schema", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("tool_id", sa.Text(), sa.ForeignKey("tools.id"), nullable=False),
        sa.Column("version", sa.Text()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("request_data", sa.Text(), nullable=False),
        sa.Column("result_data", sa.Text()),
        sa.Column("error_message", sa.Text()),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("end_time", sa.DateTime()),
        sa.Column("duration_ms", sa.Integer()),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("parent_execution_id", sa.Text(), sa.ForeignKey("executions.id")),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
    )
    op.create_index("ix_executions_tenant_start", "executions", ["tenant_id", "start_time"])
    op.create_index("ix_executions_tool_start", "executions", ["tool_id", "start_time"])
    op.create_index("ix_executions_status", "executions", ["status"])
    op.create_index("ix_executions_user", "executions", ["user_id"])
    op.create_index("ix_executions_parent", "executions", ["parent_execution_id"])
    op.create_table(
        "execution_logs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.Text(), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
        sa.Column("metadata", sa.Text()),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_execution_logs_execution", "execution_logs", ["execution_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ux_execution_logs_seq_pg", "execution_logs", ["execution_id", sa.text(LOG_SEQ_POSTGRESQL)], unique=True
        )
    else:
        op.create_index(
            "ux_execution_logs_seq", "execution_logs", ["execution_id", sa.text(LOG_SEQ_SQLITE)], unique=True
        )
    op.create_table(
        "execution_metrics",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.Text(), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("metric_name", sa.Text(), nullable=False),
        sa.Column("metric_value", sa.Float(), nullable=False),
        sa.Column("metric_unit", sa.Text()),
        sa.Column("timestamp", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_execution_metrics_name", "execution_metrics", ["execution_id", "metric_name"], unique=True)


def downgrade() -> None:
    """Drop everything."""
    for table in ("execution_metrics", "execution_logs", "executions", "tools"):
        op.drop_table(table)
