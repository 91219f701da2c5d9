"""Notifications: an HTTP POST per target, retried with backoff, each attempt recorded.

Deliveries run as their own asyncio tasks, apart from evaluation and from ingestion: a
target that hangs or fails costs only its task (tests/test_alerts_serve.py::
test_a_target_that_hangs_does_not_hold_up_ingestion). Every attempt has a timeout
(ATTEMPT_TIMEOUT); a failed one is retried after BACKOFF_FIRST, doubling up to
BACKOFF_MAX, ATTEMPTS times in all; then the notification is given up
(tests/test_alerts_serve.py::test_a_target_answering_500_is_retried_and_every_attempt_is_recorded).
At most MAX_DELIVERIES are in flight; one over that stays owed and claimed, and is taken
up again when its claim ends.

A redirect is not followed: a 3xx is a failed attempt
(tests/test_alerts_serve.py::test_a_redirect_is_a_failed_attempt_and_is_not_followed). The
log and alert_notifications name a target by its origin only, never its user, password,
path or query (::test_the_secret_of_a_notify_url_reaches_neither_the_log_nor_the_database)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import aiohttp
import psycopg

from pgsyslog.alerts import payload, store
from pgsyslog.alerts.describe import target_origin, without_urls
from pgsyslog.alerts.evaluate import AlertState
from pgsyslog.alerts.rules import AlertRule, NotifyTarget
from pgsyslog.storage import database

log = logging.getLogger(__name__)

ATTEMPTS = 5
ATTEMPT_TIMEOUT = 10.0  # seconds for one POST, connecting included
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 16.0
MAX_DELIVERIES = 100
# The longest one delivery takes: its targets are tried at the same time, each ATTEMPTS times.
DELIVERY_SECONDS = ATTEMPTS * ATTEMPT_TIMEOUT + sum(
    min(BACKOFF_FIRST * 2**n, BACKOFF_MAX) for n in range(ATTEMPTS - 1))
MAX_ERROR = 300  # characters of an error kept in alert_notifications
USER_AGENT = "pgsyslog-alerts"


def describe(error: BaseException) -> str:
    """One line for the log and alert_notifications; a URL in it is cut to its origin."""
    if isinstance(error, TimeoutError):
        return f"no answer within {ATTEMPT_TIMEOUT:g}s"
    text = " ".join(str(error).split()) or type(error).__name__
    return without_urls(text)[:MAX_ERROR]


class Notifier:
    """Delivers owed notifications; ``dispatch`` does not wait for them."""

    def __init__(self, dsn: str, rules: Sequence[AlertRule], link_base: str | None, *,
                 backoff_first: float = BACKOFF_FIRST) -> None:
        self.dsn = dsn
        self.rules: Mapping[str, AlertRule] = {r.name: r for r in rules}
        self.link_base = link_base
        self.backoff_first = backoff_first
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def dispatch(self, owed: Sequence[AlertState]) -> None:
        for state in owed:
            key = (state.rule, state.group)
            rule = self.rules.get(state.rule)
            if rule is None or key in self._tasks or len(self._tasks) >= MAX_DELIVERIES:
                continue
            task = asyncio.create_task(self._deliver(rule, state), name=f"notify {key}")
            self._tasks[key] = task
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._tasks.items()):
            if running is task:
                del self._tasks[key]

    async def idle(self) -> None:
        """Until every delivery in flight has ended (tests, and `alerts test`)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def _deliver(self, rule: AlertRule, state: AlertState) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout,
                                             headers={"User-Agent": USER_AGENT}) as session:
                await asyncio.gather(*(self._send(session, rule, state, target)
                                       for target in targets(rule, state)))
            await self._in_database(store.mark_notified, state, datetime.now(UTC))
        except psycopg.Error as e:
            # Left claimed; when the claim ends the next round owes it again.
            log.warning("alert %r: could not record its notification (%s); it is sent "
                        "again later", rule.name, " ".join(str(e).split()))
        except Exception:  # a bug must not end as an unretrieved task exception
            log.exception("alert %r: notification failed; it is sent again later", rule.name)

    async def _send(self, session: aiohttp.ClientSession, rule: AlertRule,
                    state: AlertState, target: NotifyTarget) -> bool:
        data = payload.body(rule, state, self.link_base, target.format)
        shown = target_origin(target)  # the path and query of webhook URLs hold secrets
        delay = self.backoff_first
        for attempt in range(1, ATTEMPTS + 1):
            http_status, error = await post(session, target.url, data)
            await self._in_database(store.record_attempt, store.Attempt(
                rule.name, state.group, state.status, shown, attempt, http_status, error))
            if error is None:
                return True
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        log.warning("alert %r %s: gave up notifying %s after %d attempts (last: %s)",
                    rule.name, state.status, shown, ATTEMPTS, error)
        return False

    async def _in_database(self, write: Callable[..., None], *args: object) -> None:
        def run() -> None:
            with database.connect(self.dsn, autocommit=True) as conn:
                write(conn, *args)

        await asyncio.to_thread(run)


def targets(rule: AlertRule, state: AlertState) -> tuple[NotifyTarget, ...]:
    """Every target for a change; only Alertmanager ones for a firing alert sent again."""
    if state.owed:
        return rule.notify
    return tuple(t for t in rule.notify if t.format == "alertmanager")


async def post(session: aiohttp.ClientSession, url: str, data: bytes
               ) -> tuple[int | None, str | None]:
    """(status code, None) on a 2xx answer; (code or None, why) otherwise. A redirect is
    not followed (it would turn the POST into a GET without the body): a 3xx fails."""
    try:
        async with session.post(url, data=data, allow_redirects=False,
                                headers={"Content-Type": "application/json"}) as response:
            if 200 <= response.status < 300:
                return response.status, None
            return response.status, f"HTTP {response.status} {response.reason or ''}".strip()
    except (aiohttp.ClientError, TimeoutError) as e:
        return None, describe(e)
