"""Make docs/console.png and docs/console-status.png: the console over a day of logs.

    .venv/bin/python docs/console_screenshot.py

Starts an embedded PostgreSQL in a temporary directory, stores a day of the kind of
syslog a small site sends (sshd, nginx, the kernel, cron, PostgreSQL, a firewall, a
switch), each line parsed by pgsyslog's own parsers with a receive time spread over the
last 24 hours, then runs `pgsyslog serve` on it, sends a few lines with `logger` as a
live sender would, and takes the screenshots with headless Chromium.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from browser import DESKTOP, launched, open_console
from helpers import start_server
from pgsyslog.receiver.parsers import parse_message
from pgsyslog.record import ParseContext, Record
from pgsyslog.storage import database, migrate, partitions
from pgsyslog.storage.copy import copy_records, register_adapters
from pgsyslog.storage.schema import BLOCK_IDS

DOCS = Path(__file__).parent
# Two rules for the status page: one firing over the day's data, one quiet. Their target
# refuses connections; the page shows the alerts, not the deliveries.
ALERT_RULES = """
alert_interval = "1s"
retention_days = 30

[[alert]]
name = "web errors"
app = "nginx"
severity = "warning"
window = "6h"
threshold = 5
group_by = "host"
notify = ["http://127.0.0.1:9/hook"]

[[alert]]
name = "firewall silent"
host = "10.0.0.1"
window = "10m"
below = 1
notify = ["http://127.0.0.1:9/hook"]
"""
ROWS = 6000
USERS = ("deploy", "backup", "alice", "root", "admin", "oracle", "test")
PATHS = ("/", "/api/orders", "/api/orders/17", "/login", "/static/app.js", "/healthz")


def line(rng: random.Random, when: datetime) -> tuple[bytes, str]:
    """One syslog message as a sender puts it on the wire, and its source address."""
    stamp = when.strftime("%b %d %H:%M:%S").replace(" 0", "  ", 1)
    iso = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    pid = rng.randint(900, 32000)
    choice = rng.random()
    if choice < 0.30:
        status = rng.choices((200, 304, 404, 500), (80, 10, 8, 2))[0]
        host = rng.choice(("web1", "web2", "web3"))
        return (f"<{190 if status < 500 else 187}>1 {iso} {host} nginx {pid} access - "
                f'10.1.{rng.randint(0, 9)}.{rng.randint(2, 250)} "GET {rng.choice(PATHS)} '
                f'HTTP/1.1" {status} {rng.randint(200, 90000)} {rng.random():.3f}s').encode(), \
            "10.0.1.11"
    if choice < 0.45:
        user = rng.choice(USERS)
        text = (f"Failed password for invalid user {user} from 203.0.113.{rng.randint(2, 250)} "
                f"port {rng.randint(30000, 60000)} ssh2" if rng.random() < 0.4 else
                f"Accepted publickey for {user} from 10.1.0.{rng.randint(2, 50)} port "
                f"{rng.randint(30000, 60000)} ssh2: ED25519 SHA256:Zk3wF8")
        pri = 86 if "Accepted" in text else 84
        return f"<{pri}>{stamp} bastion sshd[{pid}]: {text}".encode(), "10.0.1.5"
    if choice < 0.55:
        text = rng.choice(("checkpoint starting: time",
                           "checkpoint complete: wrote 1834 buffers (11.2%)",
                           'ERROR:  duplicate key value violates unique constraint "orders_pkey"',
                           "automatic vacuum of table \"shop.public.orders\": index scans: 1"))
        severity = 3 if text.startswith("ERROR") else 6
        return f"<{128 + severity}>1 {iso} db1 postgres {pid} - - {text}".encode(), "10.0.2.3"
    if choice < 0.63:
        return (f"<78>{stamp} web{rng.randint(1, 3)} CRON[{pid}]: (root) CMD "
                "(/usr/local/bin/backup --incremental)").encode(), "10.0.1.11"
    if choice < 0.80:
        action = rng.choices(("accept", "deny"), (85, 15))[0]
        return (f"<{189 if action == 'accept' else 188}>date={when:%Y-%m-%d} time={when:%H:%M:%S} "
                f"devname=fw1 type=traffic action={action} srcip=198.51.100.{rng.randint(2, 250)} "
                f"dstip=10.1.0.{rng.randint(2, 50)} dstport={rng.choice((22, 443, 3389, 5432))} "
                f"proto=6").encode(), "10.0.0.1"
    if choice < 0.90:
        return (f"<189>{rng.randint(1000, 9999)}: *{stamp}.{rng.randint(100, 999)}: "
                f"%LINK-3-UPDOWN: Interface GigabitEthernet1/0/{rng.randint(1, 48)}, changed "
                f"state to {rng.choice(('up', 'down'))}").encode(), "10.0.0.2"
    text = rng.choice(("e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex",
                       "EXT4-fs (sda1): warning: mounting fs with errors, running e2fsck is "
                       "recommended", "Out of memory: Killed process 4242 (java)",
                       "audit: type=1400 apparmor=\"DENIED\" operation=\"open\""))
    severity = 2 if "Out of memory" in text else 4 if "warning" in text else 6
    return f"<{severity}>{stamp} {rng.choice(('web1', 'db1', 'mail1'))} kernel: {text}".encode(), \
        "10.0.1.20"


def day_of_logs(now: datetime) -> list[Record]:
    rng = random.Random(11)
    records = []
    for _ in range(ROWS):
        # busier in the working hours of the last day, with a burst two hours ago
        age = timedelta(hours=rng.triangular(0, 24, 6))
        if rng.random() < 0.08:
            age = timedelta(minutes=rng.uniform(115, 130))
        when = now - age
        data, source = line(rng, when)
        record = parse_message(data, ParseContext(when, UTC, source, "tcp"))
        if record is not None:
            records.append(record)
    records.sort(key=lambda r: r.received_at)
    return records


async def store(dsn: str, records: list[Record]) -> None:
    conn = await database.connect_async(dsn, autocommit=True)
    try:
        register_adapters(conn)
        for first in range(0, len(records), BLOCK_IDS):
            async with conn.transaction():
                await copy_records(conn, records[first : first + BLOCK_IDS])
        # What autovacuum would do within a minute: the partitions' row estimates.
        await conn.execute("ANALYZE syslog.messages")
    finally:
        await conn.close()


def screenshots(http_port: int, tcp_port: int, shots: Path) -> None:
    with launched() as browser, open_console(browser, http_port, shots,
                                             viewport={**DESKTOP, "height": 900}) as console:
        console.open("/?since=24h")
        console.page.locator("#results tbody tr").first.wait_for()
        console.page.wait_for_selector("#histogram rect.bar:not([data-count='0'])")
        console.page.click("[data-action=live]")
        console.page.wait_for_selector("#live-status[data-status=live]")
        for text in ("disk /dev/sdb1 is 91% full", "backup finished: 14.2 GiB in 312 s"):
            subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(tcp_port), "-T", "-t",
                            "backup", "-p", "daemon.warning", text], check=True, timeout=10)
        console.page.locator("#results tbody td.msg", has_text="backup finished").wait_for()
        console.page.screenshot(path=DOCS / "console.png")
        console.open("/status")
        console.page.locator("#partitions tbody tr").first.wait_for()
        console.page.wait_for_selector("#ingest-chart rect.bar:not([data-count='0'])")
        console.page.screenshot(path=DOCS / "console-status.png", full_page=True)


def main() -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        embedded = database.EmbeddedDatabase(Path(tmp) / "pg", stop_on_exit=True)
        dsn = embedded.start()
        try:
            migrate.upgrade(dsn)
            with database.connect(dsn, autocommit=True) as conn:
                partitions.ensure_partitions(conn, (now - timedelta(days=1)).date(), 3)
            asyncio.run(store(dsn, day_of_logs(now)))
            rules = Path(tmp) / "alerts.toml"
            rules.write_text(ALERT_RULES)
            server = start_server(["--dsn", dsn, "--tcp", "127.0.0.1:0", "--data-dir",
                                   str(Path(tmp) / "data"), "--config", str(rules)])
            try:
                screenshots(server.port("http"), server.port("tcp"), Path(tmp) / "shots")
            finally:
                server.stop()
        finally:
            embedded.stop()
    print(f"wrote {DOCS / 'console.png'} and {DOCS / 'console-status.png'}")


if __name__ == "__main__":
    main()
