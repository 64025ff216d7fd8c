"""blocked_users and refusal_notices: the blocklist, and the one notice a day a refused user gets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blocked_users",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_by", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_blocked_users"),
    )
    op.create_table(
        "refusal_notices",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", name="pk_refusal_notices"),
    )


def downgrade() -> None:
    op.drop_table("refusal_notices")
    op.drop_table("blocked_users")
