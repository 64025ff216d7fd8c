"""chat_settings.servers_off: the MCP servers a chat turned off with /mcp.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_settings") as chat_settings:
        chat_settings.add_column(sa.Column("servers_off", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_settings") as chat_settings:
        chat_settings.drop_column("servers_off")
