"""What the receiver counts. One naming scheme: received, dropped_*, parse_failed, written..."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class Counters:
    received: int = 0  # messages handed to the parser (frames, datagrams)
    received_by_transport: dict[str, int] = field(default_factory=dict)  # udp, tcp, tls
    parsed_by_format: dict[str, int] = field(default_factory=dict)  # rfc5424, rfc3164, ...
    dropped_empty: int = 0  # empty or whitespace-only messages, never stored
    dropped_queue_full: int = 0  # UDP datagrams dropped: the queue was full, the spool too
    spilled: int = 0  # UDP records spooled because the queue was full (in spooled too)
    parse_failed: int = 0  # records stored with a parse_error
    truncated: int = 0  # frames cut at max_frame_length
    cut_short: int = 0  # stream frames stored unfinished: their connection ended or we stopped
    written: int = 0  # rows committed into syslog.messages
    unrouted: int = 0  # rows committed into syslog.unrouted
    rejected: int = 0  # rows refused by both tables: logged, not stored
    retried: int = 0  # batch writes retried after a connection error
    spooled: int = 0  # rows written to the disk spool while the database was away
    replayed: int = 0  # rows brought from the spool into the database
    batches: int = 0  # COPY batches committed
    dropped_not_allowed: int = 0  # UDP datagrams from sources outside udp_allow
    connections_opened: int = 0
    connections_closed: int = 0
    connections_refused: int = 0  # not allowed, or max_connections reached
    tls_handshake_failed: int = 0  # garbage, plain text or a bad certificate on a TLS port
    tls_handshake_failures: dict[str, int] = field(default_factory=dict)  # ... by reason
    framing_errors: int = 0  # connections closed because their framing was lost
    duplicates_skipped: int = 0  # rows of batches found committed before (not written twice)
    spool_write_failed: int = 0  # rows of spool writes the disk refused, per attempt (logged)
    spool_damaged_bytes: int = 0  # spool bytes moved aside as damaged (a .damaged file)
    lost_at_stop: int = 0  # neither written nor spooled at a stop (spool off, or a UDP
    # reader's datagrams not handed over in the stop's reading time): logged
    writer_restarts: int = 0  # writer tasks that died and were started again
    listener_restarts: int = 0  # UDP receive or TLS accept loops restarted after an error
    refused_per_source: int = 0  # connections refused by max_connections_per_source (too)

    def as_dict(self) -> dict[str, int | dict[str, int]]:
        return asdict(self)
