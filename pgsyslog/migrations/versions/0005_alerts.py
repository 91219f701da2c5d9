"""Alert state, history of its changes, and every notification attempt.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "syslog"
TIMESTAMPTZ = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("rule", sa.Text, nullable=False, comment="the rule's name"),
        sa.Column("group_key", sa.Text, nullable=False, server_default=sa.text("''"),
                  comment="the group_by value (host or app); empty without group_by"),
        sa.Column("group_by", sa.Text, sa.CheckConstraint("group_by IN ('host', 'app')"),
                  comment="the rule's group_by when the state was decided; null without"),
        sa.Column("status", sa.Text, sa.CheckConstraint("status IN ('firing', 'resolved')"),
                  nullable=False, comment="firing or resolved"),
        sa.Column("started_at", TIMESTAMPTZ, nullable=False,
                  comment="when the current status began"),
        sa.Column("evaluated_at", TIMESTAMPTZ, nullable=False,
                  comment="when the rule was last evaluated for this group"),
        sa.Column("last_count", sa.BigInteger, nullable=False,
                  comment="rows matched at that evaluation"),
        sa.Column("samples", postgresql.JSONB,
                  comment="a few matching rows, as the API shows them"),
        sa.Column("notified_status", sa.Text,
                  comment="the status every target was told; null while a change is "
                          "delivered"),
        sa.Column("notified_at", TIMESTAMPTZ,
                  comment="when notified_status was last delivered (or given up on)"),
        sa.Column("claimed_until", TIMESTAMPTZ,
                  comment="a receiver is delivering the owed notification until then; the "
                          "others leave it alone"),
        sa.PrimaryKeyConstraint("rule", "group_key", name="alert_state_pkey"),
        schema=SCHEMA,
        comment="each alert's current status: one row per rule and group",
    )
    op.create_table(
        "alert_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("status", sa.Text, nullable=False,
                  comment="the status entered: firing or resolved"),
        sa.Column("at", TIMESTAMPTZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("count", sa.BigInteger, nullable=False, comment="rows matched when it changed"),
        schema=SCHEMA,
        comment="every change of an alert's status",
    )
    op.create_index("alert_history_rule_at", "alert_history", ["rule", "at"], schema=SCHEMA)
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("status", sa.Text, nullable=False,
                  comment="the status notified: firing or resolved"),
        sa.Column("target", sa.Text, nullable=False,
                  comment="the notify URL's origin (scheme://host:port)"),
        sa.Column("attempt", sa.Integer, nullable=False, comment="1 for the first try"),
        sa.Column("at", TIMESTAMPTZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("http_status", sa.Integer,
                  comment="the answer's status code; null when none came"),
        sa.Column("error", sa.Text, comment="why the attempt failed, when it did"),
        schema=SCHEMA,
        comment="every notification attempt and how it went",
    )
    op.create_index("alert_notifications_rule_at", "alert_notifications", ["rule", "at"],
                    schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("alert_notifications", schema=SCHEMA)
    op.drop_table("alert_history", schema=SCHEMA)
    op.drop_table("alert_state", schema=SCHEMA)
