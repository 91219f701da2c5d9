"""Schema syslog: partitioned messages, unrouted, indexes and the full-text function.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "syslog"
# Frozen copy of storage/schema.py's function as of this revision.
TSVECTOR_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION syslog.message_tsvector(app_name text, message text)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig,
                   coalesce(app_name, '') || ' ' || left(message, 65536))
"""


def record_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("received_at", postgresql.TIMESTAMP(timezone=True), nullable=False,
                  comment="when the receiver got the message (UTC); the partition key"),
        sa.Column("event_time", postgresql.TIMESTAMP(timezone=True),
                  comment="the time the message states, in UTC; null when absent or unreadable"),
        sa.Column("facility", sa.SmallInteger, sa.CheckConstraint("facility BETWEEN 0 AND 23"),
                  nullable=False, comment="from PRI; 1 (user) without PRI"),
        sa.Column("severity", sa.SmallInteger, sa.CheckConstraint("severity BETWEEN 0 AND 7"),
                  nullable=False, comment="0 emerg .. 7 debug"),
        sa.Column("hostname", sa.Text,
                  comment="as stated by the message, else the source address"),
        sa.Column("app_name", sa.Text,
                  comment="RFC 5424 APP-NAME, RFC 3164 TAG, or custom service"),
        sa.Column("procid", sa.Text, comment="RFC 5424 PROCID or the [pid] of an RFC 3164 TAG"),
        sa.Column("msgid", sa.Text, comment="RFC 5424 MSGID"),
        sa.Column("structured_data", postgresql.JSONB,
                  comment='RFC 5424 SD as {"sd-id": {"param": value}}'),
        sa.Column("message", sa.Text, nullable=False, comment="the free text (MSG)"),
        sa.Column("format", sa.Text,
                  sa.CheckConstraint("format IN ('rfc5424', 'rfc3164', 'custom', 'raw')"),
                  nullable=False, comment="how the message was parsed"),
        sa.Column("transport", sa.Text, nullable=False, comment="udp, tcp or tls"),
        sa.Column("source_ip", postgresql.INET, comment="the peer address"),
        sa.Column("parse_error", sa.Text, comment="why the message was only partly understood"),
        sa.Column("raw", sa.LargeBinary, comment="the original bytes, kept only with parse_error"),
    ]


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.execute(TSVECTOR_FUNCTION_SQL)
    op.execute(sa.schema.CreateSequence(sa.Sequence("messages_id_seq", schema=SCHEMA)))
    next_id = sa.text("nextval('syslog.messages_id_seq'::regclass)")
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger, nullable=False, server_default=next_id,
                  comment="orders rows for paging and tail"),
        *record_columns(),
        schema=SCHEMA,
        comment="every received syslog message; one partition per UTC day of received_at",
        postgresql_partition_by="RANGE (received_at)",
    )
    op.create_index("messages_received_at_brin", "messages", ["received_at"],
                    schema=SCHEMA, postgresql_using="brin")
    op.create_index("messages_hostname_received_at", "messages", ["hostname", "received_at"],
                    schema=SCHEMA)
    op.create_index("messages_app_name_received_at", "messages", ["app_name", "received_at"],
                    schema=SCHEMA)
    op.create_index("messages_severity", "messages", ["severity"], schema=SCHEMA)
    op.create_index("messages_id", "messages", ["id"], schema=SCHEMA)
    op.create_index("messages_fulltext", "messages",
                    [sa.text("syslog.message_tsvector(app_name, message)")],
                    schema=SCHEMA, postgresql_using="gin")
    op.create_table(
        "unrouted",
        sa.Column("id", sa.BigInteger, nullable=False, server_default=next_id, primary_key=True),
        *record_columns(),
        sa.Column("error", sa.Text, comment="why the row could not go into syslog.messages"),
        schema=SCHEMA,
        comment="rows that found no partition or were refused; kept until moved or read",
    )


def downgrade() -> None:
    op.drop_table("unrouted", schema=SCHEMA)
    op.drop_table("messages", schema=SCHEMA)
    op.execute("DROP SEQUENCE IF EXISTS syslog.messages_id_seq")
    op.execute("DROP FUNCTION IF EXISTS syslog.message_tsvector(text, text)")
