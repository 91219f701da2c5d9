"""The console in a real headless Chromium against a real `pgsyslog serve` and database.

Each test saves a screenshot of each step under its tmp_path/screens and checks that the
page asked nothing of any host but the server's own, and raised no script error.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from browser import PHONE, Console, browser_missing, launched, open_console
from helpers import ServerProcess, free_port, query, wait_for_rows
from http_client import EventStream, get
from pki import Pki
from stored import insert, record

pytestmark = pytest.mark.timeout(240)
TOKEN = "browser-Token-3"
HOSTS = ("web1", "web2", "db1")
APPS = ("nginx", "postgres", "cron")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    with launched() as browser:
        yield browser


def fill(dsn: str, now: datetime, count: int = 150) -> None:
    """``count`` rows over the last 150 minutes, a minute apart, newest last."""
    records = []
    for i in range(count):
        when = now - timedelta(minutes=count - i)
        word = "disk full" if i % 10 == 0 else "request served"
        records.append(record(f"{word} number {i}", host=HOSTS[i % 3], app=APPS[i % 3],
                              severity=(3 if i % 10 == 0 else 6), when=when))
    records.append(record("order placed", host="web1", app="shop", severity=4,
                          when=now - timedelta(seconds=30), procid="4242", msgid="ORD",
                          structured_data={"order@32473": {"id": "17", "cur": ["EUR", "CHF"]}}))
    records.append(record("garbled", host="web2", app=None, severity=5, fmt="raw",
                          when=now - timedelta(seconds=20), parse_error="no PRI",
                          raw=b"garbled \x00\xff tail\n"))
    stored_now(dsn, records)


def stored_now(dsn: str, records: list[Any]) -> None:
    """insert() runs its own event loop; Playwright's holds this thread's."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(insert, dsn, records).result(60)


def newest_ids(dsn: str, where: str = "true", params: Any = None, limit: int = 100) -> list[int]:
    rows = query(dsn, f"SELECT id FROM syslog.messages WHERE {where} "
                      f"ORDER BY received_at DESC, id DESC LIMIT {limit}", params)
    return [r[0] for r in rows]


def wait_rows(console: Console, expected: list[int]) -> None:
    """Until the table shows exactly ``expected`` (ids, top to bottom)."""
    console.page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('#results tbody tr')]"
        ".map(r => Number(r.dataset.rowId))) === JSON.stringify(ids)", arg=expected)


def clean(console: Console) -> None:
    assert console.foreign_requests() == []
    assert console.errors == []
    assert any("/api/search" in url for url in console.requests)


@pytest.fixture
def server(serve: Callable[..., ServerProcess]) -> ServerProcess:
    return serve("--tcp", "127.0.0.1:0")


def test_search_details_and_context(chromium: Any, server: ServerProcess, dsn: str,
                                    tmp_path: Path) -> None:
    now = datetime.now(UTC)
    fill(dsn, now)
    with open_console(chromium, server.port("http"), tmp_path / "screens") as console:
        console.open("/")
        wait_rows(console, newest_ids(dsn))
        console.page.wait_for_selector("#histogram rect.bar:not([data-count='0'])")
        console.screenshot("loaded")
        assert console.page.evaluate("() => document.documentElement.scrollWidth") <= 1280
        assert console.page.locator("#results th.time").inner_text() == "Time (UTC)"
        console.page.click("#more")
        wait_rows(console, newest_ids(dsn, limit=200))
        assert console.page.locator("#more").is_hidden()
        console.page.evaluate("() => window.scrollTo(0, 0)")

        console.page.keyboard.press("/")
        assert console.page.evaluate("document.activeElement.name") == "q"
        console.page.keyboard.type("disk")
        console.page.keyboard.press("Enter")
        wait_rows(console, newest_ids(dsn, "message LIKE %s", ("%disk%",)))
        assert console.query()["q"] == ["disk"]
        console.screenshot("searched")

        order = newest_ids(dsn, "message = 'order placed'")[0]
        console.page.fill("input[name=q]", "")
        console.page.keyboard.press("Enter")
        console.page.click(f"tr[data-row-id='{order}']")
        details = console.page.locator("#details")
        assert details.locator("[data-field=procid] td").inner_text() == "4242"
        assert details.locator("[data-field=hostname] td").inner_text() == "web1"
        sd = details.locator("#details-sd tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert sd == [["order@32473", "id", "17"], ["order@32473", "cur", "EUR"],
                      ["order@32473", "cur", "CHF"]]
        details.locator("[data-action=context]").click()
        context = details.locator("#details-context tr")
        context.first.wait_for()
        shown = [int(i) for i in context.evaluate_all(
            "rows => rows.map(r => r.dataset.contextId)")]
        web1 = [r[0] for r in query(dsn, "SELECT id FROM syslog.messages WHERE hostname = "
                                         "'web1' ORDER BY received_at, id")]
        at = web1.index(order)
        assert shown == web1[max(0, at - 20): at + 21]
        console.screenshot("details")
        console.page.keyboard.press("Escape")

        garbled = newest_ids(dsn, "message = 'garbled'")[0]
        console.page.click(f"tr[data-row-id='{garbled}']")
        assert details.locator("#details-raw pre").inner_text() == "garbled \\x00\ufffd tail\n"
        assert details.locator("[data-field=parse_error] td").inner_text() == "no PRI"
        console.screenshot("raw")
        clean(console)


def test_facets_histogram_zoom_and_a_shared_url(chromium: Any, server: ServerProcess, dsn: str,
                                                tmp_path: Path) -> None:
    now = datetime.now(UTC)
    fill(dsn, now)
    port = server.port("http")
    with open_console(chromium, port, tmp_path / "screens") as console:
        console.open("/?since=3h")
        wait_rows(console, newest_ids(dsn))
        console.page.click("[data-facet=host] button[data-facet-value=web2]")
        wait_rows(console, newest_ids(dsn, "hostname = 'web2'"))
        assert console.query()["host"] == ["web2"]
        assert console.page.input_value("input[name=host]") == "web2"
        console.screenshot("facet-host")
        console.page.click("[data-facet=severity] button[data-facet-value=err]")
        wait_rows(console, newest_ids(dsn, "hostname = 'web2' AND severity = 3"))
        assert console.query()["severity"] == ["err..err"]
        assert console.page.locator("select[name=severity] option:checked").inner_text() == \
            "only err"
        console.page.select_option("select[name=severity]", "")
        wait_rows(console, newest_ids(dsn, "hostname = 'web2'"))

        chart = console.page.locator("#histogram").bounding_box()
        assert chart is not None
        y = chart["y"] + chart["height"] / 2
        console.page.mouse.move(chart["x"] + chart["width"] * 0.40, y)
        console.page.mouse.down()
        console.page.mouse.move(chart["x"] + chart["width"] * 0.60, y, steps=5)
        console.screenshot("dragging")
        console.page.mouse.up()
        console.page.wait_for_function("() => new URL(location).searchParams.has('until')")
        zoomed = console.query()
        since, until = (datetime.fromisoformat(zoomed[k][0]) for k in ("since", "until"))
        assert now - timedelta(hours=3) < since < until < now
        expected = newest_ids(dsn, "hostname = 'web2' AND received_at >= %s AND "
                                   "received_at < %s", (since, until))
        assert 0 < len(expected) < len(newest_ids(dsn, "hostname = 'web2'"))
        wait_rows(console, expected)
        assert console.page.input_value("select[name=range]") == "custom"
        console.page.wait_for_selector("#histogram rect.bar:not([data-count='0'])")
        console.screenshot("zoomed")
        shared = console.page.url
        console.page.click("[data-action=live]")  # live follows now: the zoom gives way
        console.page.wait_for_selector("#live-status[data-status=live]")
        assert console.query() == {"host": ["web2"], "since": ["1h"], "live": ["1"]}
        assert console.page.input_value("select[name=range]") == "1h"
        clean(console)

    with open_console(chromium, port, tmp_path / "screens-shared") as console:
        console.open(shared.removeprefix(console.base) + "&q=disk&severity=err")
        expected = newest_ids(dsn, "hostname = 'web2' AND received_at >= %s AND received_at < %s "
                                   "AND message LIKE '%%disk%%' AND severity <= 3",
                              (since, until))
        wait_rows(console, expected)
        assert console.page.input_value("input[name=q]") == "disk"
        assert console.page.input_value("select[name=severity]") == "err"
        assert console.page.input_value("input[name=host]") == "web2"
        console.screenshot("shared-url")
        console.open("/?source=not-an-address")
        error = console.page.locator("#error")
        error.wait_for()
        assert "source" in error.inner_text() and "\n" not in error.inner_text()
        console.screenshot("bad-filter")
        console.open("/?since=24h")
        console.page.select_option("select[name=range]", "custom")
        start, end = now - timedelta(minutes=50), now - timedelta(minutes=20)
        console.page.fill("input[name=since]", start.strftime("%Y-%m-%dT%H:%M:%S"))
        console.page.fill("input[name=until]", end.strftime("%Y-%m-%dT%H:%M:%S"))
        start, end = (t.replace(microsecond=0) for t in (start, end))
        wait_rows(console, newest_ids(dsn, "received_at >= %s AND received_at < %s",
                                      (start, end)))
        assert console.query()["since"] == [start.strftime("%Y-%m-%dT%H:%M:%S.000Z")]
        console.screenshot("custom-range")
        console.open("/?q=nothing-matches-this&since=1h")
        empty = console.page.locator("#empty")
        empty.wait_for()
        assert empty.inner_text().startswith("No entries match “nothing-matches-this”")
        console.screenshot("empty")
        clean(console)


COMMAS = "host,with,commas"


def test_a_host_with_commas_stays_one_value(chromium: Any, server: ServerProcess, dsn: str,
                                            tmp_path: Path) -> None:
    now = datetime.now(UTC)
    stored_now(dsn, [record(f"from {host} {i}", host=host, severity=3 + i % 2,
                            when=now - timedelta(minutes=30 - i))
                     for i, host in enumerate([COMMAS, "host", "with", "commas", "web1"] * 3)])
    with open_console(chromium, server.port("http"), tmp_path / "screens") as console:
        console.open("/?since=1h")
        wait_rows(console, newest_ids(dsn))
        console.page.click(f'[data-facet=host] button[data-facet-value="{COMMAS}"]')
        wait_rows(console, newest_ids(dsn, "hostname = %s", (COMMAS,)))
        assert console.page.input_value("input[name=host]") == f'"{COMMAS}"'
        assert console.query()["host"] == [COMMAS]
        console.screenshot("facet-with-commas")
        console.page.select_option("select[name=severity]", "err")  # the form is read again
        wait_rows(console, newest_ids(dsn, "hostname = %s AND severity <= 3", (COMMAS,)))
        assert console.query()["host"] == [COMMAS]
        console.page.fill("input[name=host]", f'web1, "{COMMAS}"')
        console.page.press("input[name=host]", "Enter")
        wait_rows(console, newest_ids(dsn, "hostname IN ('web1', %s) AND severity <= 3",
                                      (COMMAS,)))
        assert console.query()["host"] == ["web1", COMMAS]
        console.screenshot("typed-with-commas")
        clean(console)


def logger(port: int, message: str) -> None:
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(port), "-T", "-t", "live",
                    message], check=True, timeout=10)


def rows_with(console: Console, text: str) -> int:
    return int(console.page.locator("#results tbody tr td.msg", has_text=text).count())


def test_live_mode_shows_new_rows_pauses_and_resumes_once_each(
        chromium: Any, serve: Callable[..., ServerProcess], dsn: str, tmp_path: Path) -> None:
    fill(dsn, datetime.now(UTC))
    first = serve("--tcp", "127.0.0.1:0")
    http = first.port("http")
    with open_console(chromium, http, tmp_path / "screens") as console:
        console.open("/?since=1h")
        console.page.locator("#results tbody tr").first.wait_for()
        console.page.click("[data-action=live]")
        console.page.wait_for_selector("#live-status[data-status=live]")
        assert console.query()["live"] == ["1"]
        logger(first.port("tcp"), "live-one arrived")
        console.page.locator("#results tbody tr:first-child td.msg",
                             has_text="live-one arrived").wait_for()
        console.screenshot("live-row")

        console.page.mouse.wheel(0, 2000)
        console.page.wait_for_function("() => window.scrollY > 500")
        logger(first.port("tcp"), "live-two while away")
        console.page.locator("#new-rows", has_text="1 new row —").wait_for()
        assert rows_with(console, "live-two while away") == 0
        console.screenshot("paused")
        console.page.evaluate("window.scrollTo(0, 0)")
        console.page.locator("#results tbody tr:first-child td.msg",
                             has_text="live-two while away").wait_for()
        assert console.page.locator("#new-rows").is_hidden()

        # The server goes away; rows stored meanwhile come after the reconnect, once.
        first.stop()
        console.page.wait_for_selector("#live-status[data-status=reconnecting]")
        stored_now(dsn, [record(f"while-down {i}", host="web9") for i in range(3)])
        second = serve("--tcp", "127.0.0.1:0", "--http", f"127.0.0.1:{http}")
        for i in range(3):
            console.page.locator("#results tbody td.msg", has_text=f"while-down {i}").wait_for(
                timeout=30_000)
        logger(second.port("tcp"), "live-three after the restart")
        console.page.locator("#results tbody tr:first-child td.msg",
                             has_text="live-three after the restart").wait_for()
        console.screenshot("resumed")
        for text in ("live-one", "live-two", "while-down 0", "while-down 1", "while-down 2",
                     "live-three"):
            assert rows_with(console, text) == 1, text
        ids = console.row_ids()
        assert len(ids) == len(set(ids))
        assert wait_for_rows(dsn, 1, where="message = 'live-three after the restart'") == 1
        assert console.foreign_requests() == []
        assert console.errors == []


def test_live_mode_cut_before_any_row_misses_none(
        chromium: Any, serve: Callable[..., ServerProcess], dsn: str, tmp_path: Path) -> None:
    fill(dsn, datetime.now(UTC), count=20)
    first = serve("--tcp", "127.0.0.1:0")
    http = first.port("http")
    with open_console(chromium, http, tmp_path / "screens") as console:
        console.open("/?host=web9&since=1h&live=1")
        console.page.wait_for_selector("#live-status[data-status=live]")  # its position came
        assert console.row_ids() == []
        console.screenshot("live-before-any-row")

        # Cut before any row came; while it is down, more matching rows than the first
        # connection's backlog (100) are stored, among others.
        first.stop()
        console.page.wait_for_selector("#live-status[data-status=reconnecting]")
        stored_now(dsn, [record(f"while-down {i}", host="web9" if i % 4 else "web1")
                         for i in range(160)])
        serve("--tcp", "127.0.0.1:0", "--http", f"127.0.0.1:{http}")
        console.page.locator("#results tbody td.msg", has_text="while-down 1").first.wait_for(
            timeout=30_000)
        wait_rows(console, newest_ids(dsn, "hostname = 'web9'", limit=1000))
        assert console.page.locator("#results tbody tr").count() == 120
        console.screenshot("every-row-once")
        assert console.foreign_requests() == []
        assert console.errors == []


def test_login_with_a_token(chromium: Any, serve: Callable[..., ServerProcess], dsn: str,
                            tmp_path: Path) -> None:
    fill(dsn, datetime.now(UTC), count=20)
    server = serve("--tcp", "127.0.0.1:0", "--http-token", TOKEN)
    with open_console(chromium, server.port("http"), tmp_path / "screens") as console:
        console.open("/?q=disk&since=3h")
        console.page.wait_for_selector("input[name=token]")
        assert console.page.url.startswith(f"{console.base}/login?next=")
        console.page.fill("input[name=token]", "not-the-token")
        console.page.keyboard.press("Enter")
        console.page.locator("#login-error", has_text="Wrong token.").wait_for()
        console.screenshot("wrong-token")
        console.page.fill("input[name=token]", TOKEN)
        console.page.keyboard.press("Enter")
        console.page.wait_for_url(f"{console.base}/?q=disk&since=3h")
        wait_rows(console, newest_ids(dsn, "message LIKE %s", ("%disk%",)))
        console.screenshot("logged-in")
        cookies = console.page.context.cookies()
        assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
            ("pgsyslog_session", True, "Strict")]
        console.page.click("[data-action=live]")
        console.page.wait_for_selector("#live-status[data-status=live]")
        logger(server.port("tcp"), "disk seen through the session")
        console.page.locator("#results tbody td.msg",
                             has_text="disk seen through the session").wait_for()
        console.open("/status")
        console.page.locator("#partitions tbody tr").first.wait_for()
        console.screenshot("status-logged-in")
        console.open("/")
        console.page.click("[data-action=logout]")
        console.page.wait_for_url(f"{console.base}/login")
        console.open("/status")
        console.page.wait_for_selector("input[name=token]")
        assert console.page.context.cookies() == []
        console.open("/login?next=//127.0.0.2:1/elsewhere")  # not followed off this server
        console.page.fill("input[name=token]", TOKEN)
        console.page.keyboard.press("Enter")
        console.page.wait_for_url(f"{console.base}/")
        assert console.foreign_requests() == []
        assert console.errors == []


def test_a_login_and_live_mode_survive_a_restart(chromium: Any,
                                                serve: Callable[..., ServerProcess],
                                                tmp_path: Path) -> None:
    args = ("--tcp", "127.0.0.1:0", "--http", f"127.0.0.1:{free_port()}", "--http-token",
            TOKEN)
    server = serve(*args)
    with open_console(chromium, server.port("http"), tmp_path / "screens") as console:
        console.open("/?q=restart&live=1")
        console.page.wait_for_selector("input[name=token]")
        console.page.fill("input[name=token]", TOKEN)
        console.page.keyboard.press("Enter")
        console.page.wait_for_selector("#live-status[data-status=live]")
        server.stop()
        server = serve(*args)  # the same HTTP address, a new process: no session in memory
        logger(server.port("tcp"), "restart survived")
        console.page.locator("#results tbody td.msg", has_text="restart survived").wait_for()
        assert console.page.url == f"{console.base}/?q=restart&live=1"  # not sent to /login
        console.screenshot("live-after-restart")
        assert console.foreign_requests() == []


def test_a_phone_in_dark_mode_and_a_hostile_message(chromium: Any, server: ServerProcess,
                                                    dsn: str, tmp_path: Path) -> None:
    fill(dsn, datetime.now(UTC), count=30)
    hostile = '<img src="/xss-probe" onerror="window.pwned=1"><script>window.pwned=2</script>'
    stored_now(dsn, [record(hostile, host="<b>evil</b>", app="x")])
    with open_console(chromium, server.port("http"), tmp_path / "screens", viewport=PHONE,
                      color_scheme="dark") as console:
        console.open("/?since=1h")
        wait_rows(console, newest_ids(dsn, "received_at > now() - interval '1 hour'"))
        assert console.page.locator("#results tbody tr").first.locator("td.msg").inner_text() \
            == hostile
        assert console.page.evaluate("() => window.pwned") is None
        assert console.page.evaluate("() => document.documentElement.scrollWidth") <= 390
        background = console.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(18, 22, 29)"
        console.screenshot("phone-dark")
        console.page.locator("#results tbody tr").nth(1).click()
        panel = console.page.locator("#details").bounding_box()
        assert panel is not None and panel["width"] == 390
        console.screenshot("phone-details")
        assert not [url for url in console.requests if "xss-probe" in url]
        clean(console)
    with open_console(chromium, server.port("http"), tmp_path / "screens-light") as console:
        console.open("/")
        console.page.locator("#results tbody tr").first.wait_for()
        background = console.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(247, 248, 250)"
        clean(console)


def test_the_status_page(chromium: Any, server: ServerProcess, dsn: str, tmp_path: Path) -> None:
    fill(dsn, datetime.now(UTC))
    port = server.port("http")
    with open_console(chromium, port, tmp_path / "screens") as console:
        console.open("/status")
        console.page.locator("#partitions tbody tr").first.wait_for()
        names = [r[0] for r in query(dsn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
                                          "ON c.oid = i.inhrelid WHERE i.inhparent = "
                                          "'syslog.messages'::regclass ORDER BY 1")]
        shown = console.page.locator("#partitions tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.partition)")
        assert sorted(shown) == names
        listed = get(port, "/api/partitions").body
        expires = console.page.locator("#partitions tbody tr td:nth-child(5)").all_inner_texts()
        assert expires == [p["expires"] or ("never" if listed["retention_days"] == 0 else "—")
                           for p in listed["partitions"]]
        assert console.page.locator("#health [data-key=status]").inner_text() == "ok"
        stats = get(port, "/api/stats").body
        total = sum(b["count"] for b in stats["ingest_per_minute"])
        assert total > 0
        bars = console.page.locator("#ingest-chart rect.bar").evaluate_all(
            "bars => bars.map(b => Number(b.dataset.count))")
        assert sum(bars) == total
        assert console.page.locator("#top [data-key=rows]").inner_text() == str(
            query(dsn, "SELECT count(*) FROM syslog.messages")[0][0])
        hosts = console.page.locator("#top .top").first.locator("td").all_inner_texts()
        assert hosts == ["err", "15", "warning", "1", "notice", "1", "info", "135"]
        days = stats["retention_days"]
        assert console.page.locator("#store [data-key=retention]").inner_text() == (
            "—" if days is None else f"{days} days" if days else "kept forever")
        alerts = get(port, "/api/alerts")
        if alerts.status == 200:
            console.page.locator("#alerts").wait_for()
            assert console.page.locator("#alerts .rules tbody tr").count() == len(
                alerts.body["rules"])
        else:
            assert console.page.locator("#alerts").is_hidden()
        console.screenshot("status", full_page=True)
        assert console.foreign_requests() == []
        assert console.errors == []


def test_live_mode_waits_out_a_server_that_refuses_it_for_now(
        chromium: Any, server: ServerProcess, dsn: str, tmp_path: Path) -> None:
    fill(dsn, datetime.now(UTC), count=5)
    port = server.port("http")
    streams = []
    try:
        while True:  # every live tail slot taken: the next tail gets a 503
            stream = EventStream(port, "/api/tail")
            if stream.status == 503:
                stream.close()
                break
            stream.wait_open()
            streams.append(stream)
            assert len(streams) <= 64
        with open_console(chromium, port, tmp_path / "screens") as console:
            console.open("/?live=1")
            console.page.wait_for_selector("#live-status[data-status=reconnecting]")
            console.screenshot("refused-for-now")
            for stream in streams:
                stream.close()
            streams = []
            console.page.wait_for_selector("#live-status[data-status=live]", timeout=30_000)
            logger(server.port("tcp"), "after the slots freed up")
            console.page.locator("#results tbody tr:first-child td.msg",
                                 has_text="after the slots freed up").wait_for()
            console.screenshot("live-again")
            assert console.foreign_requests() == []
            assert console.errors == []
    finally:
        for stream in streams:
            stream.close()


def test_ordered_by_the_time_messages_state(chromium: Any, server: ServerProcess, dsn: str,
                                            tmp_path: Path) -> None:
    now = datetime.now(UTC)
    # received in one order, stating times in the opposite one; one states none
    stored_now(dsn, [record(f"stated {i}", when=now - timedelta(minutes=10 - i),
                            event_time=now - timedelta(minutes=30 + i)) for i in range(5)]
               + [record("states no time", when=now - timedelta(minutes=1))])
    with open_console(chromium, server.port("http"), tmp_path / "screens") as console:
        console.open("/?since=1h")
        wait_rows(console, newest_ids(dsn))
        console.page.locator("summary", has_text="More filters").click()
        console.page.select_option("select[name=time]", "event")
        expected = [r[0] for r in query(dsn, "SELECT id FROM syslog.messages WHERE event_time "
                                             "IS NOT NULL ORDER BY event_time DESC, id DESC")]
        assert expected == newest_ids(dsn, "event_time IS NOT NULL")[::-1]
        wait_rows(console, expected)
        assert console.query()["time"] == ["event"]
        console.screenshot("event-time")
        console.open("/?since=1h&time=event")
        wait_rows(console, expected)
        assert console.page.input_value("select[name=time]") == "event"
        assert console.page.locator("details.more").get_attribute("open") is not None
        clean(console)


ALERT_RULES = """
alert_interval = 1

[[alert]]
name = "disk trouble"
query = "disk"
window = "10m"
threshold = 2
group_by = "host"

[[alert]]
name = "firewall silent"
host = "fw1"
window = "5m"
below = 1
"""


def test_the_status_page_shows_rules_and_firing_alerts(
        chromium: Any, serve: Callable[..., ServerProcess], dsn: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    stored_now(dsn, [record(f"disk full {i}", host="db1", when=now - timedelta(minutes=1))
                     for i in range(3)])
    config = tmp_path / "alerts.toml"
    config.write_text(ALERT_RULES)
    server = serve("--tcp", "127.0.0.1:0", "--config", str(config))
    port = server.port("http")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        firing = [a for a in get(port, "/api/alerts").body["alerts"] if a["status"] == "firing"]
        if len(firing) == 2:
            break
        time.sleep(0.5)
    assert sorted((a["rule"], a["group"]) for a in firing) == [("disk trouble", "db1"),
                                                               ("firewall silent", "")]
    with open_console(chromium, port, tmp_path / "screens") as console:
        console.open("/status")
        rows = console.page.locator("#alerts .firing tbody tr")
        rows.first.wait_for()
        assert sorted(rows.evaluate_all("rows => rows.map(r => [...r.cells].slice(0, 3)"
                                        ".map(c => c.textContent))")) == [
            ["disk trouble", "db1", "firing"], ["firewall silent", "—", "firing"]]
        rules = console.page.locator("#alerts .rules tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert rules == [["disk trouble", '"disk"', "10m", "2 or more", "host"],
                         ["firewall silent", "host=fw1", "5m", "fewer than 1", "—"]]
        console.page.locator("#alerts").scroll_into_view_if_needed()
        console.screenshot("alerts")
        console.page.locator("#alerts .firing a", has_text="disk trouble").click()
        console.page.wait_for_url(f"{console.base}/?q=disk&host=db1&since=10m")
        wait_rows(console, newest_ids(dsn, "message LIKE 'disk%%' AND hostname = 'db1'"))
        assert console.foreign_requests() == []
        assert console.errors == []


def test_over_https_with_a_token(chromium: Any, serve: Callable[..., ServerProcess], dsn: str,
                                 pki: Pki, tmp_path: Path) -> None:
    fill(dsn, datetime.now(UTC), count=10)
    server = serve("--tcp", "127.0.0.1:0", env={
        "PGSYSLOG_HTTP_TLS_CERT": str(pki.server.cert),
        "PGSYSLOG_HTTP_TLS_KEY": str(pki.server.key), "PGSYSLOG_HTTP_TOKEN": TOKEN})
    ports = [int(m.group(1)) for line in server.output
             if (m := re.match(r"^listening on https://127\.0\.0\.1:(\d+)$", line))]
    assert len(ports) == 1, server.log
    with open_console(chromium, ports[0], tmp_path / "screens", scheme="https") as console:
        console.open("/?since=1h")
        console.page.fill("input[name=token]", TOKEN)
        console.page.keyboard.press("Enter")
        console.page.wait_for_url(f"{console.base}/?since=1h")
        wait_rows(console, newest_ids(dsn))
        assert [(c["name"], c["secure"], c["httpOnly"]) for c in console.page.context.cookies()
                ] == [("pgsyslog_session", True, True)]
        console.page.click("[data-action=live]")
        console.page.wait_for_selector("#live-status[data-status=live]")
        logger(server.port("tcp"), "seen over https")
        console.page.locator("#results tbody tr:first-child td.msg",
                             has_text="seen over https").wait_for()
        console.screenshot("https-live")
        assert console.base.startswith("https://")
        assert console.foreign_requests() == []
        assert console.errors == []
