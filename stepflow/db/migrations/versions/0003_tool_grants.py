"""tool_grants: which tools a tenant's users or roles may run (deny unless granted).

Revision ID: 0003_tool_grants
Revises: 0002_tools_idempotent
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_tool_grants"
down_revision: str | Sequence[str] | None = "0002_tools_idempotent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tool_grants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("tool_id", sa.Text(), nullable=False, comment="a tool id, or * for every tool"),
        sa.Column("subject", sa.Text(), nullable=False, comment="user:<user id> or role:<role>"),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_tool_grants", "tool_grants", ["tenant_id", "tool_id", "subject"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_tool_grants", table_name="tool_grants")
    op.drop_table("tool_grants")
