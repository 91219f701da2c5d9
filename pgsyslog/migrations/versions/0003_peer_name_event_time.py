"""The TLS peer name of each row, and an index for filtering and ordering by event_time.

``peer_name`` holds the name a client certificate was permitted under
(``tls_permitted_peers``); it is null for rows that came without one. The btree on
``event_time`` lets searches filter and order by the message's own time at index speed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "syslog"
PEER_NAME_COMMENT = "the name the TLS client certificate was permitted under; null without"
TRANSPORT_COMMENT = "udp, tcp, tls, relp or file"


def upgrade() -> None:
    for table in ("messages", "unrouted"):
        op.add_column(table, sa.Column("peer_name", sa.Text, comment=PEER_NAME_COMMENT),
                      schema=SCHEMA)
        op.alter_column(table, "transport", schema=SCHEMA, existing_type=sa.Text,
                        existing_nullable=False, comment=TRANSPORT_COMMENT,
                        existing_comment="udp, tcp or tls")
    op.create_index("messages_event_time", "messages", ["event_time"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("messages_event_time", table_name="messages", schema=SCHEMA)
    for table in ("messages", "unrouted"):
        op.drop_column(table, "peer_name", schema=SCHEMA)
        op.alter_column(table, "transport", schema=SCHEMA, existing_type=sa.Text,
                        existing_nullable=False, comment="udp, tcp or tls",
                        existing_comment=TRANSPORT_COMMENT)
