"""The tables, as SQLAlchemy Core metadata: the one description of the schema.

Alembic migrations create exactly this (a test proves it with ``alembic check``). Day
partitions of ``syslog.messages`` are made at run time by storage/partitions.py and are
not part of this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB, TIMESTAMP, UUID

SCHEMA = "syslog"
PARTITION_PREFIX = "messages_p"
# A tsvector must stay under 1 MiB; the first 64 Ki characters of a message are indexed.
INDEXED_TEXT_CHARS = 65536
TSVECTOR_FUNCTION = f"{SCHEMA}.message_tsvector"
TSVECTOR_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {TSVECTOR_FUNCTION}(app_name text, message text)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig,
                   coalesce(app_name, '') || ' ' || left(message, {INDEXED_TEXT_CHARS}))
"""

# Each batch reserves this many ids with one nextval, so that its rows' ids are contiguous
# and a follower can read a committed batch as one id range. Also the most rows a batch
# may hold (config caps batch_rows at it).
BLOCK_IDS = 65536

metadata = MetaData(schema=SCHEMA)

message_id_seq = Sequence("messages_id_seq", schema=SCHEMA, metadata=metadata,
                          increment=BLOCK_IDS)
batch_seq = Sequence("batch_seq", schema=SCHEMA, metadata=metadata)


def _record_columns() -> list[Column[object]]:
    """The columns of DESIGN.md's record, shared by messages and unrouted."""
    return [
        Column("received_at", TIMESTAMP(timezone=True), nullable=False,
               comment="when the receiver got the message (UTC); the partition key"),
        Column("event_time", TIMESTAMP(timezone=True),
               comment="the time the message states, in UTC; null when absent or unreadable"),
        Column("facility", SmallInteger, CheckConstraint("facility BETWEEN 0 AND 23"),
               nullable=False, comment="from PRI; 1 (user) without PRI"),
        Column("severity", SmallInteger, CheckConstraint("severity BETWEEN 0 AND 7"),
               nullable=False, comment="0 emerg .. 7 debug"),
        Column("hostname", Text, comment="as stated by the message, else the source address"),
        Column("app_name", Text, comment="RFC 5424 APP-NAME, RFC 3164 TAG, or custom service"),
        Column("procid", Text, comment="RFC 5424 PROCID or the [pid] of an RFC 3164 TAG"),
        Column("msgid", Text, comment="RFC 5424 MSGID"),
        Column("structured_data", JSONB, comment='RFC 5424 SD as {"sd-id": {"param": value}}'),
        Column("message", Text, nullable=False, comment="the free text (MSG)"),
        Column("format", Text,
               CheckConstraint("format IN ('rfc5424', 'rfc3164', 'custom', 'raw')"),
               nullable=False, comment="how the message was parsed"),
        Column("transport", Text, nullable=False, comment="udp, tcp, tls, relp or file"),
        Column("source_ip", INET, comment="the peer address"),
        Column("parse_error", Text, comment="why the message was only partly understood"),
        Column("raw", LargeBinary, comment="the original bytes, kept only with parse_error"),
        Column("peer_name", Text,
               comment="the name the TLS client certificate was permitted under; null without"),
    ]


messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger, message_id_seq, nullable=False,
           server_default=message_id_seq.next_value(), comment="orders rows for paging and tail"),
    *_record_columns(),
    Index("messages_received_at_brin", "received_at", postgresql_using="brin"),
    Index("messages_hostname_received_at", "hostname", "received_at"),
    Index("messages_app_name_received_at", "app_name", "received_at"),
    Index("messages_severity", "severity"),
    Index("messages_id", "id"),
    Index("messages_event_time", "event_time"),
    Index(
        "messages_fulltext",
        text(f"{TSVECTOR_FUNCTION}(app_name, message)"),
        postgresql_using="gin",
    ),
    comment="every received syslog message; one partition per UTC day of received_at",
    postgresql_partition_by="RANGE (received_at)",
)

unrouted = Table(
    "unrouted",
    metadata,
    Column("id", BigInteger, message_id_seq, nullable=False, primary_key=True,
           server_default=message_id_seq.next_value()),
    *_record_columns(),
    Column("error", Text, comment="why the row could not go into syslog.messages"),
    comment="rows that found no partition or were refused; kept until moved or read",
)

batches = Table(
    "batches",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True,
           comment="the batch's identity, chosen by the writer (and kept in the spool)"),
    Column("seq", BigInteger, nullable=False,
           comment="commit order: a batch with a higher seq committed later"),
    Column("first_id", BigInteger,
           comment="first row id of the batch in syslog.messages; null: none there"),
    Column("last_id", BigInteger, comment="last row id of the batch"),
    Column("committed_at", TIMESTAMP(timezone=True), nullable=False,
           server_default=text("now()"), comment="when the batch was committed"),
    UniqueConstraint("seq", name="batches_seq_key"),
    Index("batches_first_id", "first_id"),
    Index("batches_committed_at_brin", "committed_at", postgresql_using="brin"),
    comment="one row per committed batch: retries and replays never write a batch twice",
)

imported_files = Table(
    "imported_files",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("device", BigInteger, nullable=False, comment="st_dev of the file when last read"),
    Column("inode", BigInteger, nullable=False, comment="st_ino of the file when last read"),
    Column("head_sha256", LargeBinary, nullable=False,
           comment="SHA-256 of the first head_length bytes of the content (decompressed)"),
    Column("head_length", Integer, nullable=False, comment="how many bytes head_sha256 covers"),
    Column("path", Text, nullable=False, comment="where the file was last read from"),
    Column("compressed", Boolean, nullable=False, server_default=text("false"),
           comment="whether that path was gzip"),
    Column("position", BigInteger, nullable=False, server_default=text("0"),
           comment="bytes of the content (decompressed) imported so far, on a line boundary"),
    Column("lines", BigInteger, nullable=False, server_default=text("0"),
           comment="lines imported so far"),
    Column("updated_at", TIMESTAMP(timezone=True), nullable=False,
           server_default=text("now()"), comment="when position last moved"),
    Index("imported_files_head_sha256", "head_sha256"),
    Index("imported_files_device_inode", "device", "inode"),
    comment="files read by pgsyslog import: how far each one has been imported",
)

alert_state = Table(
    "alert_state",
    metadata,
    Column("rule", Text, nullable=False, comment="the rule's name"),
    Column("group_key", Text, nullable=False, server_default=text("''"),
           comment="the group_by value (host or app); empty without group_by"),
    Column("group_by", Text, CheckConstraint("group_by IN ('host', 'app')"),
           comment="the rule's group_by when the state was decided; null without"),
    Column("status", Text, CheckConstraint("status IN ('firing', 'resolved')"),
           nullable=False, comment="firing or resolved"),
    Column("started_at", TIMESTAMP(timezone=True), nullable=False,
           comment="when the current status began"),
    Column("evaluated_at", TIMESTAMP(timezone=True), nullable=False,
           comment="when the rule was last evaluated for this group"),
    Column("last_count", BigInteger, nullable=False, comment="rows matched at that evaluation"),
    Column("samples", JSONB, comment="a few matching rows, as the API shows them"),
    Column("notified_status", Text,
           comment="the status every target was told; null while a change is delivered"),
    Column("notified_at", TIMESTAMP(timezone=True),
           comment="when notified_status was last delivered (or given up on)"),
    Column("claimed_until", TIMESTAMP(timezone=True),
           comment="a receiver is delivering the owed notification until then; the others "
                   "leave it alone"),
    PrimaryKeyConstraint("rule", "group_key", name="alert_state_pkey"),
    comment="each alert's current status: one row per rule and group",
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("rule", Text, nullable=False),
    Column("group_key", Text, nullable=False, server_default=text("''")),
    Column("status", Text, nullable=False, comment="the status entered: firing or resolved"),
    Column("at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
    Column("count", BigInteger, nullable=False, comment="rows matched when it changed"),
    Index("alert_history_rule_at", "rule", "at"),
    comment="every change of an alert's status",
)

alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("rule", Text, nullable=False),
    Column("group_key", Text, nullable=False, server_default=text("''")),
    Column("status", Text, nullable=False, comment="the status notified: firing or resolved"),
    Column("target", Text, nullable=False,
           comment="the notify URL's origin (scheme://host:port)"),
    Column("attempt", Integer, nullable=False, comment="1 for the first try"),
    Column("at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
    Column("http_status", Integer, comment="the answer's status code; null when none came"),
    Column("error", Text, comment="why the attempt failed, when it did"),
    Index("alert_notifications_rule_at", "rule", "at"),
    comment="every notification attempt and how it went",
)

RECORD_COLUMNS: tuple[str, ...] = tuple(c.name for c in _record_columns())
