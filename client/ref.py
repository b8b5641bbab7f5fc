"""References: ``HOST[:PORT]/NAME[:TAG|@DIGEST]`` (tag defaults to ``latest``).

The first path segment is always the registry host: there is no default registry. Loopback
hosts (127.0.0.0/8, ``localhost``, ``::1``) are spoken to over plain HTTP, as is every host
when ``insecure`` is set; everything else over HTTPS. An explicit ``http://`` or
``https://`` prefix wins over both rules. IPv6 hosts are written in brackets:
``[::1]:5000/team/model``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from client.errors import BadReference

DEFAULT_TAG = "latest"

NAME_RE = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
                     r"(?::(?P<port>[0-9]{1,5}))?")


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (``host`` without port or brackets)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_scheme(host: str) -> str:
    """How to speak to ``HOST[:PORT]`` when nothing named a scheme: plain HTTP on
    loopback, else HTTPS."""
    return "http" if is_loopback(Registry(host, "https").hostname) else "https"


@dataclass(frozen=True)
class Registry:
    """Where a registry lives: ``host`` may carry ``:port``; ``scheme`` is http or https."""

    host: str
    scheme: str

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def hostname(self) -> str:
        host = self.host
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def port(self) -> int:
        """The TCP port: the one written after the host, else the scheme's."""
        rest = self.host.rpartition("]")[2] if self.host.startswith("[") else self.host
        _, colon, port = rest.rpartition(":")
        return int(port) if colon and port else (443 if self.scheme == "https" else 80)


@dataclass(frozen=True)
class Reference:
    registry: Registry
    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = f"{self.registry.host}/{self.name}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.name, self.tag, digest)


def _split_scheme(text: str) -> tuple[str | None, str]:
    for scheme in ("http", "https"):
        prefix = f"{scheme}://"
        if text.lower().startswith(prefix):
            return scheme, text[len(prefix):]
    if "://" in text:
        raise BadReference(f"invalid reference {text!r}: only http:// and https:// are supported")
    return None, text


def _registry(text: str, host: str, scheme: str | None, insecure: bool) -> Registry:
    match = HOST_RE.fullmatch(host)
    if not match:
        raise BadReference(f"invalid reference {text!r}: {host!r} is not a registry host "
                           "(expected HOST[:PORT]/NAME[:TAG])")
    port = match.group("port")
    if port and not 0 < int(port) < 65536:
        raise BadReference(f"invalid reference {text!r}: port {port} is out of range")
    registry = Registry(host, "https")
    if scheme is None:
        scheme = "http" if insecure or is_loopback(registry.hostname) else "https"
    return Registry(host, scheme)


def _check_name(text: str, name: str) -> None:
    if not name:
        raise BadReference(f"invalid reference {text!r}: no repository name "
                           "(expected HOST[:PORT]/NAME[:TAG])")
    if name != name.lower() and NAME_RE.fullmatch(name.lower()):
        raise BadReference(f"invalid reference {text!r}: repository names must be lowercase")
    if not NAME_RE.fullmatch(name) or len(name) > 255:
        raise BadReference(f"invalid reference {text!r}: {name!r} is not a valid repository name "
                           "(lowercase letters, digits, and . _ - / separators)")


def parse_reference(text: str, *, insecure: bool = False, default_tag: bool = True) -> Reference:
    """Parse ``HOST[:PORT]/NAME[:TAG|@DIGEST]`` or raise ``BadReference`` (one line)."""
    original = text
    text = text.strip()
    scheme, rest = _split_scheme(text)
    host, slash, remainder = rest.partition("/")
    if not slash:
        raise BadReference(f"invalid reference {original!r}: expected HOST[:PORT]/NAME[:TAG] "
                           "(e.g. 127.0.0.1:5000/team/model:v1)")
    registry = _registry(original, host, scheme, insecure)
    digest = None
    if "@" in remainder:
        remainder, _, digest = remainder.partition("@")
        if not DIGEST_RE.fullmatch(digest):
            raise BadReference(f"invalid reference {original!r}: {digest!r} is not a digest "
                               "(expected sha256:<64 lowercase hex>)")
    tag = None
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        remainder, _, tag = remainder.rpartition(":")
        if not TAG_RE.fullmatch(tag):
            raise BadReference(f"invalid reference {original!r}: {tag!r} is not a valid tag")
    _check_name(original, remainder)
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, remainder, tag, digest)


def parse_location(text: str, *, insecure: bool = False) -> tuple[Registry, str | None]:
    """``HOST[:PORT][/NAME]`` for ``assay ls``: the registry and an optional repository."""
    original = text
    scheme, rest = _split_scheme(text.strip())
    host, _, name = rest.rstrip("/").partition("/")
    registry = _registry(original, host, scheme, insecure)
    if not name:
        return registry, None
    if ":" in name.rsplit("/", 1)[-1] or "@" in name:
        raise BadReference(f"invalid repository {original!r}: give HOST/NAME without a tag")
    _check_name(original, name)
    return registry, name
