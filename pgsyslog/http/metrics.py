"""GET /metrics: the receiver's counters in the Prometheus text format.

A custom collector reads ReceiverState when scraped, so nothing on the hot path touches
prometheus_client; only the batch latency histogram is fed as batches commit (through
``state.batch_observers``). Each server has its own registry, so that several servers in
one process (tests) do not collide.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgsyslog.http.alerts import alert_metrics
from pgsyslog.receiver.state import ReceiverState
from pgsyslog.receiver.tls import FAILURE_REASONS

# Seconds per COPY batch, from a handful of rows on an idle server to slow disks.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"pgsyslog_{name}", documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"pgsyslog_{name}", documentation, value=value)


def _labelled(name: str, documentation: str, label: str, values: Mapping[str, float]
              ) -> CounterMetricFamily:
    family = CounterMetricFamily(f"pgsyslog_{name}", documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class ReceiverCollector(Collector):
    def __init__(self, state: ReceiverState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state, c = self.state, self.state.counters
        yield _labelled("messages_received", "Messages handed to the parser, by transport.",
                        "transport", c.received_by_transport)
        yield _labelled("messages_parsed", "Messages parsed, by the format found.", "format",
                        c.parsed_by_format)
        yield _counter("parse_errors", "Messages stored with a parse_error.", c.parse_failed)
        yield _counter("messages_truncated", "Messages cut at max_frame_length.", c.truncated)
        yield _labelled("messages_dropped", "Messages not stored, by reason.", "reason",
                        {"queue_full": c.dropped_queue_full, "empty": c.dropped_empty,
                         "not_allowed": c.dropped_not_allowed})
        yield _counter("udp_kernel_drops", "Datagrams the kernel dropped on the UDP sockets.",
                       state.kernel_udp_drops())
        yield _counter("messages_cut_short", "Stream frames stored unfinished (their "
                       "connection ended or the receiver stopped).", c.cut_short)
        yield _counter("rows_written", "Rows committed into syslog.messages.", c.written)
        yield _counter("rows_duplicate_skipped", "Rows of batches found committed before, "
                       "not written again.", c.duplicates_skipped)
        yield _counter("rows_spool_failed", "Rows of spool writes the disk refused, per "
                       "attempt (kept in memory and retried; logged).",
                       c.spool_write_failed)
        yield _counter("rows_lost_at_stop", "Rows neither written nor spooled at a stop "
                       "(spool off, or UDP datagrams a reader had not handed over).",
                       c.lost_at_stop)
        yield _counter("spool_damaged_bytes", "Spool bytes moved aside as damaged.",
                       c.spool_damaged_bytes)
        yield _counter("writer_restarts", "Writer tasks that died and were started again.",
                       c.writer_restarts)
        yield _counter("listener_restarts", "Receive or accept loops restarted after an "
                       "error.", c.listener_restarts)
        yield _counter("connections_refused_per_source", "Connections refused by "
                       "max_connections_per_source.", c.refused_per_source)
        yield _counter("rows_unrouted", "Rows committed into syslog.unrouted.", c.unrouted)
        yield _counter("rows_rejected", "Rows refused by both tables (logged).", c.rejected)
        yield _counter("rows_spooled", "Rows written to the disk spool.", c.spooled)
        yield _counter("udp_spilled", "UDP records spooled because the queue was full "
                       "(counted in rows_spooled too).", c.spilled)
        yield _counter("rows_replayed", "Rows brought from the spool into the database.",
                       c.replayed)
        yield _counter("batches", "COPY batches committed.", c.batches)
        yield _counter("batch_retries", "Batch writes retried after a connection error.",
                       c.retried)
        yield _gauge("queue_depth", "Records waiting for the writer.", len(state.queue))
        yield _gauge("queue_capacity", "Records the queue holds at most.", state.queue.maxsize)
        yield _gauge("spool_bytes", "Bytes waiting in the disk spool.", state.spool_bytes)
        yield _gauge("connections_open", "Open TCP and TLS connections.",
                     c.connections_opened - c.connections_closed)
        yield _counter("connections_opened", "TCP and TLS connections accepted.",
                       c.connections_opened)
        yield _counter("connections_refused", "Connections refused (not allowed, or too many).",
                       c.connections_refused)
        yield _labelled("tls_handshake_failures", "TLS handshakes that failed, by reason.",
                        "reason", {reason: c.tls_handshake_failures.get(reason, 0)
                                   for reason in FAILURE_REASONS})
        yield _counter("framing_errors", "Connections closed because their framing was lost.",
                       c.framing_errors)
        yield _gauge("serving", "1 while the listeners run.", 1 if state.serving else 0)
        yield _counter("maintenance_runs", "Partition maintenance runs.", state.maintenance_runs)
        yield _counter("partitions_dropped", "Expired partitions dropped.",
                       state.partitions_dropped)


class Metrics:
    """The registry of one HTTP server, fed by the receiver's state."""

    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ReceiverCollector(state))
        self.batch_seconds = Histogram("pgsyslog_batch_duration_seconds",
                                       "Time to write and commit one COPY batch.",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        state.batch_observers.append(self.observe_batch)

    def observe_batch(self, rows: int, seconds: float) -> None:
        self.batch_seconds.observe(seconds)

    def close(self) -> None:
        self.state.batch_observers.remove(self.observe_batch)

    async def handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry) + await alert_metrics(request.app)
        return web.Response(body=body,
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
