"""Rules and states for people and scripts: the JSON of /api/alerts and the lines of
`pgsyslog alerts list` and `check-config` (pure).

A notify URL is shown by its origin only (``https://hooks.example``): webhook URLs
often carry their secret in the path or the query.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from pgsyslog.alerts.evaluate import AlertState
from pgsyslog.alerts.rules import AlertRule, NotifyTarget

_URL_RE = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


def url_origin(text: str) -> str:
    """``scheme://host:port`` of a URL: no user, password, path or query."""
    url = urllib.parse.urlsplit(text)
    return f"{url.scheme}://{url.netloc.rpartition('@')[2]}"


def target_origin(target: NotifyTarget) -> str:
    return url_origin(target.url)


def without_urls(text: str) -> str:
    """``text`` with every URL in it cut to its origin (error texts repeat the URL)."""
    return _URL_RE.sub(lambda match: url_origin(match.group()), text)


def rule_json(rule: AlertRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "query": rule.filters.words or "",
        "filters": rule.filter_text,
        "window": rule.window,
        "threshold": rule.threshold,
        "below": rule.below,
        "group_by": rule.group_by,
        "notify": [{"url": target_origin(t), "format": t.format} for t in rule.notify],
    }


def state_json(state: AlertState) -> dict[str, Any]:
    return {
        "rule": state.rule,
        "group": state.group,
        "status": state.status,
        "started_at": state.started_at.isoformat(),
        "evaluated_at": state.evaluated_at.isoformat(),
        "last_count": state.last_count,
        "samples": state.samples or [],
    }


def rule_line(rule: AlertRule) -> str:
    """``web errors: app=nginx severity=err "words", >= 20 in 5m, by host -> 1 target``"""
    parts = [f"{k}={v if not isinstance(v, list) else ','.join(map(str, v))}"
             for k, v in rule.filter_text.items()]
    if rule.filters.words:
        parts.append(f"query={rule.filters.words!r}")
    what = " ".join(parts) or "every row"
    by = f", by {rule.group_by}" if rule.group_by else ""
    targets = ", ".join(str(NotifyTarget(target_origin(t), t.format)) for t in rule.notify)
    return f"{rule.name}: {what}, {rule.condition}{by} -> {targets or 'no notify target'}"
