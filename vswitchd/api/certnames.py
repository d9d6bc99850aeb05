"""Client certificate names as `tcp.roles` writes them and as gRPC's TLS auth context gives them:

    CN=name            the subject's common name
    DNS:name           a DNS subjectAltName (compared case-insensitively, as DNS is)
    URI:uri            a URI subjectAltName, e.g. URI:spiffe://example.org/ns/ctl
    IP:address         an IP subjectAltName (IPv4 or IPv6, compared as addresses)

Names match exactly: no wildcards.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

FORMS = "CN=name, DNS:name, URI:uri, IP:address"

# auth context property (grpc/grpc_security_constants.h) -> our prefix
_PROPERTIES = (("x509_common_name", "CN="), ("peer_dns", "DNS:"), ("peer_uri", "URI:"),
               ("peer_ip", "IP:"))


def parse(name: str) -> str:
    """NAME in its canonical form; ValueError naming what is wrong."""
    for prefix in ("CN=", "DNS:", "URI:", "IP:"):
        if name.startswith(prefix):
            value = name[len(prefix):]
            break
    else:
        raise ValueError(f"not one of {FORMS}")
    if not value or value != value.strip():
        raise ValueError(f"has no name after {prefix!r} or blanks around it")
    if prefix == "DNS:":
        value = value.lower()
    elif prefix == "IP:":
        try:
            value = str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
    elif prefix == "URI:" and ":" not in value:
        raise ValueError(f"{value!r} is not a URI (scheme:...)")
    return prefix + value


def of_peer(auth_context: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The canonical names of a TLS peer's certificate (none without one)."""
    names = []
    for prop, prefix in _PROPERTIES:
        for raw in auth_context.get(prop, ()):
            try:
                names.append(parse(prefix + raw.decode("utf-8", "replace")))
            except ValueError:
                continue  # a name no entry can match
    return names


def subject(auth_context: Mapping[str, Sequence[bytes]]) -> str:
    """The certificate's subject for the audit log (its CN when gRPC gives no subject)."""
    for prop, prefix in (("x509_subject", ""), ("x509_common_name", "CN=")):
        values = auth_context.get(prop)
        if values:
            return prefix + values[0].decode("utf-8", "replace")
    return "no certificate"
