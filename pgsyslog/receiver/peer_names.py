"""Which name a client certificate is permitted under (tls_permitted_peers). Pure.

A pattern is matched label by label, as rsyslog's x509/name mode does
(runtime/net.c, PermittedPeerWildcardMatch): the name and the pattern must have the same
number of dot-separated labels, and each label of the pattern is either the label itself,
``*`` (any one label: ``*.example.net`` matches ``web1.example.net`` but neither
``example.net`` nor ``a.b.example.net``), ``*suffix`` or ``prefix*`` (a label ending or
starting so). Unlike rsyslog, names are compared without regard to case (DNS names are
case-insensitive, RFC 4343).

The names of a certificate are its SAN DNS names; its subject CN counts only when it has
none (RFC 6125 section 6.4.4), and only when the subject holds exactly one CN. rsyslog
tries the CN as well when no SAN name matched; pgsyslog does not, so that a certificate
issued for ``web1.example.net`` cannot pass as any name its CA happened to write in the
subject. A name counts only when it is ASCII (internationalised names are written as
``xn--`` A-labels in certificates) with no empty label: Unicode case folding would let
``\u212aiosk.example.net`` (a Kelvin sign) pass for ``kiosk.example.net``, and an empty
label would let ``.example.net`` match ``*.example.net``
(tests/test_peer_names.py::test_names_that_only_look_alike_are_no_names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def label_matches(pattern: str, label: str) -> bool:
    """One label of a pattern against one label of a name (both lower case)."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return label.endswith(pattern[1:])
    if pattern.endswith("*"):
        return label.startswith(pattern[:-1])
    return pattern == label


def name_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern``, label by label, in any case."""
    pattern_labels = pattern.lower().split(".")
    name_labels = name.lower().split(".")
    if len(pattern_labels) != len(name_labels):
        return False
    return all(label_matches(p, n) for p, n in zip(pattern_labels, name_labels, strict=True))


def usable_name(name: str) -> bool:
    return name.isascii() and all(name.split("."))


def certificate_names(cert: Mapping[str, Any]) -> list[str]:
    """The names a certificate (as ``SSLObject.getpeercert()`` gives it) stands for:
    its SAN DNS names, or its subject CN when it has no SAN DNS name and one CN."""
    dns = [str(value) for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if not dns:
        cns = [str(value) for rdn in cert.get("subject", ()) for key, value in rdn
               if key == "commonName"]
        dns = cns if len(cns) == 1 else []
    return [name for name in dns if usable_name(name)]


def permitted_name(names: Iterable[str], permitted: Sequence[str]) -> str | None:
    """The first of the certificate's names that a permitted pattern matches, or None."""
    for name in names:
        if any(name_matches(pattern, name) for pattern in permitted):
            return name
    return None


def peer_name(cert: Mapping[str, Any] | None, permitted: Sequence[str]) -> tuple[bool, str | None]:
    """(allowed, the name to store) for a client's certificate.

    Without a permitted list every certificate the CA signed is allowed, under its first
    name; with one, only a certificate one of whose names matches, under that name.
    """
    names = certificate_names(cert) if cert else []
    if not permitted:
        return True, names[0] if names else None
    name = permitted_name(names, permitted)
    return name is not None, name
