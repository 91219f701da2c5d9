"""The receiver's lifecycle: bind, database, migrate, partitions, serve, shut down.

Sockets are bound first, so that a wrong or privileged port fails in a second rather than
after the database has started; they are only read once the database is ready (datagrams
and connections wait in the kernel or the queue meanwhile). Shutdown walks the same steps
back under one deadline: stop accepting, read what senders already sent, write the
queue, close the database.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from pgsyslog.config import Config, Endpoint, default_data_dir
from pgsyslog.receiver.access import AllowList
from pgsyslog.receiver.intake import Intake, ZoneResolver
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.scheduler import MaintenanceSchedule
from pgsyslog.receiver.state import Listening, ReceiverState
from pgsyslog.receiver.tcp import StreamListener, SyslogStreamProtocol
from pgsyslog.receiver.tls import TlsServer, make_tls_context
from pgsyslog.receiver.udp import UdpListener, kernel_drops
from pgsyslog.receiver.writer import BatchWriter, Outage
from pgsyslog.storage import database, migrate
from pgsyslog.storage.maintenance import MaintenanceResult, run_maintenance
from pgsyslog.storage.spool import Spool

if TYPE_CHECKING:
    from pgsyslog.http import HttpServer

log = logging.getLogger(__name__)

# After SIGTERM, a connection that has sent nothing for this long is taken to be done.
QUIET_BEFORE_CLOSE = 0.3


class StartupError(Exception):
    """Serve cannot start; the message is one line for the operator."""


def bind_error(transport: str, endpoint: Endpoint, exc: OSError) -> StartupError:
    where = f"cannot listen on {transport} {endpoint}"
    if exc.errno is None and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__  # uvloop wraps the bind error of datagram endpoints
    if isinstance(exc, PermissionError) or exc.errno == errno.EACCES:
        return StartupError(
            f"{where}: permission denied; ports below 1024 need privileges: use a port such as "
            f"{endpoint.port + 5000 if endpoint.port < 1024 else endpoint.port} (and forward "
            "to it), or grant CAP_NET_BIND_SERVICE (AmbientCapabilities= in the systemd unit)"
        )
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"{where}: the address is already in use by another program")
    return StartupError(f"{where}: {exc.strerror or exc}")


class Receiver:
    def __init__(self, config: Config, out: TextIO = sys.stdout) -> None:
        self.config = config
        self.out = out
        self.queue = RecordQueue(config.queue_size, config.batch_rows, config.queue_bytes)
        self.state = ReceiverState(self.queue)
        self.state.registry.max_connections = config.max_connections
        zones = ZoneResolver(config.default_zone, config.source_timezones)
        self.intake = Intake(self.queue, self.state.counters, zones, config.max_frame_length)
        self._stream_servers: list[asyncio.Server | TlsServer] = []
        self._udp: list[UdpListener] = []
        self._embedded: database.EmbeddedDatabase | None = None
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # Signals are caught from the first moment: a stop asked for during start-up
        # takes effect as soon as the receiver is up.
        with _signals_set(self.request_stop):
            try:
                await self._bind_all()
                dsn = await asyncio.to_thread(self._prepare_database)
                self.state.dsn = dsn
                await self._serve(dsn)
            finally:
                for server in self._stream_servers:
                    server.close()
                await asyncio.to_thread(self._stop_database)
        log.info("stopped: %s, kernel_udp_drops=%d", self.state.counters.as_dict(),
                 self.state.kernel_udp_drops())

    async def _serve(self, dsn: str) -> None:
        max_age = self.config.batch_age_ms / 1000
        outage = Outage(self._spool(), self._spool_size)
        writers = [BatchWriter(dsn, self.queue, self.state.counters, max_age,
                               self.state.observe_batch, outage)
                   for _ in range(self.config.writers)]
        # What an earlier run spooled goes in before anything new is read.
        await writers[0].replay_spool()
        writer_tasks = [asyncio.create_task(w.run(), name=f"writer {i}")
                        for i, w in enumerate(writers)]
        for task in writer_tasks:
            task.add_done_callback(self._writer_ended)
        for server in self._stream_servers:
            await server.start_serving()
        for listener in self._udp:
            listener.start()
        inodes = {listener.inode for listener in self._udp}
        self.state.kernel_udp_drops = lambda: kernel_drops(inodes)
        schedule = MaintenanceSchedule(dsn, self.config, self._maintained)
        schedule.start()
        idle_sweeper = asyncio.create_task(self._close_idle_connections(), name="idle")
        http = await self._start_http()
        self.state.serving = True
        self._announce(dsn)
        await self._stop.wait()
        self.state.serving = False
        idle_sweeper.cancel()
        schedule.shutdown()
        if http is not None:
            await http.close()
        log.info("stopping: closing listeners, then writing what was received")
        deadline = time.monotonic() + self.config.shutdown_timeout
        await self._stop_listeners(deadline)
        for writer in writers:
            writer.close(deadline)
        await asyncio.gather(*writer_tasks)

    async def _close_idle_connections(self) -> None:
        idle_timeout = self.config.idle_timeout
        if idle_timeout <= 0:
            return
        while True:
            # A connection is closed between idle_timeout and 1.25 × idle_timeout of silence.
            await asyncio.sleep(min(idle_timeout / 4, 60.0))
            self.state.registry.close_idle(idle_timeout)

    def _spool(self) -> Spool | None:
        cfg = self.config
        if cfg.spool_max_bytes <= 0:
            return None
        spool = Spool(cfg.data_dir / "spool", cfg.spool_max_bytes, cfg.spool_fsync)
        self._spool_size(spool.pending)
        return spool

    def _spool_size(self, pending: int) -> None:
        self.state.spool_bytes = pending

    def _maintained(self, result: MaintenanceResult) -> None:
        self.state.maintenance_runs += 1
        self.state.partitions_dropped += len(result.dropped)

    async def _start_http(self) -> HttpServer | None:
        endpoint = self.config.http
        if endpoint is None:
            return None
        from pgsyslog.http import start_http

        try:
            http = await start_http(endpoint, self.config.http_token, self.state)
        except OSError as e:
            raise bind_error("http", endpoint, e) from None
        self.state.listening.append(Listening("http", Endpoint(endpoint.host, http.port)))
        return http

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("%s stopped: %r; stopping the receiver", task.get_name(),
                         task.exception())
            self.request_stop()

    # ------------------------------------------------------------------ start

    async def _bind_all(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        tls_context = None
        if cfg.tls:
            assert cfg.tls_cert is not None and cfg.tls_key is not None
            tls_context = make_tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
        for transport, endpoint in cfg.listeners:
            try:
                if transport == "udp":
                    listener = await UdpListener.bind(endpoint, self.intake,
                                                      cfg.udp_receive_buffer,
                                                      AllowList(cfg.udp_allow))
                    self._udp.append(listener)
                    bound = listener.sockname
                elif transport == "tls":
                    assert tls_context is not None
                    shared = StreamListener(transport, self.intake, self.state.registry,
                                            AllowList(cfg.tls_allow))
                    tls_server = TlsServer.bind(endpoint, shared, tls_context)
                    self._stream_servers.append(tls_server)
                    bound = tls_server.sockets[0].getsockname()
                else:
                    shared = StreamListener(transport, self.intake, self.state.registry,
                                            AllowList(cfg.tcp_allow))
                    server = await loop.create_server(
                        functools.partial(SyslogStreamProtocol, shared), endpoint.host,
                        endpoint.port,
                        start_serving=False, backlog=1024,
                    )
                    self._stream_servers.append(server)
                    bound = server.sockets[0].getsockname()
            except OSError as e:
                raise bind_error(transport, endpoint, e) from None
            self.state.listening.append(Listening(transport, Endpoint(endpoint.host, bound[1])))

    def _prepare_database(self) -> str:
        cfg = self.config
        if cfg.dsn:
            dsn = cfg.dsn
        else:
            self._embedded = database.EmbeddedDatabase(cfg.data_dir, stop_on_exit=True)
            dsn = self._embedded.start()
        migrate.upgrade(dsn)
        # Partitions before listeners: wait for another receiver's run rather than skip.
        result = run_maintenance(dsn, ahead=cfg.partitions_ahead,
                                 retention_days=cfg.retention_days, wait=True,
                                 steps=("ensure",))
        if result.created:
            log.info("created partitions: %s", ", ".join(result.created))
        return dsn

    def _announce(self, dsn: str) -> None:
        lines = [f"pgsyslog is receiving; database: {dsn}"
                 + (f" (embedded, in {self.config.data_dir})" if self._embedded else "")]
        for item in self.state.listening:
            lines.append(f"listening on {item.transport}://{item.endpoint}")
        example = logger_example(self.state.listening)
        if example:
            lines.append(f"try: {example}")
        lines.append(f'then: psql "$(pgsyslog dsn{self._dsn_flag()})" -c '
                     '"SELECT received_at, hostname, app_name, message '
                     'FROM syslog.messages ORDER BY id DESC LIMIT 10"')
        print("\n".join(lines), file=self.out, flush=True)

    def _dsn_flag(self) -> str:
        if self._embedded is None:
            return f" --dsn '{self.config.dsn}'"
        if self.config.data_dir != default_data_dir():
            return f" --data-dir {self.config.data_dir}"
        return ""

    # ------------------------------------------------------------------ stop

    async def _stop_listeners(self, deadline: float) -> None:
        for server in self._stream_servers:
            server.close()  # no new connections; open ones go on
        for listener in self._udp:
            await listener.stop(deadline)
        registry = self.state.registry
        while registry.connections and time.monotonic() < deadline:
            if registry.last_data_age() >= QUIET_BEFORE_CLOSE and not self._any_paused():
                break
            await asyncio.sleep(0.05)
        registry.close_all()
        await asyncio.sleep(0)  # let connection_lost hand on the last frames

    def _any_paused(self) -> bool:
        return any(c.paused for c in self.state.registry.connections)

    def _stop_database(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()


def logger_example(listening: list[Listening]) -> str | None:
    """A ready-to-paste util-linux logger command for the first UDP or TCP listener."""
    for item in listening:
        if item.transport in ("udp", "tcp"):
            host = item.endpoint.host
            if host in ("0.0.0.0", ""):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            mode = "-d" if item.transport == "udp" else "-T"
            return (f"logger -n {host} -P {item.endpoint.port} {mode} --rfc5424 "
                    "-t myapp 'hello from logger'")
    return None


@contextmanager
def _signals_set(handler: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``handler`` while inside; the old handlers come back after."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
