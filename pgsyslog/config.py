"""Configuration: one typed object, built once from TOML, environment and flags.

Precedence is defaults < TOML file (``--config``) < ``PGSYSLOG_*`` environment < flags.
Every value is checked here, before any socket opens; a bad value raises
:class:`ConfigError` naming the key. Nothing else in pgsyslog reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

ENV_PREFIX = "PGSYSLOG_"
KIB = 1024
MIB = 1024 * KIB


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SourceZone:
    network: Network
    zone: ZoneInfo

    def __str__(self) -> str:
        return f"{self.network}={self.zone}"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("pgsyslog"))


def machine_zone_name() -> str:
    """The IANA name of this machine's zone, or UTC when it cannot be told."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _zone_or_none(tz):
        return tz
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "/zoneinfo/"
    if marker in target:
        name = target.split(marker, 1)[1]
        if _zone_or_none(name):
            return name
    return "UTC"


def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Config:
    dsn: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    udp: tuple[Endpoint, ...] = ()
    tcp: tuple[Endpoint, ...] = ()
    tls: tuple[Endpoint, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # 8 MiB absorbs about 40,000 typical datagrams while the loop is busy with a batch.
    udp_receive_buffer: int = 8 * MIB
    max_frame_length: int = 64 * KIB
    # 100,000 records of ~1 KiB bound the queue to ~100 MiB of memory.
    queue_size: int = 100_000
    # ... and at most this many bytes of records, whichever bound is reached first.
    queue_bytes: int = 256 * MIB
    batch_rows: int = 2_000
    batch_age_ms: int = 200
    # Two connections COPY at once: while one waits for PostgreSQL to index its batch
    # (the full-text index makes that the slow part), the other sends the next one.
    writers: int = 2
    partitions_ahead: int = 3
    retention_days: int = 30
    maintenance_interval: float = 3600.0
    default_tz: str = field(default_factory=machine_zone_name)
    source_timezones: tuple[SourceZone, ...] = ()
    shutdown_timeout: float = 30.0
    # A database that accepts connections and then never answers is taken for away
    # within these: connect, each statement (enforced by the client too), keepalives.
    db_connect_timeout: float = 5.0
    db_statement_timeout: float = 30.0
    db_keepalive_idle: float = 10.0
    # Limits against broken or hostile senders.
    max_connections: int = 1000  # TCP and TLS together; more are refused
    max_connections_per_source: int = 100  # one address cannot take every slot
    tls_handshake_timeout: float = 10.0  # a pending handshake holds a slot this long at most
    idle_timeout: float = 86400.0  # close a connection silent this long; 0 never
    udp_allow: tuple[Network, ...] = ()  # allowed source networks; empty: everyone
    tcp_allow: tuple[Network, ...] = ()
    tls_allow: tuple[Network, ...] = ()
    # Batches the database cannot take wait on disk under data_dir/spool, up to this size.
    spool_max_bytes: int = 1024 * MIB
    spool_fsync: bool = True
    # The HTTP API (health, metrics, search, live tail); None turns it off.
    http: Endpoint | None = field(default_factory=lambda: Endpoint("127.0.0.1", 8514))
    http_token: str | None = None
    http_db_connections: int = 4  # the API's pool; a request finding none free gets 503
    http_max_response_bytes: int = 16 * MIB  # a larger answer is cut at a row boundary
    http_stream_timeout: float = 30.0  # a live-tail client that reads nothing this long goes
    log_level: str = "INFO"

    @property
    def listeners(self) -> list[tuple[Literal["udp", "tcp", "tls"], Endpoint]]:
        udp: list[tuple[Literal["udp", "tcp", "tls"], Endpoint]] = [("udp", e) for e in self.udp]
        return udp + [("tcp", e) for e in self.tcp] + [("tls", e) for e in self.tls]

    @property
    def default_zone(self) -> ZoneInfo:
        return ZoneInfo(self.default_tz)


# ----------------------------------------------------------------------------- secrets

MASK = "***"
SECRET_SETTINGS = ("http_token",)  # shown as MASK; the DSN is shown with mask_dsn
_SECRET_KEYS = r"(?:password|sslpassword)"
# keyword=value form: the value is 'quoted, with \\ escapes' or runs to the next space.
_KEYWORD_SECRET_RE = re.compile(
    rf"(?<![\w.])({_SECRET_KEYS}\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)
_QUERY_SECRET_RE = re.compile(rf"([?&]{_SECRET_KEYS}=)[^&#]*", re.IGNORECASE)
_URL_RE = re.compile(r"(postgres(?:ql)?://)(.*)", re.IGNORECASE | re.DOTALL)


def mask_dsn(dsn: str) -> str:
    """The DSN with every password replaced by ``***``, for logs, banners and errors.

    URL form: ``postgresql://u:***@h/db`` (and ``?password=***``); keyword form:
    ``host=h password=***``. Pure, and never raises, even on a DSN libpq would refuse.
    """
    url = _URL_RE.fullmatch(dsn.strip())
    if url is None:
        return _KEYWORD_SECRET_RE.sub(rf"\g<1>{MASK}", dsn)
    scheme, rest = url.groups()
    query_start = rest.find("?") if "?" in rest else len(rest)
    at = rest.rfind("@", 0, query_start)  # the last: a password may hold an unencoded @
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        if colon:
            rest = f"{user}:{MASK}{rest[at:]}"
    return scheme + _QUERY_SECRET_RE.sub(rf"\g<1>{MASK}", rest)


def redacted(config: Config) -> dict[str, str]:
    """Every setting as text for people to read: the DSN masked, secrets as ``***``."""
    shown = {}
    for setting in fields(config):
        value = getattr(config, setting.name)
        if value is not None and setting.name in SECRET_SETTINGS:
            text = MASK
        elif setting.name == "dsn" and value is not None:
            text = mask_dsn(value)
        elif isinstance(value, tuple):
            text = ", ".join(str(v) for v in value) or "-"
        else:
            text = str(value)
        shown[setting.name] = text
    return shown


# ----------------------------------------------------------------------------- converters


def parse_endpoint(text: str) -> Endpoint:
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: write IPv6 addresses in brackets, as [::1]:5514")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"{text!r}: port must be 0-65535")
    return Endpoint(host, number)


def _optional_endpoint(value: Any) -> Endpoint | None:
    text = str(value).strip()
    return None if text.lower() in ("", "off", "none") else parse_endpoint(text)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError(f"expected a list, got {value!r}")


def _endpoints(value: Any) -> tuple[Endpoint, ...]:
    return tuple(parse_endpoint(str(item)) for item in _as_list(value))


def _int_at_least(minimum: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        return number

    return convert


def _seconds(value: Any, *, zero_allowed: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if number < 0 or (number == 0 and not zero_allowed):
        raise ValueError(f"must be {'0 (off) or more' if zero_allowed else 'above 0'}, "
                         f"got {number}")
    return number


def _positive_float(value: Any) -> float:
    return _seconds(value)


def _seconds_or_zero(value: Any) -> float:
    return _seconds(value, zero_allowed=True)


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a network such as 10.1.0.0/16") from None


def _networks(value: Any) -> tuple[Network, ...]:
    return tuple(_network(str(item)) for item in _as_list(value))


def _retention(value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() == "forever":
        return 0
    return _int_at_least(0)(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _zone_name(value: Any) -> str:
    name = str(value).strip()
    if _zone_or_none(name) is None:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)")
    return name


def _source_timezones(value: Any) -> tuple[SourceZone, ...]:
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for item in _as_list(value):
            cidr, sep, zone = str(item).partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not CIDR=ZONE")
            pairs.append((cidr, zone))
    result = []
    for cidr, zone in pairs:
        result.append(SourceZone(_network(str(cidr)), ZoneInfo(_zone_name(zone))))
    # Most specific network first, so that the first match is the best one.
    return tuple(sorted(result, key=lambda s: -s.network.prefixlen))


def _optional_path(value: Any) -> Path | None:
    text = str(value).strip()
    return Path(text).expanduser() if text else None


def _optional_str(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _log_level(value: Any) -> str:
    level = str(value).strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "dsn": _optional_str,
    "data_dir": lambda v: Path(str(v)).expanduser(),
    "udp": _endpoints,
    "tcp": _endpoints,
    "tls": _endpoints,
    "tls_cert": _optional_path,
    "tls_key": _optional_path,
    "tls_client_ca": _optional_path,
    "udp_receive_buffer": _int_at_least(4 * KIB),
    "max_frame_length": _int_at_least(480),  # RFC 5426/6587 minimum a receiver must take
    "queue_size": _int_at_least(1),
    "queue_bytes": _int_at_least(64 * KIB),
    "batch_rows": _int_at_least(1),
    "batch_age_ms": _int_at_least(1),
    "writers": _int_at_least(1),
    "partitions_ahead": _int_at_least(0),
    "retention_days": _retention,
    "maintenance_interval": _positive_float,
    "default_tz": _zone_name,
    "source_timezones": _source_timezones,
    "shutdown_timeout": _positive_float,
    "db_connect_timeout": _positive_float,
    "db_statement_timeout": _positive_float,
    "db_keepalive_idle": _positive_float,
    "max_connections": _int_at_least(1),
    "max_connections_per_source": _int_at_least(1),
    "tls_handshake_timeout": _positive_float,
    "idle_timeout": _seconds_or_zero,
    "udp_allow": _networks,
    "tcp_allow": _networks,
    "tls_allow": _networks,
    "spool_max_bytes": _int_at_least(0),
    "spool_fsync": _boolean,
    "http": _optional_endpoint,
    "http_token": _optional_str,
    "http_db_connections": _int_at_least(1),
    "http_max_response_bytes": _int_at_least(64 * KIB),
    "http_stream_timeout": _positive_float,
    "log_level": _log_level,
}
assert set(CONVERTERS) == {f.name for f in fields(Config)}

# ----------------------------------------------------------------------------- loading


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", f"{path} is not valid TOML: {e}") from None


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for key in CONVERTERS:
        name = ENV_PREFIX + key.upper()
        if name in environ:
            values[key] = environ[name]
    return values


def build_config(*layers: Mapping[str, Any]) -> Config:
    """Merge the layers (later wins), convert every value, check the whole."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in CONVERTERS:
                raise ConfigError(key, "unknown setting")
            if value is not None:
                merged[key] = value
    converted = {}
    for key, value in merged.items():
        try:
            converted[key] = CONVERTERS[key](value)
        except ValueError as e:
            raise ConfigError(key, str(e)) from None
    config = Config(**converted)
    check_consistency(config)
    return config


def check_consistency(config: Config) -> None:
    if config.tls and not (config.tls_cert and config.tls_key):
        raise ConfigError("tls", "a TLS listener needs tls_cert and tls_key")
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(config, key)
        if path is not None and not path.is_file():
            raise ConfigError(key, f"no such file: {path}")
    seen: set[tuple[str, Endpoint]] = set()
    for transport, endpoint in config.listeners:
        kind = "udp" if transport == "udp" else "tcp"
        if endpoint.port and (kind, endpoint) in seen:
            raise ConfigError(transport, f"{endpoint} is given twice")
        seen.add((kind, endpoint))


def load_config(
    config_file: Path | None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    file_values = read_toml(config_file) if config_file else {}
    env_values = from_environment(os.environ if environ is None else environ)
    return build_config(file_values, env_values, flags or {})
