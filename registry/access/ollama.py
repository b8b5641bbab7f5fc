"""Ollama's signed token request (see docs/clients.md, Ollama, "Auth").

The client sends ``GET <realm>?service=..&scope=..&ts=<unix>&nonce=<b64>`` with
``Authorization: <public key>:<signature>``: the base64 SSH wire form of its ed25519
public key (the second field of ``~/.ollama/id_ed25519.pub``) and the base64 raw ed25519
signature of ``"GET,<full url>,<base64 of the hex sha256 of the empty body>"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_EMPTY_BODY = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


# The comment after the key data is stored with the key (a varchar of this size).
MAX_COMMENT_LENGTH = 255


class KeyInvalid(ValueError):
    pass


def parse_public_key(text: str) -> tuple[str, str | None]:
    """``ssh-ed25519 AAAA... [comment]`` (or just the base64 part) as ``(base64 wire
    form, comment)``; raises KeyInvalid unless it is a well-formed ed25519 key with a
    comment of at most ``MAX_COMMENT_LENGTH`` printable characters."""
    parts = text.strip().split(None, 2)
    if not parts:
        raise KeyInvalid("empty public key")
    if parts[0] == "ssh-ed25519":
        parts = parts[1:]
    elif parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-"):
        raise KeyInvalid(f"unsupported key type {parts[0][:32]!r}: Ollama keys are "
                         "ssh-ed25519")
    if not parts:
        raise KeyInvalid("the public key has no key data")
    _raw_key(parts[0])
    comment = parts[1] if len(parts) > 1 else None
    if comment is not None and (len(comment) > MAX_COMMENT_LENGTH
                                or not comment.isprintable()):
        raise KeyInvalid(f"the key's comment must be at most {MAX_COMMENT_LENGTH} "
                         "printable characters")
    return parts[0], comment


def fingerprint(wire_b64: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of the key."""
    digest = hashlib.sha256(base64.b64decode(wire_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _raw_key(wire_b64: str) -> bytes:
    try:
        blob = base64.b64decode(wire_b64, validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        kind = blob[4:4 + n]
        (m,) = struct.unpack(">I", blob[4 + n:8 + n])
        raw = blob[8 + n:8 + n + m]
    except (binascii.Error, struct.error) as exc:
        raise KeyInvalid("the public key is not valid base64 SSH key data") from exc
    if kind != b"ssh-ed25519" or len(raw) != 32 or len(blob) != 8 + n + m:
        raise KeyInvalid("the public key is not an ssh-ed25519 key")
    return raw


def split_authorization(header: str) -> tuple[str, str] | None:
    """``(public key, signature)`` from an Ollama ``Authorization`` header, or None if
    the header is not of that form (so other schemes are left alone)."""
    if " " in header or header.count(":") != 1:
        return None
    key, sig = header.split(":")
    return (key, sig) if key.startswith("AAAA") and sig else None


def signed_message(url: str) -> bytes:
    return f"GET,{url},{_EMPTY_BODY}".encode()


def verify_signature(wire_b64: str, signature_b64: str, url: str) -> bool:
    """True if ``signature_b64`` is the key's signature of the request for ``url``."""
    try:
        public = Ed25519PublicKey.from_public_bytes(_raw_key(wire_b64))
        public.verify(base64.b64decode(signature_b64, validate=True), signed_message(url))
        return True
    except (KeyInvalid, InvalidSignature, binascii.Error, ValueError):
        return False
