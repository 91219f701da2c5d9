"""What a notification says, built from a rule and its state (pure).

The JSON format::

    {"rule", "status", "group_by", "group", "count", "window" (seconds), "threshold",
     "below", "since", "until" (the window evaluated, ISO 8601), "started_at", "link"
     (the console's search for it, or null without HTTP), "samples" (up to 5 rows)}

The Alertmanager format is the body of ``POST /api/v2/alerts`` (Alertmanager's
api/v2/openapi.yaml, ``postableAlerts``): a list of one alert with string labels and
annotations, ``startsAt``, ``endsAt`` when resolved, and ``generatorURL``.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import timedelta
from typing import Any

from pgsyslog.alerts.evaluate import NO_GROUP, AlertState
from pgsyslog.alerts.rules import AlertRule
from pgsyslog.storage.filters import severity_label

MAX_SAMPLES = 5


def search_link(base: str | None, rule: AlertRule, state: AlertState) -> str | None:
    """The console's search for the rows the rule counted, over its window."""
    if base is None:
        return None
    since = state.evaluated_at - timedelta(seconds=rule.window)
    params: list[tuple[str, str]] = []
    if rule.filters.words:
        params.append(("q", rule.filters.words))
    for key, value in rule.filter_text.items():
        values = value if isinstance(value, list) else [value]
        params += [(key, str(v)) for v in values]
    if state.group_by is not None and state.group != NO_GROUP:
        params.append((state.group_by, state.group))
    params += [("since", since.isoformat()), ("until", state.evaluated_at.isoformat())]
    return f"{base.rstrip('/')}/?{urllib.parse.urlencode(params)}"


def notification_json(rule: AlertRule, state: AlertState, base: str | None) -> dict[str, Any]:
    since = state.evaluated_at - timedelta(seconds=rule.window)
    return {
        "rule": rule.name,
        "status": state.status,
        "group_by": state.group_by,
        "group": state.group if state.group_by else None,
        "count": state.last_count,
        "window": rule.window,
        "threshold": rule.threshold,
        "below": rule.below,
        "condition": rule.condition,
        "since": since.isoformat(),
        "until": state.evaluated_at.isoformat(),
        "started_at": state.started_at.isoformat(),
        "link": search_link(base, rule, state),
        "samples": (state.samples or [])[:MAX_SAMPLES],
    }


def _summary(rule: AlertRule, state: AlertState) -> str:
    where = f" for {state.group_by} {state.group}" if state.group_by else ""
    return (f"{rule.name}{where}: {state.last_count} row(s) in the last "
            f"{rule.condition.split(' in ', 1)[1]} ({rule.condition}): {state.status}")


def _labels(rule: AlertRule, state: AlertState) -> dict[str, str]:
    labels = {"alertname": rule.name, "source": "pgsyslog"}
    if state.group_by is not None:
        labels[state.group_by] = state.group
    if rule.filters.severity is not None:
        labels["severity"] = severity_label(label_severity(rule))
    return labels


def label_severity(rule: AlertRule) -> int:
    """The worst severity the rule counts: a range's most severe end (err..crit: crit,
    notice..: notice); a filter reaching emerg (err, ..err) by its bound, as written."""
    assert rule.filters.severity is not None
    worst = rule.filters.most_severe
    return worst or rule.filters.severity


def alertmanager_json(rule: AlertRule, state: AlertState, base: str | None
                      ) -> list[dict[str, Any]]:
    """Alertmanager tells alerts apart by their labels; a resolved one has startsAt =
    endsAt = when it resolved (Alertmanager refuses an end before the start)."""
    sample = (state.samples or [{}])[0].get("message")
    annotations = {"summary": _summary(rule, state), "count": str(state.last_count),
                   "window": f"{rule.window:g}s", "condition": rule.condition}
    if sample:
        annotations["sample"] = str(sample)[:1000]
    alert: dict[str, Any] = {"labels": _labels(rule, state), "annotations": annotations}
    link = search_link(base, rule, state)
    if link:
        alert["generatorURL"] = link
    alert["startsAt"] = state.started_at.isoformat()
    if state.status == "resolved":
        alert["endsAt"] = state.started_at.isoformat()
    return [alert]


def body(rule: AlertRule, state: AlertState, base: str | None, form: str) -> bytes:
    document: Any = (alertmanager_json(rule, state, base) if form == "alertmanager"
                     else notification_json(rule, state, base))
    return json.dumps(document, ensure_ascii=False).encode()
