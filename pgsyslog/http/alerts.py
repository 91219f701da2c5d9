"""GET /api/alerts: the configured rules and the state of their alerts; and the alert
families of /metrics.

``{"rules": [{"name", "query", "filters", "window", "threshold", "below", "group_by",
"notify"}], "alerts": [{"rule", "group", "status", "started_at", "evaluated_at",
"last_count", "samples"}]}``, firing alerts first. The state is read from the database,
so every receiver on it answers the same whichever one evaluated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.rows import dict_row

from pgsyslog.alerts.describe import rule_json, state_json
from pgsyslog.alerts.evaluate import AlertState
from pgsyslog.alerts.rules import AlertRule
from pgsyslog.http.context import DATABASE
from pgsyslog.http.errors import NoDatabase

ALERT_RULES = web.AppKey("alert_rules", tuple)
# Seconds a scrape waits for the alert state; past that /metrics answers without it.
METRICS_DB_WAIT = 2.0

_STATES_SQL = """
    SELECT rule, group_key AS group, status, started_at, evaluated_at, last_count, samples,
           notified_status, notified_at, group_by
    FROM syslog.alert_state WHERE rule = ANY(%s)
    ORDER BY status = 'firing' DESC, rule, group_key
"""
_ATTEMPTS_SQL = """
    SELECT http_status BETWEEN 200 AND 299 AS delivered, count(*)
    FROM syslog.alert_notifications GROUP BY 1
"""

Connection = psycopg.AsyncConnection[Any]


async def load_states(conn: Connection, rules: Sequence[AlertRule]) -> list[AlertState]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_STATES_SQL, ([r.name for r in rules],))
        return [AlertState(**row) for row in await cur.fetchall()]


async def alerts(request: web.Request) -> web.Response:
    rules: tuple[AlertRule, ...] = request.app[ALERT_RULES]
    async with request.app[DATABASE].connection() as conn:
        states = await load_states(conn, rules)
    document = {"rules": [rule_json(r) for r in rules],
                "alerts": [state_json(s) for s in states]}
    return web.json_response(document, dumps=lambda d: json.dumps(d, ensure_ascii=False))


class AlertCollector(Collector):
    def __init__(self, states: list[AlertState], attempts: dict[bool, int]) -> None:
        self.states = states
        self.attempts = attempts

    def collect(self) -> list[Metric]:
        firing = GaugeMetricFamily("pgsyslog_alert_firing", "1 while the alert fires, by "
                                   "rule and group (group empty without group_by).",
                                   labels=["rule", "group"])
        for state in self.states:
            firing.add_metric([state.rule, state.group], 1 if state.status == "firing" else 0)
        sent = CounterMetricFamily("pgsyslog_alert_notification_attempts", "Notification "
                                   "POSTs, by outcome (delivered: a 2xx answer).",
                                   labels=["outcome"])
        for delivered in (True, False):
            sent.add_metric(["delivered" if delivered else "failed"],
                            self.attempts.get(delivered, 0))
        return [firing, sent]


async def alert_metrics(app: web.Application) -> bytes:
    """The alert families in the text format; nothing while the database is away."""
    rules: tuple[AlertRule, ...] = app.get(ALERT_RULES, ())
    if not rules:
        return b""
    try:
        async with asyncio.timeout(METRICS_DB_WAIT), app[DATABASE].connection() as conn:
            states = await load_states(conn, rules)
            cur = await conn.execute(_ATTEMPTS_SQL)
            attempts = {bool(delivered): int(n) for delivered, n in await cur.fetchall()}
    except (NoDatabase, psycopg.Error, TimeoutError):
        return b""  # the receiver's own metrics matter most while the database is away
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AlertCollector(states, attempts))
    return generate_latest(registry)
