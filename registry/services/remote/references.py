"""References to models, as hooks and ``GET /api/v1/verifications`` take them::

    HOST[:PORT]/NAME[:TAG|@DIGEST]     a registry host first (it has a "." or ":", or is
                                       "localhost"), an http:// or https:// prefix allowed
    NAME[:TAG|@DIGEST]                 no host: a repository of this registry

Parsing raises the registry's 400s (``RequestInvalid``, ``NameInvalid``, ``TagInvalid``,
``DigestInvalid``); a reference is local when its host is one of ``local_hosts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from client.errors import BadReference
from client.ref import parse_reference
from registry.digests import check_name, check_tag, parse_digest
from registry.errors import RequestInvalid

MAX_REFERENCE = 1024


@dataclass(frozen=True)
class ModelRef:
    host: str | None  # "host[:port]", lowercase; None: this registry
    name: str
    tag: str | None = None
    digest: str | None = None
    scheme: str | None = None  # "http" | "https" when the reference or event said so

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``."""
        return self.digest or self.tag or "latest"

    @property
    def canonical(self) -> str:
        return f"{self.host}/{self.name}@{self.digest}"

    def __str__(self) -> str:
        text = f"{self.host}/{self.name}" if self.host else self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def looks_like_host(segment: str) -> bool:
    """Docker's rule: the first path segment is a registry host when it has a "." or a
    ":" (a port), is a bracketed IPv6 address, or is ``localhost``."""
    return "." in segment or ":" in segment or segment.startswith("[") or \
        segment.lower() == "localhost"


def parse_ref(text, *, default_tag: bool = True) -> ModelRef:
    """``HOST[:PORT]/NAME[:TAG|@DIGEST]`` or a local ``NAME[:TAG|@DIGEST]``; raises a 400
    (``RequestInvalid``, ``NameInvalid``, ``TagInvalid``, ``DigestInvalid``)."""
    if not isinstance(text, str) or not text.strip():
        raise RequestInvalid("a reference must be a non-empty string "
                             "(HOST[:PORT]/NAME[:TAG|@DIGEST])")
    text = text.strip()
    if len(text) > MAX_REFERENCE or not text.isprintable() or " " in text:
        raise RequestInvalid(f"invalid reference {text[:100]!r}: at most {MAX_REFERENCE} "
                             "printable characters without spaces")
    lowered = text.lower()
    scheme = next((s for s in ("http", "https") if lowered.startswith(f"{s}://")), None)
    first, slash, _ = text[len(scheme) + 3 if scheme else 0:].partition("/")
    if scheme or (slash and looks_like_host(first)):
        try:
            ref = parse_reference(text, default_tag=default_tag)
        except BadReference as exc:
            raise RequestInvalid(str(exc)) from None
        return ModelRef(ref.registry.host.lower(), ref.name, ref.tag, ref.digest, scheme)
    name, digest, tag = text, None, None
    if "@" in name:
        name, _, digest = name.partition("@")
        parse_digest(digest)
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        check_tag(tag)
    check_name(name)
    if tag is None and digest is None and default_tag:
        tag = "latest"
    return ModelRef(None, name, tag, digest)


def norm_host(host: str) -> str:
    host = host.strip().lower()
    for default in (":80", ":443"):
        if host.endswith(default):
            return host[:-len(default)]
    return host


def local_hosts(public_url: str | None, request_host: str | None) -> set[str]:
    """The names this registry answers to: the request's ``Host`` and the public URL's."""
    hosts = set()
    if request_host:
        hosts.add(norm_host(request_host))
    if public_url:
        netloc = urlsplit(public_url if "://" in public_url else f"//{public_url}").netloc
        if netloc:
            hosts.add(norm_host(netloc.rpartition("@")[2]))
    return hosts
