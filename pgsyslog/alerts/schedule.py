"""What the scheduler runs every alert_interval: one evaluation round in a worker thread,
then the owed notifications handed to the notifier's tasks. receiver/scheduler.py adds
the job; nothing here blocks the event loop or ingestion."""

from __future__ import annotations

import asyncio
import logging
import socket

import psycopg

from pgsyslog.alerts.engine import evaluate_all
from pgsyslog.alerts.notify import Notifier
from pgsyslog.config import Config

log = logging.getLogger(__name__)

_WILDCARDS = ("0.0.0.0", "::", "")


def console_base(config: Config) -> str | None:
    """The web console's address for links in notifications; None without HTTP."""
    if config.http is None:
        return None
    scheme = "https" if config.http_tls_cert else "http"
    host = config.http.host
    if host in _WILDCARDS:
        host = socket.getfqdn()
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{config.http.port}"


class AlertRunner:
    def __init__(self, dsn: str, config: Config) -> None:
        self.dsn = dsn
        self.rules = config.alert
        self.interval = config.alert_interval
        self.notifier = Notifier(dsn, self.rules, console_base(config))

    async def run(self) -> None:
        try:
            result = await asyncio.to_thread(evaluate_all, self.dsn, self.rules, self.interval)
        except asyncio.CancelledError:
            return  # serve is stopping; the round's writes are each one transaction
        except psycopg.Error as e:
            log.warning("alert evaluation failed (%s); the next one is in %gs",
                        " ".join(str(e).split()), self.interval)
            return
        except Exception:
            log.exception("alert evaluation failed; the next one is in %gs", self.interval)
            return
        if result.changes:
            log.info("alerts: %s", result.summary())
        self.notifier.dispatch(result.owed)

    def close(self) -> None:
        self.notifier.close()
