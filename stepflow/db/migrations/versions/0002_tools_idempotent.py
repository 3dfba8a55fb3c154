"""tools.idempotent: whether a tool may run again after its worker was lost while it ran.

Revision ID: 0002_tools_idempotent
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_tools_idempotent"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Every tool registered so far is idempotent until its worker says otherwise (it re-registers at start)."""
    with op.batch_alter_table("tools") as batch:
        batch.add_column(sa.Column("idempotent", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("tools") as batch:
        batch.drop_column("idempotent")
