"""Configuration: one typed object, built once from TOML, environment and flags.

Precedence is defaults < TOML file (``--config``) < ``PGSYSLOG_*`` environment < flags.
Every value is checked here, before any socket opens; a bad value raises
:class:`ConfigError` naming the key. Nothing else in pgsyslog reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

ENV_PREFIX = "PGSYSLOG_"
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB
# The writer reserves a block of this many ids per batch (storage.schema.BLOCK_IDS).
MAX_BATCH_ROWS = 65_536
MAX_SECONDS = 86_400.0  # every timeout and interval: a day at most
MAX_RETENTION_DAYS = 36_500  # a hundred years; dates further back do not exist


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
ListenerKind = Literal["udp", "tcp", "tls", "relp", "relp_tls"]


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
    # RELP (plain and over TLS): a message is acknowledged once it is stored or spooled.
    relp: tuple[Endpoint, ...] = ()
    relp_tls: tuple[Endpoint, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Names a client certificate must carry (SAN DNS or CN; "*.example.net" allowed);
    # empty: any certificate the client CA signed.
    tls_permitted_peers: tuple[str, ...] = ()
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    tls_ciphers: str | None = None  # an OpenSSL cipher string for TLS 1.2; None: the default
    # 8 MiB absorbs about 40,000 typical datagrams while the loop is busy with a batch.
    udp_receive_buffer: int = 8 * MIB
    max_frame_length: int = 64 * KIB
    # 100,000 records of ~1 KiB bound the queue to ~100 MiB of memory.
    queue_size: int = 100_000
    # ... and at most this many bytes of records, whichever bound is reached first.
    queue_bytes: int = 256 * MIB
    batch_rows: int = 2_000
    batch_age_ms: int = 200
    # pgsyslog import: lines per transaction. Larger than serve's batches, which are
    # sized for latency; an import has none to keep.
    import_batch_rows: int = 10_000
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
    # Both given: the HTTP listener (API, console, metrics, health) speaks HTTPS only.
    http_tls_cert: Path | None = None
    http_tls_key: Path | None = None
    http_db_connections: int = 4  # the API's pool; a request finding none free gets 503
    http_max_response_bytes: int = 16 * MIB  # a larger answer is cut at a row boundary
    http_stream_timeout: float = 30.0  # a live-tail client that reads nothing this long goes
    log_level: str = "INFO"
    # Alert rules ([[alert]] tables), evaluated every alert_interval seconds.
    alert_interval: float = 30.0
    alert: tuple[Any, ...] = ()  # pgsyslog.alerts.rules.AlertRule, checked at load

    @property
    def listeners(self) -> list[tuple[ListenerKind, Endpoint]]:
        kinds: tuple[tuple[ListenerKind, tuple[Endpoint, ...]], ...] = (
            ("udp", self.udp), ("tcp", self.tcp), ("tls", self.tls),
            ("relp", self.relp), ("relp_tls", self.relp_tls))
        return [(kind, endpoint) for kind, endpoints in kinds for endpoint in endpoints]

    @property
    def uses_tls(self) -> bool:
        """Whether a syslog listener needs tls_cert and tls_key."""
        return bool(self.tls or self.relp_tls)

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
# Any scheme: a mistyped one (mysql://) is refused by libpq, quoting the DSN, password and all.
_URL_RE = re.compile(r"([a-z][a-z0-9+.-]*://)(.*)", re.IGNORECASE | re.DOTALL)


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
        user, colon, password = rest[:at].partition(":")
        if colon and password:
            rest = f"{user}:{MASK}{rest[at:]}"
    return scheme + _QUERY_SECRET_RE.sub(rf"\g<1>{MASK}", rest)


_LOOSE_SECRET_RE = re.compile(rf"{_SECRET_KEYS}\s*=?\s*('(?:[^'\\]|\\.)*'?|[^\s&#]+)",
                              re.IGNORECASE)


def dsn_secrets(dsn: str) -> list[str]:
    """The passwords in a DSN, read leniently (the DSN may be malformed), longest first."""
    found = [m.group(1).strip("'") for m in _LOOSE_SECRET_RE.finditer(dsn)]
    url = _URL_RE.fullmatch(dsn.strip())
    if url is not None:
        rest = url.group(2)
        at = rest.rfind("@", 0, rest.find("?") if "?" in rest else len(rest))
        password = rest[:at].partition(":")[2] if at >= 0 else ""
        found += [password, urllib.parse.unquote(password)]
        # libpq ends the password at its first unencoded @ and reads the rest as the host
        # name, which then shows in its errors.
        found += [piece for piece in password.split("@") if len(piece) >= 3]
    return sorted({f for f in found if f}, key=len, reverse=True)


_URL_PASSWORD_IN_TEXT_RE = re.compile(r"([a-z][a-z0-9+.-]*://[^\s:/@]*:)\S*@", re.IGNORECASE)


def mask_secrets(text: str, dsn: str | None = None) -> str:
    """Free text (an error message, say) with the DSN's passwords, and any password of a
    DSN written in it, replaced by ``***``."""
    for secret in dsn_secrets(dsn or ""):
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD_IN_TEXT_RE.sub(rf"\g<1>{MASK}@", text)
    text = _QUERY_SECRET_RE.sub(rf"\g<1>{MASK}", text)
    return _KEYWORD_SECRET_RE.sub(rf"\g<1>{MASK}", text)


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
    if not sep or not host or not (port.isascii() and port.isdigit()):
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


def _whole(minimum: int, maximum: int) -> Callable[[Any], int]:
    """A converter to a whole number within minimum..maximum."""

    def convert(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise ValueError(f"must be {minimum:,} to {maximum:,}, got {number:,}")
        return number

    return convert


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)", re.IGNORECASE)
_DURATION_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any, *, zero_allowed: bool = False) -> float:
    """A number of seconds, or a duration with its unit: ``30s``, ``5m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    match = _DURATION_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    try:
        number = (float(match.group(1)) * _DURATION_UNIT_S[match.group(2).lower()] if match
                  else float(value))
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds or a duration such as 30s or 5m, "
                         f"got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number of seconds, got {value!r}")
    if number < 0 or (number == 0 and not zero_allowed):
        raise ValueError(f"must be {'0 (off) or more' if zero_allowed else 'above 0'}, "
                         f"got {number:g}")
    if number > MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS:g} (a day), got {number:g}")
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
    return _whole(0, MAX_RETENTION_DAYS)(value)


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


def _token(value: Any) -> str:
    """A token that is given must be one: a blank one would leave the API open unsaid."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if not value.strip():
        raise ValueError("is empty: set a token, or leave the setting out for an API "
                         "without one")
    return value.strip()


def _dsn(value: Any) -> str | None:
    """A libpq connection string (URL or keyword form), checked before anything opens."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    text = _optional_str(value)
    if text is None:
        return None
    try:
        params = conninfo_to_dict(text)
    except ProgrammingError as e:
        reason = mask_secrets(" ".join(str(e).split()), text)
        raise ValueError(f"not a PostgreSQL connection string ({reason}); write "
                         "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or "
                         "'host=HOST port=PORT dbname=DATABASE user=USER'") from None
    for port in str(params.get("port") or "5432").split(","):
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"port {port!r} is not a port number (1-65535)")
    return text


def _log_level(value: Any) -> str:
    level = str(value).strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level


# A label of a host name, or of a pattern as rsyslog's PermittedPeer takes them: "*" for
# any one label, "*suffix" or "prefix*" (pgsyslog.receiver.peer_names).
_PEER_LABEL = (r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
               r"|\*[A-Za-z0-9_-]*|[A-Za-z0-9_][A-Za-z0-9_-]*\*)")
_PEER_NAME_RE = re.compile(rf"{_PEER_LABEL}(?:\.{_PEER_LABEL})*\.?")


def _peer_names(value: Any) -> tuple[str, ...]:
    names = []
    for item in _as_list(value):
        name = str(item).strip().lower()
        if not _PEER_NAME_RE.fullmatch(name):
            raise ValueError(f"{item!r} is not a host name or a pattern such as "
                             "*.example.net (a * stands for one whole label, or its start "
                             "or end: web*.example.net)")
        names.append(name)
    return tuple(names)


def _tls_version(value: Any) -> str:
    text = str(value).strip()
    if text not in {"1.2", "1.3"}:
        raise ValueError(f"expected 1.2 or 1.3, got {value!r}")
    return text


def _alert_rules(value: Any) -> tuple[Any, ...]:
    from pgsyslog.alerts.rules import parse_rules

    rules: tuple[Any, ...] = parse_rules(value)
    return rules


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "dsn": _dsn,
    "data_dir": lambda v: Path(str(v)).expanduser(),
    "udp": _endpoints,
    "tcp": _endpoints,
    "tls": _endpoints,
    "relp": _endpoints,
    "relp_tls": _endpoints,
    "tls_cert": _optional_path,
    "tls_key": _optional_path,
    "tls_client_ca": _optional_path,
    "tls_permitted_peers": _peer_names,
    "tls_min_version": _tls_version,
    "tls_ciphers": _optional_str,
    "udp_receive_buffer": _whole(4 * KIB, GIB),  # the kernel caps it at rmem_max anyway
    "max_frame_length": _whole(480, 64 * MIB),  # 480: RFC 5426/6587 minimum a receiver takes
    "queue_size": _whole(1, 10_000_000),
    "queue_bytes": _whole(64 * KIB, 64 * GIB),
    "batch_rows": _whole(1, MAX_BATCH_ROWS),
    "batch_age_ms": _whole(1, 60_000),
    "import_batch_rows": _whole(1, MAX_BATCH_ROWS),
    "writers": _whole(1, 64),
    "partitions_ahead": _whole(0, 366),
    "retention_days": _retention,
    "maintenance_interval": _positive_float,
    "default_tz": _zone_name,
    "source_timezones": _source_timezones,
    "shutdown_timeout": _positive_float,
    "db_connect_timeout": _positive_float,
    "db_statement_timeout": _positive_float,
    "db_keepalive_idle": _positive_float,
    "max_connections": _whole(1, 100_000),
    "max_connections_per_source": _whole(1, 100_000),
    "tls_handshake_timeout": _positive_float,
    "idle_timeout": _seconds_or_zero,
    "udp_allow": _networks,
    "tcp_allow": _networks,
    "tls_allow": _networks,
    "spool_max_bytes": _whole(0, 16 * TIB),
    "spool_fsync": _boolean,
    "http": _optional_endpoint,
    "http_token": _token,
    "http_tls_cert": _optional_path,
    "http_tls_key": _optional_path,
    "http_db_connections": _whole(1, 64),
    "http_max_response_bytes": _whole(64 * KIB, GIB),
    "http_stream_timeout": _positive_float,
    "log_level": _log_level,
    "alert_interval": _positive_float,
    "alert": _alert_rules,
}
assert set(CONVERTERS) == {f.name for f in fields(Config)}

# ----------------------------------------------------------------------------- loading


def read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("config", f"{path} does not exist: give --config (or "
                          "PGSYSLOG_CONFIG) a TOML file that does") from None
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError("config", f"{path} is not UTF-8 text (byte {data[e.start]:#04x} on "
                          f"line {line}): save it as UTF-8") from None
    try:
        return tomllib.loads(text)
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
        except (ValueError, TypeError) as e:
            raise ConfigError(key, str(e)) from None
    config = Config(**converted)
    check_consistency(config)
    return config


def check_consistency(config: Config) -> None:
    """Settings that are each fine but do not go together (pure: looks at no file)."""
    if config.uses_tls and not (config.tls_cert and config.tls_key):
        kind = "tls" if config.tls else "relp_tls"
        raise ConfigError(kind, "a TLS listener needs tls_cert and tls_key")
    if config.tls_permitted_peers and config.tls_client_ca is None:
        raise ConfigError("tls_permitted_peers", "names the client certificates to let in, "
                          "which needs tls_client_ca (the CA that signs them)")
    if (config.http_tls_cert is None) != (config.http_tls_key is None):
        missing = "http_tls_key" if config.http_tls_key is None else "http_tls_cert"
        raise ConfigError(missing, "HTTPS needs both http_tls_cert and http_tls_key")
    if config.queue_size < config.batch_rows:
        raise ConfigError("queue_size", f"must be at least batch_rows ({config.batch_rows:,}), "
                          f"got {config.queue_size:,}: a batch is taken from the queue")
    if config.queue_bytes < config.max_frame_length:
        raise ConfigError("queue_bytes", f"must hold one message of max_frame_length "
                          f"({config.max_frame_length:,} bytes), got {config.queue_bytes:,}")
    seen: set[tuple[str, Endpoint]] = set()
    http = [("http", config.http)] if config.http is not None else []
    for transport, endpoint in [*config.listeners, *http]:
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


# ----------------------------------------------------------------------------- before serving


def check_startup(config: Config) -> None:
    """What serve needs besides valid settings, checked before any socket opens: a
    listener, TLS files that load, a usable data directory. Raises ConfigError.

    ``pgsyslog check-config`` runs this too, so that "valid" there means serve starts
    (short of a port that is taken or privileged: only binding can tell).
    """
    if not config.listeners:
        raise ConfigError("listeners", "give at least one listener: --udp, --tcp, --tls, "
                          "--relp or --relp-tls HOST:PORT (udp, tcp, tls, relp or relp_tls "
                          "in the config file)")
    if config.uses_tls:
        check_tls_files(config)
    if config.http is not None and config.http_tls_cert is not None:
        check_https_files(config)
    if config.tls_ciphers is not None:
        check_ciphers(config.tls_ciphers)
    if config.dsn is None or config.spool_max_bytes > 0:
        problem = data_dir_problem(config.data_dir)
        if problem:
            raise ConfigError("data_dir", problem)


def data_dir_problem(path: Path) -> str | None:
    """Why pgsyslog cannot keep its files in ``path`` (None: it can, or can create it)."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a directory: give --data-dir a directory"
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))
    if not os.path.isdir(existing):
        return f"{path} cannot be created: {existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "is not writable" if existing == path else f"cannot be created in {existing}"
        return f"{path} {verb} for this user: give --data-dir a directory it may write"
    return None


PEM_READ_LIMIT = 1 * MIB  # a certificate chain or key is a few KiB; read no more than this
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")


def pem_problem(kind: Literal["certificate", "key"], data: bytes) -> str | None:
    """Why ``data`` is not a usable PEM certificate or private key (pure)."""
    if kind == "certificate":
        if _PEM_CERT not in data:
            return ("is not a PEM certificate (no -----BEGIN CERTIFICATE----- line); convert "
                    "a DER file with: openssl x509 -inform der -in FILE -out FILE.pem")
        return None
    key = _PEM_KEY_RE.search(data)
    if key is None:
        return ("is not a PEM private key (no -----BEGIN PRIVATE KEY----- line); convert a "
                "DER file with: openssl pkey -inform der -in FILE -out FILE.pem")
    if b"ENCRYPTED" in key.group(1) or b"Proc-Type: 4,ENCRYPTED" in data:
        return ("is protected by a passphrase, which pgsyslog cannot ask for: write it out "
                "without one: openssl pkey -in FILE -out FILE.plain")
    return None


def _read_pem(key: str, path: Path, kind: Literal["certificate", "key"]) -> None:
    try:
        with path.open("rb") as fh:
            data = fh.read(PEM_READ_LIMIT)
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror or e}") from None
    problem = pem_problem(kind, data)
    if problem:
        raise ConfigError(key, f"{path} {problem}")


def check_tls_files(config: Config) -> None:
    """Load the certificate, key and client CA into a real TLS context, as serve does."""
    import ssl

    from pgsyslog.receiver.tls import context_from_config

    cert, key, client_ca = config.tls_cert, config.tls_key, config.tls_client_ca
    assert cert is not None and key is not None  # check_consistency saw to that
    _read_pem("tls_cert", cert, "certificate")
    _read_pem("tls_key", key, "key")
    if client_ca is not None:
        _read_pem("tls_client_ca", client_ca, "certificate")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError("tls_key", f"{key} is not the key of the certificate {cert}: "
                              "give the private key the certificate was made for") from None
        raise ConfigError("tls_cert", f"cannot load {cert} with the key {key} "
                          f"({e.reason or e}): check both with openssl x509 -in CERT -noout "
                          "and openssl pkey -in KEY -noout") from None
    _serve_would_load(context_from_config, config)


def check_https_files(config: Config) -> None:
    """Load http_tls_cert and http_tls_key into the HTTPS context serve makes."""
    from pgsyslog.receiver.tls import https_context_from_config

    _serve_would_load(https_context_from_config, config)


def check_ciphers(ciphers: str) -> None:
    """tls_ciphers must select a cipher (checked without any file)."""
    import ssl

    from pgsyslog.receiver.tls import TlsContextError, set_ciphers

    try:
        set_ciphers(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ciphers)
    except TlsContextError as e:
        raise ConfigError("tls_ciphers", str(e).removeprefix("tls_ciphers: ")) from None


def _serve_would_load(make: Callable[[Config], object], config: Config) -> None:
    from pgsyslog.receiver.tls import TlsContextError

    try:
        make(config)
    except TlsContextError as e:
        text = " ".join(str(e).split())
        raise ConfigError(e.setting, text.removeprefix(f"{e.setting}: ")) from None
    except Exception as e:  # whatever serve's own loading refuses, serve would stop on
        raise ConfigError("tls", " ".join(str(e).split()) or type(e).__name__) from None
