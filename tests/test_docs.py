"""The README cannot go stale: every setting and every serve flag is documented there."""

from __future__ import annotations

from pathlib import Path

import click

from pgsyslog.cli import cli
from pgsyslog.config import CONVERTERS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_config_key_is_in_the_readme() -> None:
    missing = [key for key in CONVERTERS if f"`{key}`" not in README]
    assert missing == []


def test_every_serve_flag_is_in_the_readme() -> None:
    serve = cli.commands["serve"]
    flags = [opt for p in serve.params if isinstance(p, click.Option) for opt in p.opts]
    missing = [flag for flag in flags if flag not in README]
    assert missing == []


def test_every_command_is_in_the_readme() -> None:
    missing = [name for name in cli.commands if f"pgsyslog {name}" not in README]
    assert missing == []
