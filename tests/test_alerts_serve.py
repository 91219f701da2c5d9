"""Alerts end to end: real `pgsyslog serve` subprocesses evaluate rules every second over
lines sent by TCP, and post to a real HTTP server run by the test (aiohttp, port 0)."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from helpers import ServerProcess, query, send_tcp, wait_for_rows
from stored import insert, record

INTERVAL = 1  # alert_interval in seconds
WAIT = 30.0  # seconds a test waits for a notification at most (a loaded machine)


@dataclass
class Hook:
    """An HTTP server that records every POST and answers with the statuses queued
    (200 once the queue is empty)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[str, Any]] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # seconds before each answer
    hang_on: set[tuple[str, str]] = field(default_factory=set)  # (path, status) not answered
    others: list[tuple[str, str]] = field(default_factory=list)  # requests other than POST

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            with self.lock:
                self.others.append((request.method, request.path))
            return web.Response(text="ok")
        body = await request.json()
        with self.lock:
            self.received.append((request.path, body))
            status = self.statuses.pop(0) if self.statuses else 200
        hangs = isinstance(body, dict) and (request.path, body.get("status")) in self.hang_on
        await asyncio.sleep(3600 if hangs else self.delay)
        # A 3xx sends the client elsewhere, where any method is answered 200.
        headers = {"Location": "/moved"} if 300 <= status < 400 else None
        return web.Response(status=status, text="ok", headers=headers)

    def bodies(self, path: str = "/hook") -> list[Any]:
        with self.lock:
            return [body for p, body in self.received if p == path]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def hook() -> Iterator[Hook]:
    hook = Hook()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hook.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        hook.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        started.set()

    def serve() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield hook
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def write_config(tmp_path: Path, rules: str) -> str:
    path = tmp_path / "alerts.toml"
    path.write_text(f'tcp = ["127.0.0.1:0"]\nalert_interval = {INTERVAL}\n{rules}')
    return str(path)


def web_errors_rule(url: str, window: str = "5s", group_by: bool = True) -> str:
    group = 'group_by = "host"\n' if group_by else ""
    return (f'[[alert]]\nname = "web errors"\napp = "nginx"\nseverity = "err"\n'
            f'window = "{window}"\nthreshold = 20\n{group}notify = ["{url}"]\n')


def nginx_errors(port: int, host: str, n: int = 25) -> None:
    lines = b"".join(f"<11>Dec  2 05:00:00 {host} nginx: upstream timed out {i}\n".encode()
                     for i in range(n))
    send_tcp(port, lines)


def http_get(server: ServerProcess, path: str) -> str:
    url = f"http://127.0.0.1:{server.port('http')}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def statuses(hook: Hook, group: str | None = None) -> list[str]:
    return [b["status"] for b in hook.bodies() if group is None or b["group"] == group]


def test_25_nginx_errors_fire_once_for_the_host_then_one_resolved(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    server = serve("--config", write_config(tmp_path, web_errors_rule(hook.url())))
    nginx_errors(server.port("tcp"), "web1")
    assert wait_for(lambda: statuses(hook) == ["firing"]), server.log
    firing = hook.bodies()[0]
    assert (firing["rule"], firing["group"], firing["group_by"]) == ("web errors", "web1", "host")
    assert firing["count"] == 25 and firing["threshold"] == 20 and firing["window"] == 5
    assert len(firing["samples"]) == 5
    assert all(s["hostname"] == "web1" and s["app_name"] == "nginx" for s in firing["samples"])
    assert "upstream timed out" in firing["samples"][0]["message"]
    assert "app=nginx" in firing["link"] and "host=web1" in firing["link"]
    # The window (5 s) passes with no errors: one resolved, and nothing more after it.
    assert wait_for(lambda: statuses(hook) == ["firing", "resolved"]), server.log
    time.sleep(3 * INTERVAL)
    assert statuses(hook) == ["firing", "resolved"]
    history = query(dsn, "SELECT group_key, status, count FROM syslog.alert_history ORDER BY id")
    assert history == [("web1", "firing", 25), ("web1", "resolved", 0)]


def test_with_group_by_two_hosts_give_two_alerts(
        serve: Callable[..., ServerProcess], hook: Hook, tmp_path: Path) -> None:
    server = serve("--config", write_config(tmp_path, web_errors_rule(hook.url())))
    nginx_errors(server.port("tcp"), "web1")
    nginx_errors(server.port("tcp"), "web2", 30)
    nginx_errors(server.port("tcp"), "web3", 5)  # under the threshold
    assert wait_for(lambda: sorted(b["group"] for b in hook.bodies()
                                   if b["status"] == "firing") == ["web1", "web2"]), server.log
    counts = {b["group"]: b["count"] for b in hook.bodies() if b["status"] == "firing"}
    assert counts == {"web1": 25, "web2": 30}
    api = json.loads(http_get(server, "/api/alerts"))
    assert [r["name"] for r in api["rules"]] == ["web errors"]
    assert api["rules"][0]["filters"] == {"app": ["nginx"], "severity": "err"}
    assert api["rules"][0]["notify"] == [{"url": f"http://127.0.0.1:{hook.port}",
                                          "format": "json"}]
    firing = {(a["group"], a["last_count"]) for a in api["alerts"] if a["status"] == "firing"}
    assert firing >= {("web1", 25), ("web2", 30)}
    metrics = http_get(server, "/metrics")
    assert 'pgsyslog_alert_firing{group="web1",rule="web errors"} 1.0' in metrics
    assert 'pgsyslog_alert_notification_attempts_total{outcome="delivered"}' in metrics
    time.sleep(2 * INTERVAL)
    assert "web3" not in {b["group"] for b in hook.bodies()}


def test_without_group_by_the_hosts_count_together(
        serve: Callable[..., ServerProcess], hook: Hook, tmp_path: Path) -> None:
    rules = web_errors_rule(hook.url(), group_by=False)
    server = serve("--config", write_config(tmp_path, rules))
    nginx_errors(server.port("tcp"), "web1", 12)
    nginx_errors(server.port("tcp"), "web2", 12)
    assert wait_for(lambda: statuses(hook) == ["firing"]), server.log
    assert hook.bodies()[0]["count"] == 24 and hook.bodies()[0]["group"] is None


def test_a_restart_while_firing_neither_fires_again_nor_forgets(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, web_errors_rule(hook.url(), window="20s"))
    first = serve("--config", config, "--data-dir", str(tmp_path / "data"))
    nginx_errors(first.port("tcp"), "web1")
    assert wait_for(lambda: statuses(hook) == ["firing"]), first.log
    # The restart comes after the delivery was recorded: a stop between the answer and the
    # record leaves the notification claimed for CLAIM_SECONDS, longer than the waits here
    # (that case is test_a_stop_during_a_resolved_delivery_leaves_firing_owed_to_every_target).
    assert wait_for(lambda: query(dsn, "SELECT notified_status FROM syslog.alert_state")
                    == [("firing",)]), first.log
    assert first.stop(signal.SIGTERM) == 0
    second = serve("--config", config, "--data-dir", str(tmp_path / "data"))
    # Still firing (the 25 rows are inside the window): evaluated, not notified again.
    assert wait_for(lambda: query(dsn, "SELECT count(*) FROM syslog.alert_state WHERE "
                                       "evaluated_at > now() - interval '2 seconds'")[0][0] == 1)
    assert statuses(hook) == ["firing"]
    assert wait_for(lambda: statuses(hook) == ["firing", "resolved"], 40), second.log
    time.sleep(2 * INTERVAL)
    assert statuses(hook) == ["firing", "resolved"]


def test_a_silent_sender_fires_and_resolves_when_it_sends_again(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    insert(dsn, [record("fw1 is alive", host="fw1", app="filterlog")])  # fw1 was sending
    rules = (f'[[alert]]\nname = "firewall silent"\nhost = "fw1"\nwindow = "8s"\nbelow = 1\n'
             f'notify = ["{hook.url()}"]\n')
    server = serve("--config", write_config(tmp_path, rules))
    assert wait_for(lambda: statuses(hook) == ["firing"]), server.log
    silent = hook.bodies()[0]
    assert (silent["rule"], silent["count"], silent["below"]) == ("firewall silent", 0, 1)
    send_tcp(server.port("tcp"), b"<134>Dec  2 05:00:00 fw1 filterlog: pass in on em0\n")
    assert wait_for(lambda: statuses(hook) == ["firing", "resolved"]), server.log
    assert hook.bodies()[1]["count"] == 1


def test_a_target_answering_500_is_retried_and_every_attempt_is_recorded(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    hook.statuses = [500, 500]
    server = serve("--config", write_config(tmp_path, web_errors_rule(hook.url())))
    nginx_errors(server.port("tcp"), "web1")
    attempts_sql = ("SELECT status, attempt, http_status, error FROM syslog.alert_notifications "
                    "ORDER BY id")
    assert wait_for(lambda: len(query(dsn, attempts_sql)) >= 3), server.log
    attempts = query(dsn, attempts_sql)[:3]
    assert [(s, a, h) for s, a, h, _ in attempts] == [("firing", 1, 500), ("firing", 2, 500),
                                                      ("firing", 3, 200)]
    assert "500" in attempts[0][3] and attempts[2][3] is None
    # Three POSTs of the same firing alert, then nothing more for it.
    assert [b["status"] for b in hook.bodies()][:3] == ["firing"] * 3
    notified = query(dsn, "SELECT notified_status FROM syslog.alert_state")
    assert notified == [("firing",)] or notified == [("resolved",)]


def test_a_target_that_hangs_does_not_hold_up_ingestion(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    hook.delay = 60.0  # past the attempt's timeout (10 s)
    server = serve("--config", write_config(tmp_path, web_errors_rule(hook.url())))
    nginx_errors(server.port("tcp"), "web1")
    assert wait_for(lambda: len(hook.bodies()) == 1), server.log
    # While the notification waits for its answer, messages are received and stored.
    for i in range(5):
        send_tcp(server.port("tcp"), f"<14>Dec  2 05:00:00 web2 app: still here {i}\n".encode())
    assert wait_for_rows(dsn, 30, timeout=10) == 30
    assert query(dsn, "SELECT notified_status FROM syslog.alert_state") == [(None,)]


def test_alertmanager_targets_get_the_v2_alerts_format(
        serve: Callable[..., ServerProcess], hook: Hook, tmp_path: Path) -> None:
    target = f'{{url = "http://127.0.0.1:{hook.port}", format = "alertmanager"}}'
    rules = web_errors_rule(hook.url()).replace(f'["{hook.url()}"]', f"[{target}]")
    server = serve("--config", write_config(tmp_path, rules))
    nginx_errors(server.port("tcp"), "web1")
    path = "/api/v2/alerts"
    assert wait_for(lambda: len(hook.bodies(path)) == 2), server.log
    firing, resolved = (body[0] for body in hook.bodies(path))
    assert firing["labels"] == {"alertname": "web errors", "host": "web1", "severity": "err",
                                "source": "pgsyslog"}
    assert "endsAt" not in firing and firing["startsAt"]
    assert resolved["labels"] == firing["labels"]
    assert resolved["endsAt"] >= resolved["startsAt"] >= firing["startsAt"]
    assert all(isinstance(v, str) for v in firing["annotations"].values())
    assert "upstream timed out" in firing["annotations"]["sample"]


def test_two_receivers_on_one_database_send_each_notification_once(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, web_errors_rule(hook.url()))
    first = serve("--config", config)
    second = serve("--config", config)
    nginx_errors(first.port("tcp"), "web1", 15)
    nginx_errors(second.port("tcp"), "web1", 15)
    assert wait_for_rows(dsn, 30) == 30
    assert wait_for(lambda: statuses(hook) == ["firing", "resolved"]), first.log + second.log
    time.sleep(3 * INTERVAL)
    assert statuses(hook) == ["firing", "resolved"]
    assert json.dumps(hook.bodies()[0]["count"]) == "30"
    assert query(dsn, "SELECT count(*) FROM syslog.alert_notifications")[0][0] == 2


ATTEMPTS_SQL = ("SELECT target, attempt, http_status, error FROM syslog.alert_notifications "
                "ORDER BY id")


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    """Following a 302 would turn the POST into a GET without the notification."""
    hook.statuses = [302]
    server = serve("--config", write_config(tmp_path, web_errors_rule(hook.url())))
    nginx_errors(server.port("tcp"), "web1")
    assert wait_for(lambda: len(query(dsn, ATTEMPTS_SQL)) >= 2), server.log
    (_, n1, status1, error1), (_, n2, status2, error2) = query(dsn, ATTEMPTS_SQL)[:2]
    assert (n1, status1, n2, status2, error2) == (1, 302, 2, 200, None)
    assert error1 is not None and "302" in error1
    assert hook.others == []  # no GET to where the 302 pointed
    assert statuses(hook) == ["firing", "firing"]


def test_the_secret_of_a_notify_url_reaches_neither_the_log_nor_the_database(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    hook.statuses = [500] * 5  # every attempt fails: the give-up line names the target
    url = f"http://user:PASSWORDX@127.0.0.1:{hook.port}/hook?token=SECRETQ"
    server = serve("--config", write_config(tmp_path, web_errors_rule(url)))
    nginx_errors(server.port("tcp"), "web1")
    assert wait_for(lambda: "gave up notifying" in server.log, 60), server.log
    assert len(hook.bodies()) >= 5  # the URL with its secret is still where it posts
    assert "SECRETQ" not in server.log and "PASSWORDX" not in server.log, server.log
    assert f"gave up notifying http://127.0.0.1:{hook.port} after 5 attempts" in server.log
    stored = query(dsn, ATTEMPTS_SQL)
    assert {target for target, *_ in stored} == {f"http://127.0.0.1:{hook.port}"}
    assert not any("SECRETQ" in (error or "") for *_, error in stored)


def two_targets_rule(hook: Hook, window: str) -> str:
    return (f'[[alert]]\nname = "web errors"\napp = "nginx"\nwindow = "{window}"\n'
            f'threshold = 1\nnotify = ["{hook.url()}", "{hook.url("/hangs")}"]\n')


def test_a_stop_during_a_resolved_delivery_leaves_firing_owed_to_every_target(
        serve: Callable[..., ServerProcess], hook: Hook, dsn: str, tmp_path: Path) -> None:
    """Fire (both targets told), resolve (/hook told, /hangs never answers it), fire again
    while that delivery holds the alert, stop: the next receiver tells both "firing"."""
    hook.hang_on = {("/hangs", "resolved")}
    data = ["--data-dir", str(tmp_path / "data")]
    first = serve("--config", write_config(tmp_path, two_targets_rule(hook, "4s")), *data)
    nginx_errors(first.port("tcp"), "web1", 1)
    assert wait_for(lambda: statuses(hook) == ["firing", "resolved"]), first.log
    assert wait_for(lambda: [b["status"] for b in hook.bodies("/hangs")][:2] == [
        "firing", "resolved"]), first.log
    nginx_errors(first.port("tcp"), "web1", 1)
    assert wait_for(lambda: query(dsn, "SELECT status FROM syslog.alert_state") == [
        ("firing",)]), first.log
    assert first.stop(signal.SIGTERM) == 0
    assert statuses(hook) == ["firing", "resolved"]
    # The stopped delivery's claim ends, as it does two minutes later.
    query(dsn, "UPDATE syslog.alert_state SET claimed_until = now() - interval '1 second' "
               "RETURNING rule")
    config = tmp_path / "longer"
    config.mkdir()
    second = serve("--config", write_config(config, two_targets_rule(hook, "60s")), *data)
    assert wait_for(lambda: statuses(hook) == ["firing", "resolved", "firing"]), second.log
    assert wait_for(lambda: hook.bodies("/hangs")[-1]["status"] == "firing"), second.log


def test_adding_group_by_to_a_firing_rule_resolves_its_one_alert(
        serve: Callable[..., ServerProcess], hook: Hook, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    ungrouped = web_errors_rule(hook.url(), window="60s", group_by=False)
    first = serve("--config", write_config(tmp_path, ungrouped), *data)
    nginx_errors(first.port("tcp"), "web1")
    assert wait_for(lambda: statuses(hook) == ["firing"]), first.log
    assert first.stop(signal.SIGTERM) == 0
    config = tmp_path / "grouped"
    config.mkdir()
    grouped = web_errors_rule(hook.url(), window="60s", group_by=True)
    second = serve("--config", write_config(config, grouped), *data)
    expected = [(None, "firing"), (None, "resolved"), ("web1", "firing")]
    assert wait_for(lambda: sorted(((b["group"], b["status"]) for b in hook.bodies()),
                                   key=str) == sorted(expected, key=str)), second.log
    resolved = next(b for b in hook.bodies() if b["status"] == "resolved")
    assert (resolved["group_by"], resolved["count"]) == (None, 0)
    metrics = http_get(second, "/metrics")
    assert 'pgsyslog_alert_firing{group="",rule="web errors"} 0.0' in metrics
    assert 'pgsyslog_alert_firing{group="web1",rule="web errors"} 1.0' in metrics
