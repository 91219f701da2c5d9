"""syslog.imported_files: how far `pgsyslog import` has read each file.

A file is known by its device and inode and by a hash of its first bytes, so that a
renamed or compressed rotation of it is recognised, and the position reached (on a line
boundary) lets a second import, or a follow after a restart, go on where the last stopped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "syslog"


def upgrade() -> None:
    op.create_table(
        "imported_files",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("device", sa.BigInteger, nullable=False,
                  comment="st_dev of the file when last read"),
        sa.Column("inode", sa.BigInteger, nullable=False,
                  comment="st_ino of the file when last read"),
        sa.Column("head_sha256", sa.LargeBinary, nullable=False,
                  comment="SHA-256 of the first head_length bytes of the content (decompressed)"),
        sa.Column("head_length", sa.Integer, nullable=False,
                  comment="how many bytes head_sha256 covers"),
        sa.Column("path", sa.Text, nullable=False, comment="where the file was last read from"),
        sa.Column("compressed", sa.Boolean, nullable=False, server_default=sa.text("false"),
                  comment="whether that path was gzip"),
        sa.Column("position", sa.BigInteger, nullable=False, server_default=sa.text("0"),
                  comment="bytes of the content (decompressed) imported so far, on a line "
                          "boundary"),
        sa.Column("lines", sa.BigInteger, nullable=False, server_default=sa.text("0"),
                  comment="lines imported so far"),
        sa.Column("updated_at", postgresql.TIMESTAMP(timezone=True), nullable=False,
                  server_default=sa.text("now()"), comment="when position last moved"),
        schema=SCHEMA,
        comment="files read by pgsyslog import: how far each one has been imported",
    )
    op.create_index("imported_files_head_sha256", "imported_files", ["head_sha256"],
                    schema=SCHEMA)
    op.create_index("imported_files_device_inode", "imported_files", ["device", "inode"],
                    schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("imported_files", schema=SCHEMA)
