"""Configuration: TOML < environment < flags; a bad value is one line naming the key, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pgsyslog.cli import cli
from pgsyslog.config import ConfigError, Endpoint, load_config, mask_dsn, parse_endpoint, redacted


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "pgsyslog.toml"
    toml.write_text('tcp = ["127.0.0.1:6000"]\nbatch_rows = 10\nbatch_age_ms = 50\n'
                    'default_tz = "Europe/Berlin"\n'
                    '[source_timezones]\n"10.1.0.0/16" = "America/New_York"\n')
    env = {"PGSYSLOG_BATCH_ROWS": "20", "PGSYSLOG_UDP": "127.0.0.1:6001,[::1]:6002"}
    config = load_config(toml, env, {"batch_age_ms": "75"})
    assert config.tcp == (Endpoint("127.0.0.1", 6000),)
    assert config.udp == (Endpoint("127.0.0.1", 6001), Endpoint("::1", 6002))
    assert (config.batch_rows, config.batch_age_ms) == (20, 75)
    assert config.default_tz == "Europe/Berlin"
    assert str(config.source_timezones[0].zone) == "America/New_York"


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [("127.0.0.1:514", Endpoint("127.0.0.1", 514)), ("[::1]:5514", Endpoint("::1", 5514)),
     ("localhost:0", Endpoint("localhost", 0)), ("[::]:6514", Endpoint("::", 6514))],
)
def test_endpoints(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    ("flags", "key"),
    [({"tcp": ("nonsense",)}, "tcp"), ({"batch_rows": "0"}, "batch_rows"),
     ({"default_tz": "Mars/Olympus"}, "default_tz"), ({"udp": ("::1:514",)}, "udp"),
     ({"source_timezones": ("10.0.0.0/33=UTC",)}, "source_timezones"),
     ({"tls": ("127.0.0.1:6514",)}, "tls")],
)
def test_bad_values_name_their_key(flags: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, flags)
    assert info.value.key == key


def test_unknown_key_in_file(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("batch_rowz = 5\n")
    with pytest.raises(ConfigError, match="batch_rowz: unknown setting"):
        load_config(toml, {})


def test_check_config_bad_flag_prints_one_line_and_exits_2() -> None:
    result = CliRunner().invoke(cli, ["check-config", "--udp", "127.0.0.1:99999"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "udp" in lines[0] and "99999" in lines[0]


def test_check_config_bad_environment_exits_2() -> None:
    result = CliRunner().invoke(cli, ["check-config"], env={"PGSYSLOG_QUEUE_SIZE": "lots"})
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: config: queue_size: expected a whole number, got 'lots'"]


def test_check_config_prints_the_result() -> None:
    result = CliRunner().invoke(cli, ["check-config", "--tcp", "[::1]:5514", "--default-tz",
                                      "Asia/Tokyo"])
    assert result.exit_code == 0, result.output
    assert "tcp = [::1]:5514" in result.output
    assert "default_tz = Asia/Tokyo" in result.output
    assert result.output.strip().endswith("configuration is valid")


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [("postgresql://u:s3cret@db.example/logs", "postgresql://u:***@db.example/logs"),
     ("postgres://u:p@ss/w@db:5433/logs?sslmode=require", "postgres://u:***@db:5433/logs?sslmode=require"),
     ("postgresql://db/logs?user=u&password=s3cret&sslmode=verify-full",
      "postgresql://db/logs?user=u&password=***&sslmode=verify-full"),
     ("postgresql://u@db/logs", "postgresql://u@db/logs"),
     ("host=db password=s3cret dbname=logs", "host=db password=*** dbname=logs"),
     ("host=db password = 'with space \\' quote' dbname=logs",
      "host=db password = *** dbname=logs"),
     ("host=db sslpassword=keypass dbname=logs", "host=db sslpassword=*** dbname=logs"),
     ("host=/run/postgresql dbname=logs", "host=/run/postgresql dbname=logs")],
)
def test_mask_dsn_hides_passwords_in_both_forms(dsn: str, shown: str) -> None:
    assert mask_dsn(dsn) == shown


def test_redacted_masks_the_dsn_and_the_token() -> None:
    config = load_config(None, {}, {"dsn": "postgresql://u:s3cret@db/logs",
                                    "http_token": "t0ken"})
    shown = redacted(config)
    assert shown["dsn"] == "postgresql://u:***@db/logs"
    assert shown["http_token"] == "***"
    assert not any("s3cret" in v or "t0ken" in v for v in shown.values())
