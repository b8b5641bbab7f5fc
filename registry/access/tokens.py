"""Bearer tokens, personal access tokens and signed blob URLs.

- **Bearer tokens** (what the token endpoint hands to Docker-style clients): JWTs signed
  with HS256 by the registry's shared key, limited to the repository actions granted
  (``access`` claim, as Distribution's token format), the audience being the service
  name, and short-lived (``auth_token_seconds``).
- **Personal access tokens**: ``assay_pat_`` + 32 random base62 characters; only their
  sha256 is stored. Sent as Basic, the user name must be the owner's or ``token``.
- **Signed blob URLs**: ``?expires=<unix>&signature=<hex HMAC-SHA256>`` over the
  repository and digest, for clients that fetch blob parts without credentials
  (Ollama's ranged downloads).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Mapping
from urllib.parse import urlencode

import jwt

PAT_PREFIX = "assay_pat_"
# The user name a client may send with a personal access token when it knows no other
# (what the assay client sends without ASSAY_USERNAME); any other must be the owner's.
PAT_USER = "token"
# Bounds on what GET /auth/token is asked for: Docker clients send one scope per
# repository a command touches; a repository name is at most 255 characters.
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 512
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class TokenInvalid(Exception):
    """A bearer token that is malformed, forged, expired or for another service."""


def new_pat() -> str:
    return PAT_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def is_pat(value: str) -> bool:
    return value.startswith(PAT_PREFIX)


def pat_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scope(scope: str) -> tuple[str, str, set[str]] | None:
    """``repository:team/gemma3:pull,push`` as ``("repository", name, {actions})``;
    ``registry:catalog:*`` as ``("registry", "catalog", {"*"})``; None if malformed.
    The name may contain ``:`` only in a port-less form, so split from both ends."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name or kind not in ("repository", "registry"):
        return None
    return kind, name, {a for a in actions.split(",") if a}


def issue(key: str, *, subject: str | None, service: str, issuer: str,
          access: list[dict], ttl: int, limits: list[str] | None = None,
          credential: str | None = None, wanted: list[dict] | None = None
          ) -> tuple[str, int]:
    """A signed bearer token and its lifetime in seconds. ``limits``: the scopes of the
    personal access token it was asked for with (``assay_scopes`` claim), so that the
    registry can tell "ask for a wider token" from "you may never do this".
    ``credential``: that token or Ollama key (``assay_credential`` claim, ``token:<id>``
    or ``key:<id>``), so the bearer token is refused once it is revoked or removed.
    ``wanted``: the repository actions asked for but not granted (``assay_wanted``
    claim, entries shaped like ``access``), so a later refusal can say what was missing."""
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject or "", "aud": service, "iat": now,
              "nbf": now - 5, "exp": now + ttl, "jti": uuid.uuid4().hex, "access": access}
    if limits is not None:
        claims["assay_scopes"] = limits
    if credential is not None:
        claims["assay_credential"] = credential
    if wanted:
        claims["assay_wanted"] = wanted
    return jwt.encode(claims, key, algorithm="HS256"), ttl


def verify(key: str, token: str, *, service: str) -> dict:
    """The claims of a valid bearer token; raises TokenInvalid (with why) otherwise."""
    try:
        return jwt.decode(token, key, algorithms=["HS256"], audience=service,
                          options={"require": ["exp", "sub", "aud"]}, leeway=5)
    except jwt.ExpiredSignatureError as exc:
        raise TokenInvalid("the bearer token has expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"invalid bearer token: {exc}") from exc


def grants_of(claims: dict, claim: str = "access") -> dict[str, frozenset[str]]:
    """repository -> actions from a bearer token's ``access`` claim (or another claim
    of the same shape)."""
    grants: dict[str, frozenset[str]] = {}
    entries = claims.get(claim)
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("type") == "repository":
            name, actions = entry.get("name"), entry.get("actions") or []
            if isinstance(name, str) and isinstance(actions, list):
                grants[name] = grants.get(name, frozenset()) | frozenset(map(str, actions))
    return grants


def wanted_of(claims: dict) -> dict[str, frozenset[str]] | None:
    """repository -> actions asked for but not granted (``assay_wanted``); None if the
    token got all it asked for."""
    return grants_of(claims, "assay_wanted") or None


def _blob_mac(key: str, repository: str, digest: str, expires: int) -> str:
    msg = f"blob\n{repository}\n{digest}\n{expires}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def sign_blob(key: str, repository: str, digest: str, ttl: int) -> str:
    """The query string that lets anyone GET this blob of this repository for ``ttl`` s."""
    expires = int(time.time()) + ttl
    return f"expires={expires}&signature={_blob_mac(key, repository, digest, expires)}"


def _upload_mac(key: str, repository: str, oid: str, size: int, user: str,
                expires: int) -> str:
    msg = f"upload\n{repository}\n{oid}\n{size}\n{user}\n{expires}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def sign_upload(key: str, repository: str, oid: str, size: int, user: str | None,
                ttl: int) -> str:
    """The query string that lets anyone PUT exactly the object ``oid`` (sha256 hex) of
    ``size`` bytes into ``repository`` for ``ttl`` s, on behalf of ``user`` (whose quota
    and audit entries it counts to). Git-LFS clients PUT to the batch API's upload URL
    without credentials, so the URL carries them."""
    expires = int(time.time()) + ttl
    mac = _upload_mac(key, repository, oid, size, user or "", expires)
    return urlencode({"size": size, "user": user or "", "expires": expires, "signature": mac})


def check_upload_signature(key: str, repository: str, oid: str, query: Mapping[str, str]
                           ) -> str | None:
    """The user an upload URL was signed for ("" when auth was off or anonymous), or
    None when its signature is wrong or it has expired."""
    size, expires = query.get("size", ""), query.get("expires", "")
    if not (_whole(size) and _whole(expires)):
        return None
    if int(expires) < time.time():
        return None
    user = query.get("user", "")
    mac = _upload_mac(key, repository, oid, int(size), user, int(expires))
    return user if hmac.compare_digest(mac, query.get("signature", "")) else None


def _whole(text: str) -> bool:
    """A non-negative integer of at most 20 digits (``int()`` of thousands is slow, and
    past Python's digit limit an error)."""
    return text.isascii() and text.isdigit() and len(text) <= 20


def check_blob_signature(key: str, repository: str, digest: str, expires: str,
                         signature: str) -> bool:
    if not _whole(expires) or int(expires) < time.time():
        return False
    return hmac.compare_digest(_blob_mac(key, repository, digest, int(expires)), signature)
