"""Pure decisions: a rule's counts and its previous state -> the new state of each group.

Which groups are looked at:

- without group_by, the one group ``""``;
- with group_by and ``threshold``, the groups that matched rows now and the groups that
  were firing (a firing group that matched nothing now resolves);
- with group_by and ``below``, a group can only be missed if it is known: the groups
  seen in the previous evaluations (their alert_state rows) and those matching now. A
  known group that counts under ``below`` fires; one never seen cannot (documented in
  the README's Alerts section; tests/test_alerts_evaluate.py::
  test_below_with_group_by_fires_for_known_groups_that_went_quiet);
- a state of another grouping (group_by added, removed or changed since it was written)
  counts as none, but if it fires it is the group's state until it resolves, and a firing
  one that is no group of the rule now resolves (tests/test_alerts_evaluate.py::
  test_a_change_of_group_by_resolves_the_alerts_of_the_old_grouping).

A notification is owed while ``status != notified_status`` (null while a change is being
delivered: store.claim_owed); a group seen for the first time while resolved owes nothing
(tests/test_alerts_evaluate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pgsyslog.alerts.rules import AlertRule, GroupBy

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
    group_by: GroupBy | None = None  # the rule's group_by when this state was decided

    @property
    def owed(self) -> bool:
        return self.status != self.notified_status


@dataclass(frozen=True, slots=True)
class Decision:
    state: AlertState  # to be written
    changed: bool  # the status changed (a history row), or a new firing group


def current_grouping(rule: AlertRule, previous: Mapping[str, AlertState]
                     ) -> dict[str, AlertState]:
    """The states that can carry on: of the rule's grouping, or firing."""
    return {g: s for g, s in previous.items()
            if s.group_by == rule.group_by or s.status == "firing"}


def groups_to_check(rule: AlertRule, counts: Mapping[str, int],
                    previous: Mapping[str, AlertState]) -> list[str]:
    if rule.group_by is None:
        return [NO_GROUP]
    known = set(counts)
    if rule.below is not None:
        known |= {g for g, s in previous.items() if s.group_by == rule.group_by}
    else:
        known |= {g for g, s in previous.items()
                  if s.group_by == rule.group_by and s.status == "firing"}
    return sorted(known - {NO_GROUP})


def decide_group(rule: AlertRule, group: str, count: int, before: AlertState | None,
                 now: datetime) -> Decision:
    status: Status = "firing" if rule.fires(count) else "resolved"
    if before is None:
        # A group first seen resolved has nothing to tell anyone.
        notified: Status | None = None if status == "firing" else "resolved"
        state = AlertState(rule.name, group, status, now, now, count, notified_status=notified,
                           group_by=rule.group_by)
        return Decision(state, changed=status == "firing")
    if before.status == status:
        return Decision(replace(before, evaluated_at=now, last_count=count,
                                group_by=rule.group_by), changed=False)
    state = replace(before, status=status, started_at=now, evaluated_at=now, last_count=count,
                    group_by=rule.group_by)
    return Decision(state, changed=True)


def resolve_regrouped(before: AlertState, now: datetime) -> Decision:
    """A firing alert of a grouping the rule no longer has: nothing counts it any more."""
    state = replace(before, status="resolved", started_at=now, evaluated_at=now, last_count=0)
    return Decision(state, changed=True)


def decide(rule: AlertRule, counts: Mapping[str, int], previous: Mapping[str, AlertState],
           now: datetime) -> list[Decision]:
    """Each group's new state; ``counts`` holds the groups that matched (others: 0)."""
    checked = groups_to_check(rule, counts, previous)
    carried = current_grouping(rule, previous)
    decisions = [decide_group(rule, group, counts.get(group, 0), carried.get(group), now)
                 for group in checked]
    return decisions + [resolve_regrouped(s, now) for g, s in sorted(previous.items())
                        if g not in checked and s.group_by != rule.group_by
                        and s.status == "firing"]
