"""chat_settings.servers_off: the MCP servers a chat turned off with /mcp; an index on messages(user_id, id) for a
user's messages in groups (/export, /forget).

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
    op.create_index("ix_messages_user_id_id", "messages", ["user_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_user_id_id", table_name="messages")
    with op.batch_alter_table("chat_settings") as chat_settings:
        chat_settings.drop_column("servers_off")
