"""Where a process may connect: one policy for every request made on someone else's word.

A destination is checked *after* DNS resolution, on the very addresses the socket is
then connected to (no second lookup a rebinding name could answer differently), and every
redirect hop and token-realm request is a new connection through the same check.

Two kinds of destination, two defaults:

- ``CALLERS``: addresses a caller names (a reference given to ``POST
  /api/v1/hooks/validate``, the registries, realms and redirects a remote pull then
  follows, mirrors' upstreams). Only globally routable addresses: loopback, private,
  link-local, shared (100.64/10), reserved, documentation, multicast, unspecified and
  cloud-metadata addresses are refused.
- ``WEBHOOKS``: subscriber URLs, which only site admins configure. Loopback, link-local,
  unspecified, multicast and cloud-metadata addresses are refused; private ranges are
  allowed (CI servers live there).

The operator's allowlist (``ASSAY_OUTBOUND_ALLOW``, comma-separated) opens what is
legitimate, for both kinds::

    NAME[:PORT]                a host name as written in the URL, whatever it resolves to
    IP[:PORT] | [IPv6][:PORT]  one address
    CIDR                       a network, e.g. 10.0.0.0/8 or fd00::/8

An entry without a port allows every port. IPv4-mapped IPv6 addresses are judged as the
IPv4 address they carry.

A refusal raises ``OutboundDenied`` (a ``ClientError``, never retried); its message says
which destination and why, for the server's log: services show callers a generic error.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal

from client.errors import ClientError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: reachable from inside a cloud VM and full of credentials.
# 169.254.169.254 is link-local too; the others are not, so they are named here.
METADATA = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle ...
    "fd00:ec2::254/128",   # AWS over IPv6
    "100.100.100.200/32",  # Alibaba Cloud
    "168.63.129.16/32",    # Azure's wire server
    "192.0.0.192/32",      # Oracle Cloud (legacy)
))


class OutboundDenied(ClientError):
    """A destination the outbound policy does not allow."""


@dataclass(frozen=True)
class Rule:
    """One allowlist entry: a host name or a network, and a port (None: any)."""

    name: str | None = None
    network: Network | None = None
    port: int | None = None

    def matches(self, host: str, port: int, address: Address) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return self.name == host.lower().rstrip(".")
        return address in self.network if self.network is not None else False


def parse_allowlist(text: str | None) -> tuple[Rule, ...]:
    """``ASSAY_OUTBOUND_ALLOW`` as rules; ``ValueError`` naming the entry it cannot read."""
    rules = []
    for raw in (text or "").split(","):
        entry = raw.strip()
        if entry:
            rules.append(_rule(entry))
    return tuple(rules)


def _rule(entry: str) -> Rule:
    def bad(why: str) -> ValueError:
        return ValueError(f"ASSAY_OUTBOUND_ALLOW entry {entry!r}: {why} (expected "
                          "NAME[:PORT], IP[:PORT], [IPv6][:PORT] or a CIDR network)")

    if "/" in entry:
        try:
            return Rule(network=ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise bad("not a network") from None
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise bad("junk after the bracketed address")
        port = rest[1:] or None
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise bad("the port is not a number from 1 to 65535")
        port = int(port)
    try:
        address = _unmapped(ipaddress.ip_address(host))
        return Rule(network=ipaddress.ip_network(address), port=port)
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if not name or not all(part and (part.replace("-", "").isalnum())
                           for part in name.split(".")):
        raise bad("not a host name")
    return Rule(name=name, port=port)


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class OutboundPolicy:
    """Which destinations a kind of request may reach; see the module docstring."""

    kind: Literal["callers", "webhooks"] = "callers"
    allow: tuple[Rule, ...] = ()

    @classmethod
    def for_callers(cls, allowlist: str | None = None) -> OutboundPolicy:
        return cls("callers", parse_allowlist(allowlist))

    @classmethod
    def for_webhooks(cls, allowlist: str | None = None) -> OutboundPolicy:
        return cls("webhooks", parse_allowlist(allowlist))

    def refusal(self, address: Address) -> str | None:
        """Why the default policy refuses ``address``, or None when it is allowed."""
        address = _unmapped(address)
        if any(address in net for net in METADATA if net.version == address.version):
            return "a cloud metadata address"
        for reason, flag in (("a loopback address", address.is_loopback),
                             ("an unspecified address", address.is_unspecified),
                             ("a link-local address", address.is_link_local),
                             ("a multicast address", address.is_multicast)):
            if flag:
                return reason
        if self.kind == "callers" and not address.is_global:
            return "a private or reserved address"
        if self.kind == "webhooks" and address.is_reserved:
            return "a reserved address"
        return None

    def judge(self, host: str, port: int, address: Address) -> str | None:
        """None when ``host:port`` at ``address`` may be reached, else why not."""
        if any(rule.matches(host, port, _unmapped(address)) for rule in self.allow):
            return None
        return self.refusal(address)

    def resolve(self, host: str, port: int) -> list[tuple]:
        """The ``getaddrinfo`` entries of ``host:port`` this policy allows, in the
        resolver's order; ``OutboundDenied`` when there is none (a name that does not
        resolve raises ``socket.gaierror`` as usual)."""
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        allowed, refused = [], []
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
            why = self.judge(host, port, address)
            if why is None:
                allowed.append(info)
            else:
                refused.append(f"{address} is {why}")
        if not allowed:
            raise OutboundDenied(f"{_where(host, port)} is not an allowed destination: "
                                 f"{'; '.join(dict.fromkeys(refused))} (ASSAY_OUTBOUND_ALLOW "
                                 "lets an operator open it)")
        return allowed

    def check(self, host: str, port: int) -> None:
        """Raise ``OutboundDenied`` unless ``host:port`` resolves to an allowed address."""
        self.resolve(host, port)

    def precheck(self, host: str, port: int) -> None:
        """Judge ``host`` now when it is an address (or ``localhost``), without DNS: to
        refuse at once what would be refused at connect time anyway. Names are judged
        when a connection resolves them (they may not resolve here and now)."""
        literal = host.strip("[]")
        if literal.lower().rstrip(".") == "localhost":
            literal = "127.0.0.1"
        try:
            address = ipaddress.ip_address(literal.split("%", 1)[0])
        except ValueError:
            return
        why = self.judge(host, port, address)
        if why is not None:
            raise OutboundDenied(f"{_where(host.strip('[]'), port)} is not an allowed "
                                 f"destination: {address} is {why}")

    def create_connection(self, address: tuple[str, int], timeout=None,
                          source_address=None) -> socket.socket:
        """``socket.create_connection`` to allowed addresses only (what
        ``http.client.HTTPConnection`` calls to connect)."""
        host, port = address
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in self.resolve(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not None:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"cannot connect to {_where(host, port)}")


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
