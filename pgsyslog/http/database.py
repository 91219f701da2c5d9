"""The API's database connections: a small bounded pool, and one connection per live tail.

Searches and /healthz borrow from one pool of at most ``http_db_connections``
connections; a request that finds none free within POOL_WAIT gets 503 rather than opening
another, so that a burst of requests cannot take the connections the writers need. Live
tails LISTEN, which ties a connection up for as long as the stream lasts: each opens its
own, under the cap on streams (pgsyslog.http.tail).

The HTTP server starts before the database is known (``state.dsn`` is None until the
receiver has migrated it): until then every request is answered 503 "database: not ready".
The pool is made on the first request after ``state.dsn`` is set, and made anew if it
changes. The pool reconnects by itself, so the API and /healthz come back with the
database without a restart. Tested by test_http_limits.py::
test_a_request_that_finds_no_free_connection_gets_503 (the bound) and test_http.py::
test_healthz_is_503_while_the_database_refuses_and_ok_again_by_itself (the recovery).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from pgsyslog.http.context import DEFAULT_DB_CONNECTIONS
from pgsyslog.http.errors import NoDatabase, describe
from pgsyslog.receiver.state import ReceiverState
from pgsyslog.storage.database import APPLICATION_NAME

NOT_READY = "not ready"
POOL_WAIT = 2.0  # seconds a request waits for a free connection before it gets 503
CONNECT_TIMEOUT = 5  # seconds to open a connection, unless the DSN says otherwise
# Seconds the pool keeps retrying a failed connection in the background; after that the
# next request starts a new attempt, so an outage of any length ends by itself.
RECONNECT_TIMEOUT = 10.0
MAX_WAITING = 64  # requests queued for a connection at most; more get 503 at once
# In pg_stat_activity, the API's connections are told apart from the writers'.
POOL_APPLICATION = f"{APPLICATION_NAME} api"
TAIL_APPLICATION = f"{APPLICATION_NAME} tail"

Connection = psycopg.AsyncConnection[Any]


class PoolBusy(NoDatabase):
    """Every connection of the pool is lent out: the database itself may be fine."""


def connect_kwargs(dsn: str, application_name: str) -> dict[str, Any]:
    """Who we are, and a connect timeout when the DSN sets none."""
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.Error:
        raise NoDatabase("the DSN cannot be parsed") from None
    kwargs: dict[str, Any] = {"application_name": application_name}
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    return kwargs


def _reporting(report: Callable[[str | None], None], dsn: str) -> type[Connection]:
    """A connection class that tells ``report`` how each connect went (None: it worked).

    The pool connects in the background and keeps the reason of a failure to itself; a
    request that then times out waiting should say why the database cannot be reached."""

    class ReportingConnection(psycopg.AsyncConnection[Any]):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                conn = await super().connect(conninfo, **kwargs)
            except psycopg.Error as e:
                report(describe(e, dsn))
                raise
            report(None)
            return conn

    return ReportingConnection


class ApiDatabase:
    """The pool of the API, made from ``state.dsn`` when it is first needed."""

    def __init__(self, state: ReceiverState, size: int = DEFAULT_DB_CONNECTIONS,
                 wait: float = POOL_WAIT) -> None:
        self.state = state
        self.size = size
        self.wait = wait
        self.last_error: str | None = None  # why the pool's last connect failed
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._pool_dsn: str | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def _report(self, error: str | None) -> None:
        self.last_error = error  # psycopg.pool logs each failed attempt itself

    async def _current_pool(self) -> AsyncConnectionPool[Connection]:
        dsn = self.state.dsn
        if dsn is None:
            raise NoDatabase(NOT_READY)
        if self._pool is not None and dsn == self._pool_dsn:
            return self._pool
        async with self._lock:
            if self._pool is None or dsn != self._pool_dsn:
                self._retire()
                kwargs = connect_kwargs(dsn, POOL_APPLICATION)
                pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
                    dsn, kwargs=kwargs, min_size=1, max_size=self.size, open=False,
                    connection_class=_reporting(self._report, dsn), name="pgsyslog-api",
                    check=AsyncConnectionPool.check_connection, timeout=self.wait,
                    max_waiting=MAX_WAITING, reconnect_timeout=RECONNECT_TIMEOUT)
                await pool.open(wait=False)
                self._pool, self._pool_dsn, self.last_error = pool, dsn, None
            return self._pool

    def _retire(self) -> None:
        """Close the pool of a DSN no longer in use; connections out now close on return."""
        if self._pool is not None:
            task = asyncio.create_task(self._pool.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            self._pool = self._pool_dsn = None

    def _none_free(self) -> NoDatabase:
        if self.last_error is not None:
            return NoDatabase(self.last_error)
        return PoolBusy(f"all {self.size} API connections are busy; try again shortly "
                        "(the setting http_db_connections)")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection of the pool, or NoDatabase; it goes back when the block ends."""
        pool = await self._current_pool()
        try:
            conn = await pool.getconn(timeout=self.wait)
        except (PoolTimeout, TooManyRequests):
            raise self._none_free() from None
        except PoolClosed:
            raise NoDatabase(NOT_READY) from None
        try:
            async with conn:  # commit or roll back; a pooled connection is not closed
                yield conn
        finally:
            await pool.putconn(conn)

    async def dedicated(self) -> Connection:
        """A new autocommit connection of its own (a live tail's), or NoDatabase."""
        dsn = self.state.dsn
        if dsn is None:
            raise NoDatabase(NOT_READY)
        kwargs = connect_kwargs(dsn, TAIL_APPLICATION)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT + 1):
                return await psycopg.AsyncConnection.connect(dsn, autocommit=True, **kwargs)
        except TimeoutError:
            raise NoDatabase(f"no connection within {CONNECT_TIMEOUT} s") from None
        except psycopg.Error as e:
            raise NoDatabase(describe(e, dsn)) from None

    async def close(self) -> None:
        self._retire()
        await asyncio.gather(*self._closing)
