"""`pgsyslog alerts list | history | test NAME`: the configured rules, their state and
history, and a dry run of one rule. The rules are the configuration's (--config)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from pgsyslog.cli.db import database_url
from pgsyslog.cli.options import ConfigProblem, database_options, with_config
from pgsyslog.config import Config

if TYPE_CHECKING:
    from pgsyslog.alerts.evaluate import AlertState, Decision
    from pgsyslog.alerts.rules import AlertRule
    from pgsyslog.alerts.store import Change


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group()
def alerts() -> None:
    """Alert rules ([[alert]] in the configuration), their state and history."""


@alerts.command("list")
@click.option("--output", "-o", type=click.Choice(("table", "json")), default="table",
              show_default=True)
@database_options
@with_config
def list_rules(config: Config, output: str) -> None:
    """Each rule and the state of its alerts."""
    from pgsyslog.alerts import store
    from pgsyslog.alerts.describe import rule_json, state_json
    from pgsyslog.storage import database

    rules: tuple[AlertRule, ...] = config.alert
    with database_url(config) as url, database.connect(url) as conn:
        states = store.load_states(conn, [r.name for r in rules])
    if output == "json":
        click.echo(json.dumps({"rules": [rule_json(r) for r in rules],
                               "alerts": [state_json(s) for by_group in states.values()
                                          for s in by_group.values()]}, ensure_ascii=False))
        return
    if not rules:
        click.echo("no alert rules: add [[alert]] tables to the configuration file")
    for rule in rules:
        click.echo("\n".join(rule_lines(rule, states.get(rule.name, {}))))


def rule_lines(rule: AlertRule, states: dict[str, AlertState]) -> list[str]:
    from pgsyslog.alerts.describe import rule_line

    lines = [rule_line(rule)]
    if not states:
        lines.append("  not evaluated yet")
    for state in sorted(states.values(), key=lambda s: (s.status != "firing", s.group)):
        group = f"{state.group_by} {state.group}: " if state.group_by else ""
        owed = "" if not state.owed else " (notification pending)"
        lines.append(f"  {group}{state.status} since {_when(state.started_at)}, "
                     f"{state.last_count} row(s) at {_when(state.evaluated_at)}{owed}")
    return lines


@alerts.command()
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True,
              help="Changes shown at most.")
@click.option("--rule", metavar="NAME", help="Only this rule's changes.")
@database_options
@with_config
def history(config: Config, limit: int, rule: str | None) -> None:
    """Changes of status (firing, resolved), newest first."""
    from pgsyslog.alerts import store
    from pgsyslog.storage import database

    with database_url(config) as url, database.connect(url) as conn:
        changes = store.history(conn, limit, rule)
    if not changes:
        click.echo("no alert has fired yet")
    for change in changes:
        click.echo(change_line(change))


def change_line(change: Change) -> str:
    group = f" [{change.group}]" if change.group else ""
    return f"{_when(change.at)}  {change.status:<8}  {change.rule}{group}  {change.count} row(s)"


@alerts.command()
@click.argument("name")
@database_options
@with_config
def test(config: Config, name: str) -> None:
    """Evaluate rule NAME now and print what it would send; sends and stores nothing."""
    from pgsyslog.storage import database

    rule = next((r for r in config.alert if r.name == name), None)
    if rule is None:
        known = ", ".join(f'"{r.name}"' for r in config.alert) or "none configured"
        raise ConfigProblem(f'alerts test: no rule named "{name}" (rules: {known})')
    with database_url(config) as url, database.connect(url) as conn:
        decisions, documents = dry_run(conn, rule, config)
    for decision, document in zip(decisions, documents, strict=True):
        click.echo(decision_line(rule, decision))
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    if not decisions:
        click.echo(f"{rule.name}: no group to evaluate (no rows matched, none seen before)")


def dry_run(conn: Any, rule: AlertRule, config: Config
            ) -> tuple[list[Decision], list[dict[str, Any]]]:
    from pgsyslog.alerts import counting, store
    from pgsyslog.alerts.engine import evaluate_rule
    from pgsyslog.alerts.payload import notification_json
    from pgsyslog.alerts.schedule import console_base

    now = datetime.now(UTC)
    previous = store.load_states(conn, [rule.name]).get(rule.name, {})
    decisions = evaluate_rule(conn, rule, previous, now)
    documents = []
    for decision in decisions:
        state = decision.state
        if state.status == "firing" and not state.samples:
            state = dataclasses.replace(
                state, samples=counting.samples(conn, rule, state.group, now))
        documents.append(notification_json(rule, state, console_base(config)))
    return decisions, documents


def decision_line(rule: AlertRule, decision: Decision) -> str:
    state = decision.state
    group = f" {state.group_by} {state.group}" if state.group_by else ""
    if decision.changed or state.owed:
        sends = f"would notify {len(rule.notify)} target(s)"
    else:
        sends = "nothing to notify (no change)"
    return (f"{rule.name}{group}: {state.last_count} row(s) ({rule.condition}): "
            f"{state.status}; {sends}")
