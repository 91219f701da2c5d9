"""GET /healthz: 200 when the listeners run and the database answers, else 503 and why.

The database is asked ``SELECT 1`` on a connection of the API's pool (no connection of
its own per probe), so the answer turns ok by itself once the database is back. A pool
whose connections are all lent out to searches is not a failure: they were made, so the
database answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from aiohttp import web

from pgsyslog.http.context import DATABASE, STATE
from pgsyslog.http.database import ApiDatabase, PoolBusy
from pgsyslog.http.errors import NoDatabase, describe
from pgsyslog.receiver.state import ReceiverState

CHECK_TIMEOUT = 3.0  # seconds the database has to lend a connection and answer SELECT 1


async def database_status(db: ApiDatabase) -> tuple[bool, str]:
    """Whether the database can be used, and "ok" or why not."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), db.connection() as conn:
            await conn.execute("SELECT 1")
    except PoolBusy as e:
        return True, f"ok; {e.reason}"
    except NoDatabase as e:
        return False, e.reason
    except TimeoutError:
        return False, f"no answer within {CHECK_TIMEOUT:g} s"
    except psycopg.Error as e:
        return False, describe(e, db.state.dsn)
    return True, "ok"


def listener_problems(state: ReceiverState) -> list[str]:
    problems = [] if state.serving else ["the listeners are not running"]
    return problems + [f"{name}: {why}" for name, why in sorted(state.listeners_down.items())]


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    database_ok, database = await database_status(request.app[DATABASE])
    problems = [*listener_problems(state), *([] if database_ok else [f"database: {database}"])]
    body: dict[str, Any] = {
        "status": "unavailable" if problems else "ok",
        "database": database,
        "listening": [f"{item.transport}://{item.endpoint}" for item in state.listening],
        "listeners_down": dict(sorted(state.listeners_down.items())),
        "queue": len(state.queue),
    }
    if problems:
        body["reason"] = "; ".join(problems)
    return web.json_response(body, status=503 if problems else 200)
