"""Pure decisions: a rule's counts and its previous state -> the new state of each group.

Which groups are looked at:

- without group_by, the one group ``""``;
- with group_by and ``threshold``, the groups that matched rows now and the groups that
  were firing (a firing group that matched nothing now resolves);
- with group_by and ``below``, a group can only be missed if it is known: the groups
  seen in the previous evaluations (their alert_state rows) and those matching now. A
  known group that counts under ``below`` fires; one never seen cannot (documented in
  the README's Alerts section; tests/test_alerts_evaluate.py::
  test_below_with_group_by_fires_for_known_groups_that_went_quiet).

A notification is owed while ``status != notified_status``; a group seen for the first
time while resolved owes nothing (tests/test_alerts_evaluate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pgsyslog.alerts.rules import AlertRule

Status = Literal["firing", "resolved"]
NO_GROUP = ""


@dataclass(frozen=True, slots=True)
class AlertState:
    """One row of syslog.alert_state."""

    rule: str
    group: str
    status: Status
    started_at: datetime
    evaluated_at: datetime
    last_count: int
    samples: list[dict[str, Any]] | None = None
    notified_status: Status | None = None
    notified_at: datetime | None = None

    @property
    def owed(self) -> bool:
        return self.status != self.notified_status


@dataclass(frozen=True, slots=True)
class Decision:
    state: AlertState  # to be written
    changed: bool  # the status changed (a history row), or a new firing group


def groups_to_check(rule: AlertRule, counts: Mapping[str, int],
                    previous: Mapping[str, AlertState]) -> list[str]:
    if rule.group_by is None:
        return [NO_GROUP]
    known = set(counts)
    if rule.below is not None:
        known |= set(previous)
    else:
        known |= {g for g, s in previous.items() if s.status == "firing"}
    return sorted(known - {NO_GROUP})


def decide_group(rule: AlertRule, group: str, count: int, before: AlertState | None,
                 now: datetime) -> Decision:
    status: Status = "firing" if rule.fires(count) else "resolved"
    if before is None:
        # A group first seen resolved has nothing to tell anyone.
        notified: Status | None = None if status == "firing" else "resolved"
        state = AlertState(rule.name, group, status, now, now, count, notified_status=notified)
        return Decision(state, changed=status == "firing")
    if before.status == status:
        return Decision(replace(before, evaluated_at=now, last_count=count), changed=False)
    state = replace(before, status=status, started_at=now, evaluated_at=now, last_count=count)
    return Decision(state, changed=True)


def decide(rule: AlertRule, counts: Mapping[str, int], previous: Mapping[str, AlertState],
           now: datetime) -> list[Decision]:
    """Each group's new state; ``counts`` holds the groups that matched (others: 0)."""
    return [decide_group(rule, group, counts.get(group, 0), previous.get(group), now)
            for group in groups_to_check(rule, counts, previous)]
