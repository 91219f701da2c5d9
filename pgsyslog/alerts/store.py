"""syslog.alert_state, alert_history and alert_notifications: reads and writes.

A round's state changes and their history rows are written in one transaction, so that
the history never misses or doubles a change (tests/test_alerts_evaluate.py::
test_a_round_writes_state_with_its_history_and_claims_each_notification_once). An owed
notification (status != notified_status, which is null while a change is being delivered)
is claimed (claimed_until) by the receiver that sends it, so that two receivers on one
database never both send it
(tests/test_alerts_serve.py::test_two_receivers_on_one_database_send_each_notification_once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgsyslog.alerts.evaluate import AlertState, Decision, Status

Connection = psycopg.Connection[Any]

_STATE_COLUMNS = ("rule, group_key AS group, status, started_at, evaluated_at, last_count, "
                  "samples, notified_status, notified_at, group_by")


def _state(row: dict[str, Any]) -> AlertState:
    return AlertState(**row)


def load_states(conn: Connection, rules: Sequence[str] | None = None
                ) -> dict[str, dict[str, AlertState]]:
    """rule -> group -> state, of the given rules (all rules: None)."""
    sql = f"SELECT {_STATE_COLUMNS} FROM syslog.alert_state"
    params: tuple[Any, ...] = ()
    if rules is not None:
        sql += " WHERE rule = ANY(%s)"
        params = (list(rules),)
    states: dict[str, dict[str, AlertState]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(sql + " ORDER BY rule, group_key", params):
            state = _state(row)
            states.setdefault(state.rule, {})[state.group] = state
    return states


_UPSERT = """
    INSERT INTO syslog.alert_state AS s (rule, group_key, status, started_at, evaluated_at,
                                         last_count, samples, notified_status, group_by)
    VALUES (%(rule)s, %(group)s, %(status)s, %(started_at)s, %(evaluated_at)s, %(count)s,
            %(samples)s, %(notified_status)s, %(group_by)s)
    ON CONFLICT (rule, group_key) DO UPDATE SET
        status = excluded.status, started_at = excluded.started_at, group_by = excluded.group_by,
        evaluated_at = excluded.evaluated_at, last_count = excluded.last_count,
        samples = coalesce(excluded.samples, s.samples)
"""
_HISTORY = """
    INSERT INTO syslog.alert_history (rule, group_key, status, at, count)
    VALUES (%(rule)s, %(group)s, %(status)s, %(started_at)s, %(count)s)
"""


def _params(state: AlertState) -> dict[str, Any]:
    return {"rule": state.rule, "group": state.group, "status": state.status,
            "started_at": state.started_at, "evaluated_at": state.evaluated_at,
            "count": state.last_count,
            "samples": None if state.samples is None else Jsonb(state.samples),
            "notified_status": state.notified_status, "group_by": state.group_by}


def write_decisions(conn: Connection, decisions: Sequence[Decision]) -> None:
    """New states and, for each change, its history row: one transaction (a round's, so
    that 50 rules cost one commit, not 50).

    notified_status is set only when a row is created; afterwards only the sender
    changes it (mark_notified)."""
    states = [_params(d.state) for d in decisions]
    changes = [_params(d.state) for d in decisions if d.changed]
    with conn.transaction(), conn.cursor() as cur:
        if states:
            cur.executemany(_UPSERT, states)
        if changes:
            cur.executemany(_HISTORY, changes)


def claim_owed(conn: Connection, rules: Sequence[str], now: datetime, hold: float,
               resend: Sequence[str] = (), resend_after: float = 60.0) -> list[AlertState]:
    """The owed notifications of these rules that nobody is sending, claimed for ``hold``
    seconds; and, of the ``resend`` rules, firing alerts last notified more than
    ``resend_after`` seconds ago (Alertmanager forgets an alert that is not sent again).

    Claiming a change sets notified_status to null until mark_notified: from then on some
    targets may have heard the new status and others not, so if the delivery is cut short
    (a stop, the database away while it records) and the status flips back meanwhile, the
    current status is still owed to every target (tests/test_alerts_evaluate.py::
    test_a_change_claimed_but_never_marked_stays_owed_when_the_status_flips_back,
    tests/test_alerts_serve.py::
    test_a_stop_during_a_resolved_delivery_leaves_firing_owed_to_every_target)."""
    sql = f"""
        UPDATE syslog.alert_state SET claimed_until = %(until)s,
            notified_status = CASE WHEN status IS DISTINCT FROM notified_status THEN NULL
                                   ELSE notified_status END
        WHERE rule = ANY(%(rules)s)
          AND (claimed_until IS NULL OR claimed_until < %(now)s)
          AND (status IS DISTINCT FROM notified_status
               OR (rule = ANY(%(resend)s) AND status = 'firing'
                   AND notified_status = 'firing' AND notified_at < %(stale)s))
        RETURNING {_STATE_COLUMNS}
    """
    params = {"until": now + timedelta(seconds=hold), "rules": list(rules), "now": now,
              "resend": list(resend), "stale": now - timedelta(seconds=resend_after)}
    with conn.cursor(row_factory=dict_row) as cur:
        return [_state(row) for row in cur.execute(sql, params)]


def mark_notified(conn: Connection, state: AlertState, now: datetime) -> None:
    """The status in ``state`` was delivered (or given up on); the claim ends. If the status
    changed meanwhile, the new one stays owed."""
    conn.execute("UPDATE syslog.alert_state SET notified_status = %s, notified_at = %s, "
                 "claimed_until = NULL WHERE rule = %s AND group_key = %s",
                 (state.status, now, state.rule, state.group))


@dataclass(frozen=True, slots=True)
class Attempt:
    rule: str
    group: str
    status: Status
    target: str
    attempt: int  # 1 for the first try
    http_status: int | None
    error: str | None


def record_attempt(conn: Connection, attempt: Attempt) -> None:
    conn.execute("INSERT INTO syslog.alert_notifications (rule, group_key, status, target, "
                 "attempt, http_status, error) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (attempt.rule, attempt.group, attempt.status, attempt.target,
                  attempt.attempt, attempt.http_status, attempt.error))


@dataclass(frozen=True, slots=True)
class Change:
    """One row of syslog.alert_history."""

    at: datetime
    rule: str
    group: str
    status: Status
    count: int


def history(conn: Connection, limit: int, rule: str | None = None) -> list[Change]:
    """Changes of status, newest first."""
    where = "WHERE rule = %(rule)s" if rule is not None else ""
    sql = (f"SELECT at, rule, group_key AS group, status, count FROM syslog.alert_history "
           f"{where} ORDER BY at DESC, id DESC LIMIT %(limit)s")
    with conn.cursor(row_factory=dict_row) as cur:
        return [Change(**row) for row in cur.execute(sql, {"rule": rule, "limit": limit})]


def attempts(conn: Connection, rule: str | None = None) -> list[Attempt]:
    """Notification attempts, oldest first."""
    where = "WHERE rule = %(rule)s" if rule is not None else ""
    sql = (f"SELECT rule, group_key AS group, status, target, attempt, http_status, error "
           f"FROM syslog.alert_notifications {where} ORDER BY id")
    with conn.cursor(row_factory=dict_row) as cur:
        return [Attempt(**row) for row in cur.execute(sql, {"rule": rule})]
