"""The receiver's lifecycle: bind, receive, make the database ready, serve, shut down.

Every socket (HTTP included) is bound first, so that a wrong or privileged port fails in
a second rather than after the database has started. Receiving starts at once: while the
database is unreachable (down, or the embedded server failing to start) batches go to the
spool, and the database keeper migrates, makes partitions and lets the replay run as soon
as it answers; it also starts the embedded server again when it dies.

Shutdown walks the steps back under one deadline (shutdown_timeout): stop accepting, read
what senders already sent, write the queue; what is still in memory at the deadline, or
at a second signal, is spooled in frames of batch_rows (past spool_max_bytes), and the
writers are cancelled. RELP sessions stop taking commands when the stop begins, answer
what the writers stored or spooled, and are ended after them (relp.py). Every exit logs
the ``stopped: {...}`` summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

from pgsyslog import collector
from pgsyslog.config import Config, Endpoint, default_data_dir, mask_dsn, mask_secrets
from pgsyslog.problems import database_problem, embedded_start_problem
from pgsyslog.receiver.access import AllowList
from pgsyslog.receiver.intake import Intake, ZoneResolver
from pgsyslog.receiver.limits import check_open_files
from pgsyslog.receiver.link import DatabaseLink
from pgsyslog.receiver.queue import RecordQueue
from pgsyslog.receiver.relp import RelpListener, RelpSession, RelpSessions, TlsRelpSession
from pgsyslog.receiver.scheduler import MaintenanceSchedule
from pgsyslog.receiver.spooler import Spooler, SpoolReplayer
from pgsyslog.receiver.state import Listening, ReceiverState
from pgsyslog.receiver.store import BatchStore
from pgsyslog.receiver.tcp import StreamListener, SyslogStreamProtocol, stop_listening
from pgsyslog.receiver.tls import (
    TlsContextError,
    TlsServer,
    context_from_config,
    https_context_from_config,
)
from pgsyslog.receiver.udp import Overflow, UdpListener, kernel_drops
from pgsyslog.receiver.write_policy import Batch, chunks, describe
from pgsyslog.receiver.writer import BatchWriter
from pgsyslog.record import Record
from pgsyslog.storage import database, migrate
from pgsyslog.storage.database import Timeouts, with_timeouts
from pgsyslog.storage.maintenance import MaintenanceBusy, MaintenanceResult, run_maintenance
from pgsyslog.storage.spool import Spool

if TYPE_CHECKING:
    from pgsyslog.http import HttpServer

log = logging.getLogger(__name__)

# How long start-up waits for the database before it announces itself without one.
# How long start-up waits for the first try to make the database ready (a first initdb of
# the embedded server can take a while on a busy machine) before it announces itself.
START_WAIT = 60.0
KEEPER_BACKOFF_FIRST = 1.0  # seconds between tries to reach the database at start...
KEEPER_BACKOFF_MAX = 10.0  # ... doubling up to this
SUPERVISE_INTERVAL = 2.0  # seconds between checks that the embedded server still runs
# A stop signal this soon after the first is the same one delivered twice (timeout(1) and
# some supervisors signal the process and its group), not a second request.
SAME_SIGNAL = 1.0
BACKLOG = 1024  # connections the kernel completes before pgsyslog accepts them
# At a stop, bounds on steps that wait on others: connections still being read after their
# cut-off, the HTTP server's close, and the embedded server's stop.
READ_AFTER_CUT_OFF = 6.0
# RELP sessions, once the writers are done, send their last responses and serverclose,
# and their clients close: a loop turn and a round trip; past this they are aborted.
RELP_CLOSE = 3.0
HTTP_CLOSE = 3.0
DATABASE_STOP = 10.0


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
    def __init__(self, config: Config, out: TextIO = sys.stdout,
                 early_stops: list[int] | None = None) -> None:
        self.config = config
        self.early_stops = early_stops if early_stops is not None else []
        self.out = out
        # queue_bytes bounds all that is received and not written: with UDP listeners,
        # half of it is for their reader processes (raw datagrams, 5 times smaller than
        # records: where a burst waits for the parser), the other half for the queue.
        udp_listeners = sum(1 for transport, _ in config.listeners if transport == "udp")
        self._reader_bytes = config.queue_bytes // 2 // max(1, udp_listeners)
        self.queue = RecordQueue(config.queue_size, config.batch_rows,
                                 config.queue_bytes - self._reader_bytes * udp_listeners)
        self.state = ReceiverState(self.queue)
        self.state.registry.max_connections = config.max_connections
        self.state.registry.max_connections_per_source = config.max_connections_per_source
        zones = ZoneResolver(config.default_zone, config.source_timezones)
        self.intake = Intake(self.queue, self.state.counters, zones, config.max_frame_length)
        self.link = DatabaseLink(Timeouts.of(config))
        self.spooler = Spooler(None, self.state.counters, self._spool_size)  # set by run()
        self._overflow = Overflow(self.spooler, self.state.counters, config.batch_rows)
        self.intake.overflow = self._overflow
        self._stream_servers: list[asyncio.Server | TlsServer] = []
        self._tls_servers: list[TlsServer] = []
        self.relp_sessions = RelpSessions()
        self._udp: list[UdpListener] = []
        self._udp_drops = 0
        self._embedded: database.EmbeddedDatabase | None = None
        self._http: HttpServer | None = None
        self._https: ssl.SSLContext | None = None  # the HTTP listener's, reloaded at SIGHUP
        self._schedule: MaintenanceSchedule | None = None
        self._writers: dict[asyncio.Task[None], BatchWriter] = {}
        self._background: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()  # a second signal: spool what is in memory, exit now
        self._stop_asked = 0.0
        self._first_try_over = asyncio.Event()  # the database keeper's first try ended
        self._display_dsn: str | None = None  # as configured or started, without timeouts

    def request_stop(self) -> None:
        if self._stop.is_set():
            if time.monotonic() - self._stop_asked < SAME_SIGNAL:
                return  # one signal delivered twice (to the process and its group)
            if not self._hurry.is_set():
                log.warning("second stop signal: spooling what is in memory and exiting now")
            self._hurry.set()
        else:
            self._stop_asked = time.monotonic()
        self._stop.set()

    async def run(self) -> None:
        # Signals are caught from the first moment: a stop asked for during start-up
        # takes effect as soon as the receiver is up.
        with _signals_set(self.request_stop, self._reload):
            if self.early_stops:
                self.request_stop()
            try:
                self.spooler.spool = self._spool()
                await self._bind_all()
                await self._serve()
            finally:
                await self._close_everything()
        log.info("stopped: %s, kernel_udp_drops=%d", self.state.counters.as_dict(),
                 self._kernel_udp_drops())

    async def _serve(self) -> None:
        self._start_writers()
        keeper = self._spawn(self._keep_database(), "database")
        for server in self._stream_servers:
            await server.start_serving()
        for listener in self._udp:
            listener.start()
        self.state.kernel_udp_drops = self._kernel_udp_drops
        idle_sweeper = self._spawn(self._close_idle_connections(), "idle")
        await self._wait_for_database(keeper)
        self.state.serving = True
        self._announce()
        collector.settle()  # what start-up built stays; the records die young
        await self._stop.wait()
        self.state.serving = False
        idle_sweeper.cancel()
        await self._shut_down()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._background.append(task)
        return task

    # ------------------------------------------------------------------ writers

    def _start_writers(self) -> None:
        for _ in range(self.config.writers):
            self._start_writer()
        if self.spooler.enabled:
            store = BatchStore(self.link, self.state.counters, self._reject)
            replayer = SpoolReplayer(self.spooler, store, self.link, self.state.counters)
            self._replay_task = self._spawn(replayer.run(), "spool replay")

    def _start_writer(self, first: Batch | None = None) -> None:
        store = BatchStore(self.link, self.state.counters, self._reject,
                           self.state.observe_batch)
        writer = BatchWriter(self.queue, store, self.spooler, self.link, self.state.counters,
                             self.config.batch_age_ms / 1000)
        writer.current = first  # taken over from a writer that died, identity and all
        task = asyncio.create_task(writer.run(), name=f"writer {len(self._writers)}")
        self._writers[task] = writer
        task.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """A writer that died is replaced; the new one writes first the batch it held."""
        writer = self._writers.pop(task)
        if task.cancelled() or task.exception() is None:
            self._writers[task] = writer  # finished or stopped: the stop collects it
            return
        log.critical("%s stopped: %r; starting a new writer", task.get_name(),
                     task.exception())
        self.state.counters.writer_restarts += 1
        held, writer.current = writer.current, None
        self._start_writer(first=held)

    def _reject(self, record: Record, error: str) -> None:
        spool = self.spooler.spool
        if spool is not None:
            spool.reject(record, error)

    # ------------------------------------------------------------------ database

    async def _wait_for_database(self, keeper: asyncio.Task[None]) -> None:
        """Until the first try to make the database ready is over (START_WAIT at most)
        before saying that pgsyslog is receiving, so that the banner can say whether the
        database answers; receiving has begun already either way."""
        ready = asyncio.ensure_future(self._first_try_over.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((ready, stop, keeper), timeout=START_WAIT,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            stop.cancel()
        if keeper.done() and not keeper.cancelled() and keeper.exception() is not None:
            raise keeper.exception()  # type: ignore[misc]
        self.link.patience_over.set()

    async def _keep_database(self) -> None:
        """Make the database ready (start, migrate, partitions), retrying while it is
        away; then, for the embedded server, start it again whenever it dies."""
        dsn = await self._until_done("the database is not ready", self._prepare_database)
        self._database_ready(dsn)
        self._schedule = MaintenanceSchedule(dsn, self.config, self._maintained)
        self._schedule.start()
        if self._embedded is not None:
            await self._supervise_embedded(self._embedded)

    async def _until_done(self, what: str, step: Callable[[], str]) -> str:
        delay = KEEPER_BACKOFF_FIRST
        tries = 0
        while True:
            try:
                return await asyncio.to_thread(step)
            except StartupError:
                raise
            except Exception as e:
                self._first_try_over.set()
                tries += 1
                level = logging.WARNING if tries == 1 or tries % 10 == 0 else logging.DEBUG
                log.log(level, "%s: %s; receiving%s meanwhile, trying again in %.0fs", what,
                        self._startup_problem(e), " and spooling" if self.spooler.enabled
                        else "", delay)
                await asyncio.sleep(delay)
                delay = min(KEEPER_BACKOFF_MAX, delay * 2)

    def _startup_problem(self, error: Exception) -> str:
        """One line for why the database could not be made ready (secrets masked)."""
        dsn = self.config.dsn
        cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps psycopg's errors
        if isinstance(error, MaintenanceBusy):
            text = str(error)
        elif isinstance(cause, psycopg.Error):
            text = database_problem(cause, dsn or self._display_dsn or "")
        elif self._embedded is not None or dsn is None:
            text = embedded_start_problem(self.config.data_dir / "pgdata", error)
        else:
            text = describe(error)
        return mask_secrets(text, dsn)

    def _database_ready(self, dsn: str) -> None:
        self._first_try_over.set()
        self.state.dsn = dsn
        self.link.make_ready(dsn)
        self.spooler.replay_wanted.set()

    async def _supervise_embedded(self, embedded: database.EmbeddedDatabase) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL)
            if await asyncio.to_thread(embedded.is_running):
                continue
            log.error("the embedded PostgreSQL in %s stopped; starting it again",
                      embedded.pgdata)
            self.link.went_down(KEEPER_BACKOFF_FIRST)
            dsn = await self._until_done("the embedded PostgreSQL does not start",
                                         embedded.restart)
            log.warning("the embedded PostgreSQL runs again")
            self._database_ready(with_timeouts(dsn, self.link.timeouts))

    def _prepare_database(self) -> str:
        cfg = self.config
        if cfg.dsn:
            dsn = cfg.dsn
        else:
            if self._embedded is None:
                self._embedded = database.EmbeddedDatabase(cfg.data_dir, stop_on_exit=True)
                dsn = self._embedded.start()
            else:
                dsn = self._embedded.restart()
        self._display_dsn = dsn
        dsn = with_timeouts(dsn, self.link.timeouts)
        migrate.upgrade(dsn)
        # Partitions before the first write: wait for another receiver's run rather than skip.
        result = run_maintenance(dsn, ahead=cfg.partitions_ahead,
                                 retention_days=cfg.retention_days, wait=True,
                                 steps=("ensure",))
        if result.created:
            log.info("created partitions: %s", ", ".join(result.created))
        return dsn

    def _stop_database(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()

    # ------------------------------------------------------------------ running

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
        directory = cfg.data_dir / "spool"
        try:
            spool = Spool(directory, cfg.spool_max_bytes, cfg.spool_fsync)
        except OSError as e:
            raise StartupError(f"cannot use the spool directory {directory}: "
                               f"{e.strerror or e}") from None
        self._spool_size(spool.pending)
        return spool

    def _spool_size(self, pending: int) -> None:
        self.state.spool_bytes = pending

    def _maintained(self, result: MaintenanceResult) -> None:
        self.state.maintenance_runs += 1
        self.state.partitions_dropped += len(result.dropped)

    def _kernel_udp_drops(self) -> int:
        """Never goes down: the count of a closed socket is its last one read."""
        inodes = set()
        for listener in self._udp:
            with contextlib.suppress(OSError, ValueError):  # a socket closed already
                inodes.add(listener.inode)
        if inodes:
            self._udp_drops = max(self._udp_drops, kernel_drops(inodes))
        return self._udp_drops

    def _reload(self) -> None:
        """SIGHUP: load the TLS certificate, key and client CA again, and the HTTPS
        certificate and key (rotation)."""
        if not self._tls_servers and self._https is None:
            log.info("SIGHUP: nothing to reload (no TLS listener)")
            return
        if self._https is not None:
            self._reload_https(self._https)
        if self._tls_servers:
            self._reload_tls()

    def _reload_https(self, live: ssl.SSLContext) -> None:
        """The HTTP server keeps its context: the new files go into it, once a context of
        their own has shown that they load (tests/test_https.py::
        test_sighup_reloads_the_https_certificate_and_keeps_it_when_the_new_files_are_bad)."""
        cfg = self.config
        assert cfg.http_tls_cert is not None and cfg.http_tls_key is not None
        try:
            https_context_from_config(cfg)
            live.load_cert_chain(cfg.http_tls_cert, cfg.http_tls_key)
        except Exception as e:  # whatever the files hold, a reload never stops serve
            log.error("SIGHUP: kept the HTTPS certificate in use: cannot load the new files: "
                      "%s", str(e).strip().splitlines()[0] if str(e).strip()
                      else type(e).__name__)
            return
        log.warning("SIGHUP: reloaded the HTTPS certificate %s and key %s", cfg.http_tls_cert,
                    cfg.http_tls_key)

    def _reload_tls(self) -> None:
        cfg = self.config
        try:
            context = context_from_config(cfg)
        except Exception as e:  # whatever the files hold, a reload never stops serve
            log.error("SIGHUP: kept the TLS certificate in use: cannot load the new files: %s",
                      str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            return
        for server in self._tls_servers:
            server.context = context  # new handshakes only; open connections go on
        log.warning("SIGHUP: reloaded the TLS certificate %s, key %s%s", cfg.tls_cert,
                    cfg.tls_key, f" and client CA {cfg.tls_client_ca}"
                    if cfg.tls_client_ca else "")

    # ------------------------------------------------------------------ start

    async def _bind_all(self) -> None:
        """Every socket, HTTP included, before the database is touched."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        warning = check_open_files(cfg.max_connections)
        if warning:
            log.warning("%s", warning)
        tls_context = None
        if cfg.uses_tls:
            try:
                tls_context = context_from_config(cfg)
            except TlsContextError as e:
                raise StartupError(str(e)) from None
        for transport, endpoint in cfg.listeners:
            try:
                if transport == "udp":
                    listener = await UdpListener.bind(endpoint, self.intake,
                                                      cfg.udp_receive_buffer,
                                                      AllowList(cfg.udp_allow),
                                                      self.state.listeners_down,
                                                      self._reader_bytes, self._overflow)
                    self._udp.append(listener)
                    bound = listener.sockname
                elif transport == "tls":
                    assert tls_context is not None
                    shared = StreamListener(transport, self.intake, self.state.registry,
                                            AllowList(cfg.tls_allow))
                    tls_server = TlsServer.bind(endpoint, shared, tls_context,
                                                cfg.tls_handshake_timeout,
                                                self.state.listeners_down,
                                                cfg.tls_permitted_peers)
                    self._stream_servers.append(tls_server)
                    self._tls_servers.append(tls_server)
                    bound = tls_server.sockets[0].getsockname()
                elif transport == "relp" or transport == "relp_tls":
                    bound = await self._bind_relp(transport == "relp_tls", endpoint,
                                                  tls_context)
                else:
                    shared = StreamListener(transport, self.intake, self.state.registry,
                                            AllowList(cfg.tcp_allow))
                    # Bound and listening now: a port another listener of ours holds
                    # fails here, not silently later in start_serving (uvloop's does not
                    # raise there).
                    server = await loop.create_server(
                        functools.partial(SyslogStreamProtocol, shared),
                        sock=listening_socket(endpoint), start_serving=False)
                    self._stream_servers.append(server)
                    bound = server.sockets[0].getsockname()
            except OSError as e:
                raise bind_error(transport, endpoint, e) from None
            self.state.listening.append(Listening(transport, Endpoint(endpoint.host, bound[1])))
        self._http = await self._start_http()

    async def _bind_relp(self, over_tls: bool, endpoint: Endpoint,
                         tls_context: ssl.SSLContext | None) -> Any:
        """A RELP listener (tcp_allow, or tls_allow over TLS); returns the bound address."""
        cfg = self.config
        shared = RelpListener("relp", self.intake, self.state.registry,
                              AllowList(cfg.tls_allow if over_tls else cfg.tcp_allow),
                              sessions=self.relp_sessions)
        if over_tls:
            assert tls_context is not None
            tls_server = TlsServer.bind(endpoint, shared, tls_context,
                                        cfg.tls_handshake_timeout, self.state.listeners_down,
                                        cfg.tls_permitted_peers)
            tls_server.protocol = TlsRelpSession
            self._stream_servers.append(tls_server)
            self._tls_servers.append(tls_server)
            return tls_server.sockets[0].getsockname()
        server = await asyncio.get_running_loop().create_server(
            functools.partial(RelpSession, shared), sock=listening_socket(endpoint),
            start_serving=False)
        self._stream_servers.append(server)
        return server.sockets[0].getsockname()

    async def _start_http(self) -> HttpServer | None:
        endpoint = self.config.http
        if endpoint is None:
            return None
        from pgsyslog.http import start_http
        from pgsyslog.http.auth import MIN_TOKEN_LENGTH

        try:
            https = https_context_from_config(self.config)
        except TlsContextError as e:
            raise StartupError(str(e)) from None
        try:
            http = await start_http(endpoint, self.config.http_token, self.state,
                                    db_connections=self.config.http_db_connections,
                                    max_response_bytes=self.config.http_max_response_bytes,
                                    stream_timeout=self.config.http_stream_timeout,
                                    alert_rules=self.config.alert,
                                    retention_days=self.config.retention_days,
                                    ssl_context=https)
        except OSError as e:
            raise bind_error("http", endpoint, e) from None
        self._https = https
        scheme = "http" if https is None else "https"
        self.state.listening.append(Listening(scheme, Endpoint(endpoint.host, http.port)))
        if self.config.http_token and https is None and not is_loopback(endpoint.host):
            log.warning("the HTTP API on %s listens beyond this machine without HTTPS: "
                        "http_token travels in clear text; set http_tls_cert and "
                        "http_tls_key, or listen on 127.0.0.1 and use an SSH tunnel", endpoint)
        if self.config.http_token and len(self.config.http_token) < MIN_TOKEN_LENGTH:
            log.warning("http_token is shorter than %d characters: a guess may find it; "
                        "use a long random one (openssl rand -hex 24)", MIN_TOKEN_LENGTH)
        if not self.config.http_token and not is_loopback(endpoint.host):
            log.warning("the HTTP API on %s is open to the network without http_token: anyone "
                        "who reaches it can read every message; set http_token, or listen "
                        "on 127.0.0.1 and use an SSH tunnel", endpoint)
        return http

    def _announce(self) -> None:
        if self._display_dsn is not None and self.link.ready.is_set():
            where = mask_dsn(self._display_dsn)
            if self._embedded:
                where += f" (embedded, in {self.config.data_dir})"
        else:
            where = ("not reachable yet; receiving"
                     + (" and spooling" if self.spooler.enabled else "")
                     + " until it answers")
        lines = [f"pgsyslog is receiving; database: {where}"]
        for item in self.state.listening:
            lines.append(f"listening on {item.transport}://{item.endpoint}")
        example = logger_example(self.state.listening)
        if example:
            lines.append(f"try: {example}")
        lines.append(f"then: psql {self._psql_target()} -c "
                     '"SELECT received_at, hostname, app_name, message '
                     'FROM syslog.messages ORDER BY id DESC LIMIT 10"')
        print("\n".join(lines), file=self.out, flush=True)

    def _psql_target(self) -> str:
        """What to hand psql: the DSN as given (a password masked: the operator knows it),
        or the embedded server's, from pgsyslog dsn."""
        if self.config.dsn:
            return f"'{mask_dsn(self.config.dsn)}'"
        if self.config.data_dir != default_data_dir():
            return f'"$(pgsyslog dsn --data-dir {self.config.data_dir})"'
        return '"$(pgsyslog dsn)"'

    # ------------------------------------------------------------------ stop

    async def _shut_down(self) -> None:
        """Stop reading, write what was read as far as the deadline allows, spool the rest."""
        if self._schedule is not None:
            self._schedule.shutdown()
        self.link.patience_over.set()
        log.info("stopping: closing listeners, then writing what was received")
        self.relp_sessions.stop_reading()
        deadline = time.monotonic() + self.config.shutdown_timeout
        listeners = asyncio.ensure_future(self._stop_listeners(deadline))
        await self._until_hurry(listeners, deadline)
        if not listeners.done():
            # A second signal: cut every connection off now and read what its kernel
            # acknowledged, then spool it with the rest.
            await self.state.registry.drain_and_close(time.monotonic())
        await self._wait_bounded(listeners, READ_AFTER_CUT_OFF)
        for writer in self._writers.values():
            writer.close()
        writers_done = asyncio.gather(*self._writers, return_exceptions=True)
        await self._until_hurry(writers_done, deadline)
        await self._until_hurry(self._spool_replayed(), deadline)
        await self._spool_what_is_left()
        await self.relp_sessions.wait_closed(time.monotonic() + RELP_CLOSE)

    @staticmethod
    async def _wait_bounded(work: asyncio.Future[Any], seconds: float) -> None:
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(work), seconds)

    async def _until_hurry(self, work: Awaitable[Any], deadline: float) -> None:
        """Wait for ``work`` until the deadline or a second signal (work goes on)."""
        task = asyncio.ensure_future(work)
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait((task, hurry), timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            hurry.cancel()

    async def _spool_replayed(self) -> None:
        while self.spooler.pending and self.link.ready.is_set() and not self.link.down:
            await asyncio.sleep(0.1)

    async def _spool_what_is_left(self) -> None:
        """Cancel the writers; spool their batches and the queue in frames of batch_rows,
        past spool_max_bytes; without a spool, count and log what is lost."""
        for task in self._writers:
            task.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        # A writer's batch keeps its identity: it may have been spooled already (an append
        # finishing in its thread after the cancel) or committed late by a database that
        # hung; the replay then recognises it and skips it.
        batches = [w.current for w in self._writers.values() if w.current is not None]
        for writer in self._writers.values():
            writer.current = None
        batches += [Batch.new(chunk) for chunk in chunks(self.queue.take_all(),
                                                          self.config.batch_rows)]
        rows = sum(len(b.records) for b in batches)
        if not rows:
            return
        if not self.spooler.enabled:
            self.state.counters.lost_at_stop += rows
            log.error("stopped with %d rows neither written nor spooled (spool_max_bytes = 0 "
                      "turns the spool off): they are lost", rows)
            return
        spooled = 0
        for batch in batches:
            if await self.spooler.put(batch, force=True):
                spooled += len(batch.records)
                self.queue.receipts.settle(batch.records)
        self.state.counters.lost_at_stop += rows - spooled
        log.warning("database not written in time at the stop: %d rows spooled for the next "
                    "start%s", spooled,
                    f", {rows - spooled} lost (the disk refused them)" if spooled < rows else "")

    async def _stop_listeners(self, deadline: float) -> None:
        # Half the stop for reading at most: a sender that never goes quiet must leave
        # the writers time to write what was read.
        reading_ends = min(deadline, time.monotonic() + self.config.shutdown_timeout / 2)
        await stop_listening(self._stream_servers, min(reading_ends, time.monotonic() + 1.0))
        self._kernel_udp_drops()  # the last count of the sockets, before they close
        # Side by side: each reader hands over what it holds in the same reading time.
        await asyncio.gather(*(listener.stop(reading_ends) for listener in self._udp))
        await self._overflow.close()
        await self.state.registry.drain_and_close(reading_ends)

    async def _close_everything(self) -> None:
        for server in self._stream_servers:
            server.close()
        for session in list(self.relp_sessions.open):
            session.abort()  # an exit that skipped the stop: nothing more is answered
        for listener in self._udp:
            await listener.stop(0)  # an exit that skipped the stop: no reader left behind
        for task in [*self._background, *self._writers]:
            task.cancel()
        await asyncio.gather(*self._background, *self._writers, return_exceptions=True)
        await self._overflow.close()
        if self._writers and (self.queue or any(w.current for w in self._writers.values())):
            await self._spool_what_is_left()  # an exit that skipped the stop (start-up error)
        if self._schedule is not None:
            self._schedule.shutdown()
        if self._http is not None:
            # Live tails and the pool may wait on a database that hangs: not past this.
            await self._wait_bounded(asyncio.ensure_future(self._http.close()), HTTP_CLOSE)
        stopping = asyncio.ensure_future(asyncio.to_thread(self._stop_database))
        await self._wait_bounded(stopping, DATABASE_STOP)
        if not stopping.done():
            log.error("the embedded PostgreSQL did not stop within %.0fs (it does not "
                      "answer); it is left running", DATABASE_STOP)


def listening_socket(endpoint: Endpoint) -> socket.socket:
    family = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((endpoint.host, endpoint.port), family=family,
                                backlog=BACKLOG)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or every address ("" / "0.0.0.0" are not loopback)


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
def _signals_set(stop: Callable[[], None], reload: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop``, SIGHUP ``reload``, while inside; the old handlers
    come back after."""
    loop = asyncio.get_running_loop()
    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: reload}
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)
