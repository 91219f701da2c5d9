"""GET /healthz: 200 when the listeners run and the database answers, else 503 and why."""

from __future__ import annotations

import asyncio

import psycopg
from aiohttp import web

from pgsyslog.http.context import STATE
from pgsyslog.http.database import first_line
from pgsyslog.receiver.state import ReceiverState
from pgsyslog.storage.database import connect_async

CHECK_TIMEOUT = 3.0  # seconds the database has to answer SELECT 1


async def database_problem(dsn: str | None) -> str | None:
    if dsn is None:
        return "not connected yet"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            conn = await connect_async(dsn, autocommit=True)
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:g} s"
    except psycopg.Error as e:
        return first_line(e)
    return None


def listener_problem(state: ReceiverState) -> str | None:
    return None if state.serving else "the listeners are not running"


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    database = await database_problem(state.dsn)
    problems = [p for p in (listener_problem(state),
                            None if database is None else f"database: {database}") if p]
    body = {
        "status": "unavailable" if problems else "ok",
        "database": database or "ok",
        "listening": [f"{item.transport}://{item.endpoint}" for item in state.listening],
        "queue": len(state.queue),
    }
    if problems:
        body["reason"] = "; ".join(problems)
    return web.json_response(body, status=503 if problems else 200)
