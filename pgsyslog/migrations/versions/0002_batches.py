"""Batch identities: syslog.batches, commit-ordered batch numbers, id blocks per batch.

Every batch the writer commits inserts one row here in the same transaction as its rows,
so a retry after an ambiguous failure finds out that it committed (the primary key
refuses it) and a follower reads batches in commit order. Each batch reserves one block
of BLOCK_IDS ids (one nextval of messages_id_seq), so its rows' ids are contiguous.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "syslog"
BLOCK_IDS = 65536  # frozen copy of storage/schema.py's value as of this revision


def upgrade() -> None:
    op.execute(f"ALTER SEQUENCE {SCHEMA}.messages_id_seq INCREMENT BY {BLOCK_IDS}")
    op.execute(sa.schema.CreateSequence(sa.Sequence("batch_seq", schema=SCHEMA)))
    op.create_table(
        "batches",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True,
                  comment="the batch's identity, chosen by the writer (and kept in the spool)"),
        sa.Column("seq", sa.BigInteger, nullable=False,
                  comment="commit order: a batch with a higher seq committed later"),
        sa.Column("first_id", sa.BigInteger,
                  comment="first row id of the batch in syslog.messages; null: none there"),
        sa.Column("last_id", sa.BigInteger, comment="last row id of the batch"),
        sa.Column("committed_at", postgresql.TIMESTAMP(timezone=True), nullable=False,
                  server_default=sa.text("now()"), comment="when the batch was committed"),
        sa.UniqueConstraint("seq", name="batches_seq_key"),
        schema=SCHEMA,
        comment="one row per committed batch: retries and replays never write a batch twice",
    )
    op.create_index("batches_first_id", "batches", ["first_id"], schema=SCHEMA)
    op.create_index("batches_committed_at_brin", "batches", ["committed_at"], schema=SCHEMA,
                    postgresql_using="brin")


def downgrade() -> None:
    op.drop_table("batches", schema=SCHEMA)
    op.execute(f"DROP SEQUENCE IF EXISTS {SCHEMA}.batch_seq")
    op.execute(f"ALTER SEQUENCE {SCHEMA}.messages_id_seq INCREMENT BY 1")
