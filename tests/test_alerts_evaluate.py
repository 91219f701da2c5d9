"""Evaluation: the pure decisions, a rule's count as one indexed statement, the state and
history written together, owed notifications claimed once, the advisory lock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from helpers import query
from pgsyslog.alerts import store
from pgsyslog.alerts.counting import count, count_statement, summarize_new_ranges
from pgsyslog.alerts.engine import ALERTS_LOCK, CLAIM_SECONDS, evaluate_all
from pgsyslog.alerts.evaluate import AlertState, Decision, decide
from pgsyslog.alerts.notify import describe, targets
from pgsyslog.alerts.payload import alertmanager_json, notification_json, search_link
from pgsyslog.alerts.rules import AlertRule, parse_rules
from pgsyslog.storage import database
from pgsyslog.storage.queries import compile_query
from stored import insert, record

T0 = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def rule(**table: object) -> AlertRule:
    (parsed,) = parse_rules([{"name": "r", "window": "5m", **table}])
    return parsed


def state(group: str, status: str, notified: str | None, count: int = 0,
          group_by: str | None = None) -> AlertState:
    """A state of rule "r"; one of a group (``web1``) is by host unless told otherwise."""
    by = group_by or ("host" if group else None)
    return AlertState("r", group, status, T0, T0, count, None, notified,  # type: ignore[arg-type]
                      group_by=by)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ decisions


def test_a_threshold_fires_once_and_stays_firing_without_a_new_change() -> None:
    r = rule(threshold=20)
    (first,) = decide(r, {"": 25}, {}, T0)
    assert (first.state.status, first.changed, first.state.owed) == ("firing", True, True)
    again = state("", "firing", "firing", 25)
    (second,) = decide(r, {"": 30}, {"": again}, T0 + timedelta(seconds=30))
    assert (second.state.status, second.changed, second.state.owed) == ("firing", False, False)
    assert second.state.started_at == T0 and second.state.last_count == 30


def test_a_firing_alert_resolves_once_and_owes_one_resolved() -> None:
    r = rule(threshold=20)
    (resolved,) = decide(r, {"": 3}, {"": state("", "firing", "firing", 25)}, T0)
    assert (resolved.state.status, resolved.changed, resolved.state.owed) == (
        "resolved", True, True)


def test_a_group_first_seen_under_the_threshold_owes_nothing() -> None:
    (first,) = decide(rule(threshold=20, group_by="host"), {"web1": 3}, {}, T0)
    assert (first.state.status, first.changed, first.state.owed) == ("resolved", False, False)


def test_with_group_by_a_firing_group_that_matched_nothing_resolves() -> None:
    r = rule(threshold=20, group_by="host")
    previous = {"web1": state("web1", "firing", "firing", 25),
                "web9": state("web9", "resolved", "resolved", 1)}
    decisions = {d.state.group: d for d in decide(r, {"web2": 21}, previous, T0)}
    assert set(decisions) == {"web1", "web2"}  # web9, long quiet and resolved: untouched
    assert decisions["web1"].state.status == "resolved" and decisions["web1"].changed
    assert decisions["web2"].state.status == "firing" and decisions["web2"].changed


def test_below_with_group_by_fires_for_known_groups_that_went_quiet() -> None:
    r = rule(below=1, group_by="host")
    previous = {"fw1": state("fw1", "resolved", "resolved", 4),
                "fw2": state("fw2", "resolved", "resolved", 4)}
    decisions = {d.state.group: d for d in decide(r, {"fw2": 3, "fw3": 1}, previous, T0)}
    assert decisions["fw1"].state.status == "firing" and decisions["fw1"].changed
    assert decisions["fw2"].state.status == "resolved" and not decisions["fw2"].changed
    assert decisions["fw3"].state.status == "resolved"  # new, and sending


def test_a_change_of_group_by_resolves_the_alerts_of_the_old_grouping() -> None:
    later = T0 + timedelta(minutes=1)
    ungrouped = {"": state("", "firing", "firing", 25)}
    # group_by added: the one alert of the rule resolves; web1 fires on its own.
    added = {d.state.group: d for d in decide(rule(threshold=20, group_by="host"),
                                              {"web1": 25}, ungrouped, later)}
    assert {g: (d.state.status, d.changed, d.state.group_by) for g, d in added.items()} == {
        "": ("resolved", True, None), "web1": ("firing", True, "host")}
    assert added[""].state.owed
    # group_by removed: the hosts' alerts resolve, the rule's one alert is decided anew.
    by_host = {"web1": state("web1", "firing", "firing", 25),
               "web2": state("web2", "resolved", "resolved", 1)}
    removed = {d.state.group: d for d in decide(rule(threshold=20), {"": 3}, by_host, later)}
    assert {g: (d.state.status, d.changed) for g, d in removed.items()} == {
        "": ("resolved", False), "web1": ("resolved", True)}
    # host -> app with below: the known hosts are no apps that went quiet.
    quiet = rule(below=1, group_by="app")
    assert [(d.state.group, d.state.status) for d in decide(quiet, {"nginx": 4}, by_host,
                                                            later)] == [
        ("nginx", "resolved"), ("web1", "resolved")]
    # The old grouping's states, once resolved, stay as they are: nothing decides them again.
    again = decide(rule(threshold=20), {"": 2}, {**by_host, **removed_states(removed)}, later)
    assert [d.state.group for d in again] == [""]


def removed_states(decisions: dict[str, Decision]) -> dict[str, AlertState]:
    return {g: dataclasses.replace(d.state, notified_status=d.state.status)
            for g, d in decisions.items()}


def test_the_json_document_and_the_alertmanager_alert() -> None:
    r = rule(threshold=20, group_by="host", app="nginx", severity="err",
             notify=["http://hook.example/x"])
    firing = AlertState("r", "web1", "firing", T0, T0 + timedelta(minutes=1), 25,
                        [{"message": "upstream timed out"}], None, group_by="host")
    document = notification_json(r, firing, "http://logs.example:8514")
    assert document["window"] == 300 and document["count"] == 25
    assert document["since"] == "2026-12-02T05:56:00+00:00"
    assert document["until"] == "2026-12-02T06:01:00+00:00"
    assert document["link"] == search_link("http://logs.example:8514", r, firing)
    assert document["link"].startswith("http://logs.example:8514/?app=nginx&severity=err&"
                                       "host=web1&since=2026-12-02T05%3A56")
    (alert,) = alertmanager_json(r, firing, None)
    assert alert["labels"] == {"alertname": "r", "source": "pgsyslog", "host": "web1",
                               "severity": "err"}
    assert "endsAt" not in alert and "generatorURL" not in alert
    resolved = AlertState("r", "web1", "resolved", T0 + timedelta(minutes=6), T0, 0,
                          group_by="host")
    (alert,) = alertmanager_json(r, resolved, None)
    assert alert["endsAt"] == alert["startsAt"] == "2026-12-02T06:06:00+00:00"


# ------------------------------------------------------------------------------ database


def test_a_count_uses_the_indexes(dsn: str) -> None:
    """On a table big enough that the planner would rather not scan it, the count reads
    the (app_name, received_at) index; the plan is printed for the reader."""
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO syslog.messages (received_at, facility, severity, hostname, app_name,
                                         message, format, transport)
            SELECT now() - (i % 3600) * interval '1 second', 1, i % 8, 'web' || (i % 20),
                   'app' || (i % 50), 'message ' || i, 'rfc3164', 'tcp'
            FROM generate_series(1, 200000) AS i""")
        conn.execute("ANALYZE syslog.messages")
        r = rule(threshold=20, app="app7", severity="err", group_by="host")
        compiled = compile_query(count_statement(r, datetime.now(UTC)))
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + compiled.sql,
                                                        compiled.params))
    print(plan)
    assert "_app_name_received_at_idx" in plan
    assert "Seq Scan" not in plan
    assert plan.count("messages_p") == 2  # today's partition and its index, no other


def test_count_groups_in_one_statement(dsn: str) -> None:
    now = datetime.now(UTC)
    insert(dsn, [record("e", host="web1", severity=3) for _ in range(3)]
           + [record("e", host="web2", severity=3), record("ok", host="web2", severity=6),
              record("old", host="web3", severity=3, when=now - timedelta(minutes=6))])
    now = datetime.now(UTC)
    with database.connect(dsn) as conn:
        assert count(conn, rule(threshold=1, group_by="host", severity="err"), now) == {
            "web1": 3, "web2": 1}
        assert count(conn, rule(threshold=1, severity="err"), now) == {"": 4}


def test_words_are_matched_on_the_windows_rows_as_search_matches_them(dsn: str) -> None:
    insert(dsn, [record("upstream timed out", host="web1"), record("timed out", host="web2"),
                 record("timeout", host="web2"), record("out of time", host="web3"),
                 record("timed out", host="web4", app="haproxy")])
    now = datetime.now(UTC)
    with database.connect(dsn) as conn:
        assert count(conn, rule(threshold=1, query='"timed out"', app="nginx",
                                group_by="host"), now) == {"web1": 1, "web2": 1}
        assert count(conn, rule(threshold=1, query="timed -upstream"), now) == {"": 2}
        assert count(conn, rule(threshold=1, query="haproxy"), now) == {"": 1}  # app_name too


def test_a_round_writes_state_with_its_history_and_claims_each_notification_once(
        dsn: str) -> None:
    rules = parse_rules([{"name": "errors", "window": "5m", "threshold": 2,
                          "severity": "err", "notify": ["http://127.0.0.1:9/x"]}])
    insert(dsn, [record("e", severity=3) for _ in range(3)])
    first = evaluate_all(dsn, rules, 30.0)
    assert first.ran and first.evaluated == ["errors"]
    assert [(s.status, s.last_count) for s in first.owed] == [("firing", 3)]
    assert query(dsn, "SELECT status, count FROM syslog.alert_history") == [("firing", 3)]
    samples = query(dsn, "SELECT samples FROM syslog.alert_state")[0][0]
    assert len(samples) == 3 and samples[0]["message"] == "e"
    # Another round (another receiver) at once: the rule was just evaluated, the
    # notification is claimed; nothing is evaluated or owed twice.
    second = evaluate_all(dsn, rules, 30.0)
    assert second.evaluated == [] and second.owed == []
    later = evaluate_all(dsn, rules, 30.0, now=datetime.now(UTC) + timedelta(seconds=20))
    assert later.evaluated == ["errors"] and later.owed == [] and later.changes == []
    with database.connect(dsn, autocommit=True) as conn:
        store.mark_notified(conn, first.owed[0], datetime.now(UTC))
    assert query(dsn, "SELECT notified_status, claimed_until FROM syslog.alert_state") == [
        ("firing", None)]


def test_a_receiver_without_the_lock_skips_the_round(dsn: str) -> None:
    rules = parse_rules([{"name": "errors", "window": "5m", "threshold": 1}])
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ALERTS_LOCK,))
        result = evaluate_all(dsn, rules, 30.0)
    assert not result.ran and "another receiver" in result.summary()
    assert query(dsn, "SELECT count(*) FROM syslog.alert_state") == [(0,)]


def test_the_state_of_a_rule_no_longer_configured_is_left_alone(dsn: str) -> None:
    """A receiver still configured the old way keeps its alert: a rolling change of the
    configuration must not make it fire (and notify) again."""
    old = parse_rules([{"name": "old", "window": "5m", "below": 1}])
    evaluate_all(dsn, old, 30.0)
    evaluate_all(dsn, parse_rules([{"name": "new", "window": "5m", "below": 1}]), 30.0)
    assert query(dsn, "SELECT rule FROM syslog.alert_state ORDER BY rule") == [
        ("new",), ("old",)]
    evaluate_all(dsn, old, 30.0, now=datetime.now(UTC) + timedelta(seconds=20))
    assert query(dsn, "SELECT rule FROM syslog.alert_history ORDER BY id") == [
        ("old",), ("new",)]


def test_rows_outside_the_window_do_not_count(dsn: str) -> None:
    now = datetime.now(UTC)
    insert(dsn, [record("e", severity=3, when=now - timedelta(minutes=5, seconds=1)),
                 record("e", severity=3, when=now - timedelta(minutes=4))])
    with database.connect(dsn) as conn:
        assert count(conn, rule(threshold=1), now) == {"": 1}


def test_a_firing_alert_is_sent_to_alertmanager_again_each_minute_and_to_json_once(
        dsn: str) -> None:
    rules = parse_rules([
        {"name": "am", "window": "5m", "below": 1,
         "notify": ["http://hook.example/x", {"url": "http://am.example:9093",
                                              "format": "alertmanager"}]},
        {"name": "json only", "window": "5m", "below": 1, "notify": ["http://hook.example/"]}])
    first = evaluate_all(dsn, rules, 30.0)
    assert sorted(s.rule for s in first.owed) == ["am", "json only"]
    with database.connect(dsn, autocommit=True) as conn:
        for owed in first.owed:
            store.mark_notified(conn, owed, datetime.now(UTC))
        conn.execute("UPDATE syslog.alert_state SET notified_at = now() - interval '61 s'")
    (again,) = evaluate_all(dsn, rules, 30.0).owed
    assert (again.rule, again.status, again.owed) == ("am", "firing", False)
    assert [t.format for t in targets(rules[0], again)] == ["alertmanager"]
    assert [t.format for t in targets(rules[0], first.owed[0])] == ["json", "alertmanager"]


def test_a_round_summarizes_the_brin_ranges_of_new_pages(dsn: str) -> None:
    """Without it a window's rows sit in unsummarized BRIN ranges until a VACUUM, and a
    count reads every such page (bench/alerts.py)."""
    with database.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO syslog.messages (received_at, facility, severity, message, format,
                                         transport)
            SELECT now(), 1, 6, repeat('x', 200) || i, 'raw', 'tcp'
            FROM generate_series(1, 20000) AS i""")
        now = datetime.now(UTC)
        assert summarize_new_ranges(conn, now, 300.0) > 0
        assert summarize_new_ranges(conn, now, 300.0) == 0  # nothing new since


def test_the_alertmanager_severity_of_a_range_is_its_most_severe_end() -> None:
    """``err`` (err or worse) is labelled err; a range by the worst it matches, so that an
    Alertmanager route on severity="crit" sees an err..crit rule."""
    labels = {}
    for text in ("err", "..warning", "err..crit", "crit..err", "notice..", "emerg..err"):
        r = rule(threshold=1, severity=text)
        (alert,) = alertmanager_json(r, state("", "firing", None), None)
        labels[text] = alert["labels"]["severity"]
    assert labels == {"err": "err", "..warning": "warning", "err..crit": "crit",
                      "crit..err": "crit", "notice..": "notice", "emerg..err": "err"}


def test_an_error_text_repeats_a_url_by_its_origin_only() -> None:
    """aiohttp's error texts quote the URL, query and password included."""
    url = "http://user:PASSWORDX@hooks.example:8080/T0/B0/SECRETQ?token=SECRETQ"
    request = aiohttp.RequestInfo(URL(url), "POST", CIMultiDictProxy(CIMultiDict()), URL(url))
    for error in (aiohttp.InvalidURL(url),
                  aiohttp.TooManyRedirects(request, (), status=302, message="Found")):
        text = describe(error)
        assert "SECRETQ" not in text and "PASSWORDX" not in text, text
        assert "http://hooks.example:8080" in text


def test_a_change_claimed_but_never_marked_stays_owed_when_the_status_flips_back(
        dsn: str) -> None:
    """firing (told) -> resolved (claimed; its delivery is cut short by a stop, or by the
    database going away while it records an attempt) -> firing again: some target may
    have heard "resolved", so once the claim ends "firing" is owed to every target."""
    rules = parse_rules([{"name": "errors", "window": "5m", "threshold": 2, "severity": "err",
                          "notify": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]}])
    insert(dsn, [record("e", severity=3) for _ in range(3)])
    t1 = datetime.now(UTC)
    (fired,) = evaluate_all(dsn, rules, 30.0, now=t1).owed
    with database.connect(dsn, autocommit=True) as conn:
        store.mark_notified(conn, fired, t1)
    t2 = t1 + timedelta(minutes=10)  # the rows have left the window
    (resolved,) = evaluate_all(dsn, rules, 30.0, now=t2).owed
    assert resolved.status == "resolved"
    insert(dsn, [record("e", severity=3, when=t2 + timedelta(seconds=10)) for _ in range(3)])
    again = evaluate_all(dsn, rules, 30.0, now=t2 + timedelta(seconds=40))
    assert [s.status for s in again.changes] == ["firing"] and again.owed == []  # claimed
    after_claim = t2 + timedelta(seconds=CLAIM_SECONDS + 1)
    (owed,) = evaluate_all(dsn, rules, 30.0, now=after_claim).owed
    assert (owed.status, owed.owed) == ("firing", True)
    assert targets(rules[0], owed) == rules[0].notify
