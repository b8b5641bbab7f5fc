"""Digests, repository names and tags: parsing and validation (pure functions).

Grammar from the OCI distribution spec:
- name: ``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*``
- tag:  ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``
- digest: ``algorithm:hex`` with sha256 (64 hex) or sha512 (128 hex), lowercase.
"""

from __future__ import annotations

import hashlib
import re

from registry.errors import DigestInvalid, NameInvalid, TagInvalid

ALGORITHMS = {"sha256": 64, "sha512": 128}
MAX_NAME_LENGTH = 255

NAME_RE = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_DIGEST_RE = re.compile(r"(sha256|sha512):([a-f0-9]+)")


def parse_digest(value: str | None) -> tuple[str, str]:
    """Return ``(algorithm, hex)`` or raise DigestInvalid."""
    m = _DIGEST_RE.fullmatch(value or "")
    if not m or len(m.group(2)) != ALGORITHMS[m.group(1)]:
        raise DigestInvalid(
            f"invalid digest {value!r}: expected sha256:<64 hex> or sha512:<128 hex>")
    return m.group(1), m.group(2)


def is_digest(value: str) -> bool:
    """True if ``value`` looks like a digest reference (contains ``:``), valid or not."""
    return ":" in value


def check_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name!r}")
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise TagInvalid(f"invalid tag {tag!r}")
    return tag


def hasher(algorithm: str = "sha256"):
    return hashlib.new(algorithm)


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


EMPTY_SHA256 = digest_bytes(b"")
