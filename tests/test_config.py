"""Configuration: TOML < environment < flags; a bad value is one line naming the key, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pgsyslog import config as config_module
from pgsyslog.cli import cli
from pgsyslog.config import (
    CONVERTERS,
    MAX_BATCH_ROWS,
    ConfigError,
    Endpoint,
    build_config,
    check_startup,
    data_dir_problem,
    load_config,
    mask_dsn,
    mask_secrets,
    parse_endpoint,
    pem_problem,
    redacted,
)
from pgsyslog.storage.schema import BLOCK_IDS
from pki import Pki


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


SECONDS_SETTINGS = [key for key, convert in CONVERTERS.items()
                    if convert in (config_module._positive_float,
                                   config_module._seconds_or_zero)]


def test_every_seconds_setting_is_known() -> None:
    assert {"shutdown_timeout", "idle_timeout", "db_statement_timeout",
            "tls_handshake_timeout", "http_stream_timeout"} <= set(SECONDS_SETTINGS)


@pytest.mark.parametrize("key", SECONDS_SETTINGS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "86401", "true"])
def test_seconds_settings_refuse_nan_infinity_and_more_than_a_day(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {key: value})
    assert info.value.key == key


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("5m", 300.0), ("1.5h", 5400.0),
                                               ("1d", 86400.0), (" 2M ", 120.0), ("45", 45.0)])
def test_seconds_settings_take_a_duration_with_its_unit(text: str, seconds: float,
                                                        tmp_path: Path) -> None:
    toml = tmp_path / "durations.toml"
    toml.write_text(f'alert_interval = "{text}"\nshutdown_timeout = "{text}"\n')
    config = load_config(toml, {})
    assert (config.alert_interval, config.shutdown_timeout) == (seconds, seconds)


@pytest.mark.parametrize("value", ["30x", "5 minutes", "m5", "2d"])
def test_a_duration_that_means_nothing_or_more_than_a_day_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"alert_interval": value})
    assert info.value.key == "alert_interval"


@pytest.mark.parametrize("key", SECONDS_SETTINGS)
def test_nan_from_a_toml_file_is_refused(key: str, tmp_path: Path) -> None:
    toml = tmp_path / "nan.toml"
    toml.write_text(f"{key} = nan\n")
    with pytest.raises(ConfigError, match=f"{key}: expected a finite number of seconds"):
        load_config(toml, {})


@pytest.mark.parametrize(
    ("key", "largest"),
    [("batch_rows", 65_536), ("writers", 64), ("queue_size", 10_000_000),
     ("partitions_ahead", 366), ("retention_days", 36_500), ("http_db_connections", 64),
     ("max_connections", 100_000), ("batch_age_ms", 60_000)],
)
def test_whole_numbers_have_an_upper_bound(key: str, largest: int) -> None:
    flags: dict[str, object] = {key: str(largest)}
    if key == "batch_rows":
        flags["queue_size"] = str(largest)
    assert getattr(load_config(None, {}, flags), key) == largest
    with pytest.raises(ConfigError, match=f"{key}: must be") as info:
        load_config(None, {}, {**flags, key: str(largest + 1)})
    assert info.value.key == key


def test_batch_rows_bound_is_the_writers_id_block() -> None:
    assert MAX_BATCH_ROWS == BLOCK_IDS


@pytest.mark.parametrize("value", [2.5, float("inf"), float("nan"), True, "1e3"])
def test_whole_numbers_refuse_fractions_and_non_numbers(value: object) -> None:
    with pytest.raises(ConfigError, match="batch_rows: expected a whole number"):
        build_config({"batch_rows": value})


@pytest.mark.parametrize(
    ("flags", "key", "says"),
    [({"queue_size": "100", "batch_rows": "200"}, "queue_size", "at least batch_rows"),
     ({"queue_bytes": str(64 * 1024), "max_frame_length": str(128 * 1024)}, "queue_bytes",
      "max_frame_length"),
     ({"tcp": ("127.0.0.1:8600",), "http": "127.0.0.1:8600"}, "http", "given twice")],
)
def test_settings_that_do_not_go_together(flags: dict[str, object], key: str,
                                          says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        load_config(None, {}, flags)
    assert info.value.key == key


@pytest.mark.parametrize("dsn", ["postgresql://u:pw@db.example:5433/logs?sslmode=require",
                                 "host=db.example port=5433 dbname=logs user=u",
                                 "host=a,b port=5432,5433 dbname=logs"])
def test_good_dsns_pass(dsn: str) -> None:
    assert load_config(None, {}, {"dsn": dsn}).dsn == dsn


@pytest.mark.parametrize("dsn", ["host=db password=s3cret port", "hots=db password=s3cret",
                                 "postgresql://u:s3cret@[::1/logs", "host=db port=70000",
                                 "postgresql://u:s3cret@db/logs?nosuch=1",
                                 "host=db password='s3cret"])
def test_bad_dsns_are_refused_before_anything_opens_and_hide_the_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"PGSYSLOG_DSN": dsn})
    assert info.value.key == "dsn"
    assert "s3cret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_mask_secrets_in_free_text() -> None:
    text = ('connect "postgresql://u:p@ss@db/x" failed; password=hunter2 '
            "postgres://v:zz@h/y?password=qq")
    masked = mask_secrets(text)
    assert not any(s in masked for s in ("p@ss", "hunter2", "zz", "qq"))
    assert mask_secrets("missing = after secret", "host=h password secret") == \
        "missing = after ***"


def test_data_dir_problems(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert data_dir_problem(tmp_path / "new" / "deeper") is None
    assert data_dir_problem(tmp_path) is None
    assert "is a file, not a directory" in (data_dir_problem(a_file) or "")
    assert f"{a_file} is a file" in (data_dir_problem(a_file / "sub") or "")


def test_pem_problems() -> None:
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    assert pem_problem("certificate", cert) is None
    assert pem_problem("key", key) is None
    assert pem_problem("key", b"-----BEGIN EC PRIVATE KEY-----\n") is None
    assert "not a PEM certificate" in (pem_problem("certificate", b"\x30\x82\x01") or "")
    assert "not a PEM certificate" in (pem_problem("certificate", key) or "")
    assert "not a PEM private key" in (pem_problem("key", cert) or "")
    assert "passphrase" in (pem_problem("key", b"-----BEGIN ENCRYPTED PRIVATE KEY-----") or "")
    assert "passphrase" in (pem_problem("key", b"-----BEGIN RSA PRIVATE KEY-----\n"
                                                b"Proc-Type: 4,ENCRYPTED\n") or "")


def test_check_startup_loads_good_tls_files(pki: Pki, tmp_path: Path) -> None:
    config = load_config(None, {}, {"tls": ("127.0.0.1:0",), "tls_cert": str(pki.server.cert),
                                    "tls_key": str(pki.server.key),
                                    "tls_client_ca": str(pki.ca.cert),
                                    "data_dir": str(tmp_path / "data")})
    check_startup(config)


def test_check_config_masks_the_dsn_password_and_the_token() -> None:
    result = CliRunner().invoke(cli, ["check-config", "--tcp", "127.0.0.1:0", "--dsn",
                                      "postgresql://u:s3cret@db.example/logs",
                                      "--http-token", "t0ken-value"])
    assert result.exit_code == 0, result.output
    assert "dsn = postgresql://u:***@db.example/logs" in result.output.splitlines()
    assert "http_token = ***" in result.output.splitlines()
    assert "s3cret" not in result.output and "t0ken-value" not in result.output


def test_what_check_config_calls_valid_serve_starts_with(serve: Any, pki: Pki,
                                                         tmp_path: Path) -> None:
    args = ["--tls", "127.0.0.1:0", "--tls-cert", str(pki.server.cert), "--tls-key",
            str(pki.server.key), "--udp", "127.0.0.1:0", "--data-dir", str(tmp_path / "d")]
    checked = CliRunner().invoke(cli, ["check-config", *args])
    assert checked.exit_code == 0, checked.output
    assert checked.output.strip().endswith("configuration is valid")
    server = serve(*args)
    assert server.port("tls") and server.port("udp")


@pytest.mark.parametrize("token", ["", "   "])
def test_a_blank_http_token_is_refused_rather_than_leaving_the_api_open(token: str) -> None:
    with pytest.raises(ConfigError, match="http_token: is empty"):
        build_config({"tcp": ["127.0.0.1:0"], "http_token": token})


@pytest.mark.parametrize(("dsn", "secret"), [
    ("mysql://u:s3cr3tpw@127.0.0.1/db", "s3cr3tpw"),  # a mistyped scheme
    ("postgresql://u:p@ssw0rdX@127.0.0.1:1/db", "ssw0rdX"),  # an unencoded @
])
def test_passwords_are_masked_whatever_the_url_looks_like(dsn: str, secret: str) -> None:
    assert secret not in mask_dsn(dsn)
    # libpq's own errors quote the DSN, or read the end of such a password as a host
    assert secret not in mask_secrets(f'missing "=" after "{dsn}"; cannot connect to '
                                      "ssw0rdX@127.0.0.1:1", dsn)
