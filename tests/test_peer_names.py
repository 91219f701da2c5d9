"""tls_permitted_peers: certificate names against patterns, label by label as rsyslog."""

from __future__ import annotations

from typing import Any

import pytest

from pgsyslog.config import ConfigError, build_config
from pgsyslog.receiver.peer_names import certificate_names, name_matches, peer_name


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("web1.example.net", "web1.example.net", True),
    ("web1.example.net", "WEB1.Example.NET", True),  # DNS names have no case
    ("web1.example.net", "web2.example.net", False),
    ("*.example.net", "web1.example.net", True),
    ("*.example.net", "example.net", False),  # a * is one label, never none
    ("*.example.net", "a.b.example.net", False),  # ... nor two
    ("*.example.net", "web1.example.org", False),
    ("*.example.net", "web1.example.net.evil.org", False),
    ("web*.example.net", "web17.example.net", True),  # rsyslog: a label's start
    ("web*.example.net", "db1.example.net", False),
    ("*-fw.example.net", "edge-fw.example.net", True),  # ... or its end
    ("*-fw.example.net", "edge-gw.example.net", False),
    ("host.*.example.net", "host.dc1.example.net", True),  # any label may be a *
    ("*", "localhost", True),
    ("*", "a.b", False),
    ("example.net.", "example.net", False),  # a trailing dot is an empty label (rsyslog)
])
def test_name_matches(pattern: str, name: str, matches: bool) -> None:
    assert name_matches(pattern, name) is matches


def cert(*, cn: str | None = None, dns: tuple[str, ...] = (),
         ips: tuple[str, ...] = ()) -> dict[str, Any]:
    """A certificate as ssl.SSLObject.getpeercert() gives it."""
    subject = ((("organizationName", "Example"),),)
    if cn is not None:
        subject += ((("commonName", cn),),)
    san = tuple(("DNS", d) for d in dns) + tuple(("IP Address", i) for i in ips)
    return {"subject": subject, **({"subjectAltName": san} if san else {})}


@pytest.mark.parametrize(("certificate", "names"), [
    (cert(cn="cn.example.net", dns=("a.example.net", "b.example.net")),
     ["a.example.net", "b.example.net"]),
    (cert(cn="cn.example.net"), ["cn.example.net"]),  # no SAN DNS: the CN stands in
    (cert(cn="cn.example.net", ips=("10.0.0.5",)), ["cn.example.net"]),  # an IP is no name
    (cert(), []),
])
def test_certificate_names_are_the_san_dns_names_or_else_the_cn(
        certificate: dict[str, Any], names: list[str]) -> None:
    assert certificate_names(certificate) == names


@pytest.mark.parametrize(("certificate", "permitted", "expected"), [
    # The first of the certificate's names that a pattern permits is the one stored.
    (cert(dns=("x.other.org", "web1.example.net", "web2.example.net")), ("*.example.net",),
     (True, "web1.example.net")),
    (cert(dns=("web1.example.net",)), ("db*.example.net", "web1.example.net"),
     (True, "web1.example.net")),
    (cert(cn="web1.example.net"), ("*.example.net",), (True, "web1.example.net")),
    # With a SAN DNS name the CN is not looked at: a CA's subject does not widen it.
    (cert(cn="web1.example.net", dns=("x.other.org",)), ("*.example.net",), (False, None)),
    (cert(dns=("x.other.org",)), ("*.example.net",), (False, None)),
    (cert(), ("*.example.net",), (False, None)),
    # No permitted list: every certificate of the CA, stored under its first name.
    (cert(cn="cn.example.net", dns=("a.example.net", "b.example.net")), (),
     (True, "a.example.net")),
    (cert(cn="cn.example.net"), (), (True, "cn.example.net")),
    (cert(), (), (True, None)),
])
def test_peer_name(certificate: dict[str, Any], permitted: tuple[str, ...],
                   expected: tuple[bool, str | None]) -> None:
    assert peer_name(certificate, permitted) == expected


def test_permitted_peers_need_a_client_ca() -> None:
    with pytest.raises(ConfigError) as refused:
        build_config({"tls_permitted_peers": ["*.example.net"]})
    assert str(refused.value) == ("tls_permitted_peers: names the client certificates to let "
                                  "in, which needs tls_client_ca (the CA that signs them)")
    config = build_config({"tls_permitted_peers": "*.Example.net, web*.example.org",
                           "tls_client_ca": "/etc/pgsyslog/ca.crt"})
    assert config.tls_permitted_peers == ("*.example.net", "web*.example.org")


@pytest.mark.parametrize("pattern", ["a*b.example.net", "**.example.net", "web..example.net",
                                     "-web.example.net", "web 1.example.net"])
def test_patterns_rsyslog_would_refuse_are_config_errors(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"^tls_permitted_peers: .* is not a host name or "
                                          r"a pattern such as \*\.example\.net"):
        build_config({"tls_permitted_peers": [pattern], "tls_client_ca": "/ca.crt"})


def two_cns(first: str, second: str) -> dict[str, Any]:
    return {"subject": ((("commonName", first),), (("commonName", second),))}


@pytest.mark.parametrize("certificate", [
    cert(cn="\u212aiosk.example.net"),  # a Kelvin sign, which str.lower() makes a k
    cert(dns=("\u212aiosk.example.net",)),
    cert(dns=("kİosk.example.net",)),  # a dotted capital I
    cert(dns=(".example.net",)),  # an empty first label against *.example.net
    cert(dns=("kiosk..example.net",)),
    two_cns("evil.example.org", "kiosk.example.net"),  # which CN would it be?
])
def test_names_that_only_look_alike_are_no_names(certificate: dict[str, Any]) -> None:
    assert peer_name(certificate, ("kiosk.example.net", "*.example.net")) == (False, None)
    assert peer_name(certificate, ())[1] is None
