"""The top hosts, apps and severities of the rows a search matches: /api/facets.

One scan of the matching rows counts the three at once (GROUPING SETS), and a window
function keeps the top ``limit`` of each in the database, so the answer is bounded
however many hosts there are (tests/test_api_endpoints.py::test_facets_count_the_top_values).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from pgsyslog.storage.filters import Filters, severity_label
from pgsyslog.storage.queries import AnySelect, conditions
from pgsyslog.storage.schema import messages

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


@dataclass
class Facets:
    """(value, rows) pairs, most rows first."""

    host: list[tuple[str | None, int]] = field(default_factory=list)
    app: list[tuple[str | None, int]] = field(default_factory=list)
    severity: list[tuple[int, int]] = field(default_factory=list)


def facets_statement(filters: Filters, limit: int) -> AnySelect:
    """Rows of (which, value, rows): which is 'host', 'app' or 'severity'."""
    c = messages.c
    which = func.grouping(c.hostname, c.app_name, c.severity)  # a bit per column left out
    counted = (select(which.label("which"), c.hostname, c.app_name, c.severity,
                      func.count().label("rows"))
               .where(*conditions(filters))
               .group_by(func.grouping_sets(c.hostname, c.app_name, c.severity))
               .subquery("counted"))
    rank = func.row_number().over(partition_by=counted.c.which,
                                  order_by=(counted.c.rows.desc(), counted.c.hostname,
                                            counted.c.app_name, counted.c.severity))
    ranked = select(counted, rank.label("rank")).subquery("ranked")
    return (select(ranked.c.which, ranked.c.hostname, ranked.c.app_name, ranked.c.severity,
                   ranked.c.rows)
            .where(ranked.c.rank <= limit)
            .order_by(ranked.c.which, ranked.c.rank))


# grouping(hostname, app_name, severity) of each grouping set: 1 bit per column left out.
_HOST, _APP, _SEVERITY = 0b011, 0b101, 0b110


def tally(rows: Iterable[tuple[int, str | None, str | None, int | None, int]]) -> Facets:
    facets = Facets()
    for which, host, app, severity, count in rows:
        if which == _HOST:
            facets.host.append((host, count))
        elif which == _APP:
            facets.app.append((app, count))
        elif which == _SEVERITY and severity is not None:
            facets.severity.append((severity, count))
    return facets


def facets_json(f: Facets) -> dict[str, Any]:
    return {
        "host": [{"value": v, "count": n} for v, n in f.host],
        "app": [{"value": v, "count": n} for v, n in f.app],
        "severity": [{"value": v, "label": severity_label(v), "count": n}
                     for v, n in f.severity],
    }
