"""Identities and permissions in the database: users and robots, personal access tokens,
Ollama public keys, namespace roles and anonymous pull, nonces, the shared signing key.

Every change is audited (``registry.services.audit``) in its own transaction. Raises
only ``registry.errors`` exceptions; the pure rules live in ``registry.access``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets as pysecrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update

from registry.access import ollama, passwords, tokens
from registry.access.permissions import ROLES, Identity, namespace_of, parse_scopes
from registry.db.tables import (
    DEFAULT_PROTECTED_TAGS,
    access_tokens,
    as_utc,
    auth_nonces,
    isoformat,
    namespace_members,
    namespaces,
    repositories,
    secrets,
    user_keys,
    users,
    utcnow,
)
from registry.errors import Conflict, NotFound, RequestInvalid
from registry.services import quotas
from registry.services.audit import record
from registry.services.common import Service

# A user's name is also their personal namespace: one repository-name component.
USER_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_NS_RE = USER_RE
DEFAULT_SCOPES = ["pull", "push"]
# A token's scopes: one per action and namespace glob is plenty; the longest useful one
# is "delete:" and a namespace (at most 255 characters).
MAX_TOKEN_SCOPES = 32
MAX_TOKEN_SCOPE_LENGTH = 7 + 255
MAX_TOKEN_NAME_LENGTH = 128
# How far a bearer token's ``iat`` may trail the creation of its subject's user row.
_CLOCK_SKEW = 5.0
# Namespace settings: type and, for integers, the allowed range (None clears them).
# Zero tags or zero days would delete what a push in progress is still building.
_NS_FIELDS = {
    "anonymous_pull": (bool, None, None),
    "quota_bytes": (int, 0, quotas.MAX_QUOTA),
    "keep_tags": (int, 1, 2**31 - 1),
    "keep_ready": (int, 1, 2**31 - 1),
    "untagged_days": (int, 1, 36500),
    "protected_tags": (list, None, None),
}
RETENTION_FIELDS = ("keep_tags", "keep_ready", "untagged_days", "protected_tags")
# Retention's protected tags: fnmatch globs over tag names (the tag grammar plus * ? [ ] !).
MAX_PROTECTED_TAGS = 32
TAG_GLOB_RE = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")


def _valid_user_name(name: str) -> bool:
    return len(name) <= 64 and USER_RE.fullmatch(name) is not None


def check_user_name(name: str) -> str:
    if not _valid_user_name(name):
        raise RequestInvalid(f"invalid user name {name[:64]!r}: lowercase letters, digits and "
                             "single separators (. _ -), at most 64 characters")
    return name


def check_namespace(name: str) -> str:
    if len(name) > 255 or not _NS_RE.fullmatch(name):
        raise RequestInvalid(f"invalid namespace {name[:64]!r}: one repository name "
                             "component of at most 255 characters")
    return name


def check_tag_patterns(value) -> list[str]:
    """Retention's protected tags: a list of at most MAX_PROTECTED_TAGS globs (``latest``,
    ``v*``, ``release-[0-9]*``), duplicates dropped; [] protects nothing."""
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise RequestInvalid('"protected_tags" must be a list of tag globs such as '
                             '["latest", "v*"] ([] protects none)')
    if len(value) > MAX_PROTECTED_TAGS:
        raise RequestInvalid(f'"protected_tags" holds at most {MAX_PROTECTED_TAGS} globs')
    for pattern in value:
        if not TAG_GLOB_RE.fullmatch(pattern):
            raise RequestInvalid(f'"protected_tags": {pattern[:64]!r} is not a tag glob: '
                                 "1 to 128 of letters, digits, _ . - and the wildcards "
                                 "* ? [ ] !")
    return list(dict.fromkeys(value))


def _check_setting(field: str, value):
    """A namespace setting's value as stored, or RequestInvalid naming what is wrong."""
    if field not in _NS_FIELDS:
        raise RequestInvalid(f"unknown namespace setting {field!r}")
    kind, low, high = _NS_FIELDS[field]
    if kind is list:
        return json.dumps(check_tag_patterns(value))
    if value is None and kind is int:
        return None
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise RequestInvalid(f'"{field}" must be '
                             + ("true or false" if kind is bool else "an integer or null"))
    if kind is int and not low <= value <= high:
        raise RequestInvalid(f'"{field}" must be from {low} to {high}')
    return value


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _user_json(row) -> dict:
    return {"name": row.name, "admin": row.is_admin, "robot": row.is_robot,
            "created_at": isoformat(row.created_at),
            "disabled": row.disabled_at is not None}


def _token_json(row) -> dict:
    return {"id": row.id, "name": row.name, "prefix": row.prefix,
            "scopes": json.loads(row.scopes),
            "expires_at": isoformat(row.expires_at),
            "created_at": isoformat(row.created_at),
            "last_used_at": isoformat(row.last_used_at),
            "revoked": row.revoked_at is not None}


class IdentityService(Service):
    # ---- the shared signing key -------------------------------------------------------
    _key: str | None = None

    def signing_key(self) -> str:
        """``auth_secret`` if set, else the key generated once and kept in the database
        (the first replica to ask creates it; every other one reads the same row)."""
        if self.settings.auth_secret:
            return self.settings.auth_secret
        if self._key is None:
            with self.db.write() as conn:
                conn.execute(self.db.insert_ignore(
                    secrets, name="token-signing", value=pysecrets.token_hex(32),
                    created_at=utcnow()))
                self._key = conn.execute(select(secrets.c.value).where(
                    secrets.c.name == "token-signing")).scalar_one()
        return self._key

    # ---- users --------------------------------------------------------------------------
    def _user(self, conn, name: str):
        # A name no user can have is not looked up: PostgreSQL refuses NUL bytes (a 500).
        row = conn.execute(select(users).where(users.c.name == name)).first() \
            if _valid_user_name(name) else None
        if row is None:
            raise NotFound(f"no user {name[:64]!r}")
        return row

    def add_user(self, name: str, password: str | None, *, admin: bool = False,
                 robot: bool = False) -> dict:
        check_user_name(name)
        if robot and password:
            raise RequestInvalid("robots have no password: they authenticate with tokens")
        if not robot and not password:
            raise RequestInvalid("a user needs a password")
        try:
            hashed = passwords.hash_password(password) if password else None
        except ValueError as exc:
            raise RequestInvalid(str(exc)) from exc
        with self.db.write() as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise Conflict(f"user {name!r} exists already")
            conn.execute(insert(users).values(name=name, password_hash=hashed, is_admin=admin,
                                              is_robot=robot, created_at=utcnow()))
            record(conn, "robot.add" if robot else "user.add", name, admin=admin or None)
            return _user_json(self._user(conn, name))

    def set_password(self, name: str, password: str) -> None:
        try:
            hashed = passwords.hash_password(password)
        except ValueError as exc:
            raise RequestInvalid(str(exc)) from exc
        with self.db.write() as conn:
            row = self._user(conn, name)
            if row.is_robot:
                raise RequestInvalid("robots have no password: they authenticate with tokens")
            conn.execute(update(users).where(users.c.id == row.id)
                         .values(password_hash=hashed))
            record(conn, "user.password", name)

    def set_admin(self, name: str, admin: bool) -> dict:
        with self.db.write() as conn:
            row = self._user(conn, name)
            conn.execute(update(users).where(users.c.id == row.id).values(is_admin=admin))
            record(conn, "user.admin", name, admin=admin)
            return _user_json(self._user(conn, name))

    def remove_user(self, name: str) -> None:
        with self.db.write() as conn:
            row = self._user(conn, name)
            conn.execute(delete(users).where(users.c.id == row.id))
            record(conn, "user.remove", name)

    def list_users(self) -> list[dict]:
        with self.db.read() as conn:
            return [_user_json(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def get_user(self, name: str) -> dict:
        with self.db.read() as conn:
            row = self._user(conn, name)
            body = _user_json(row)
            body["roles"] = self._roles(conn, row)
            return body

    def count_users(self) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.count()).select_from(users)).scalar_one()

    # ---- namespaces and roles ---------------------------------------------------------
    def namespace_names(self) -> list[str]:
        """Every namespace something is set for or stored in, sorted: those with
        settings, members or repositories (a namespace is a name's first component)."""
        with self.db.read() as conn:
            names = set(conn.execute(select(namespaces.c.name)).scalars())
            names |= set(conn.execute(select(namespace_members.c.namespace).distinct())
                         .scalars())
            names |= {namespace_of(r) for r in conn.execute(select(repositories.c.name))
                      .scalars()}
        return sorted(names)

    def grant(self, namespace: str, user: str, role: str) -> None:
        check_namespace(namespace)
        if role not in ROLES:
            raise RequestInvalid(f"invalid role {role[:20]!r}: one of {', '.join(ROLES)}")
        now = utcnow()
        with self.db.write() as conn:
            row = self._user(conn, user)
            conn.execute(self.db.upsert(namespace_members, ["namespace", "user_id"],
                                        {"role": role, "updated_at": now},
                                        namespace=namespace, user_id=row.id, role=role,
                                        updated_at=now))
            record(conn, "namespace.grant", namespace, user=user, role=role)

    def revoke(self, namespace: str, user: str) -> None:
        if not _NS_RE.fullmatch(namespace):
            raise NotFound(f"{user[:64]!r} has no role in namespace {namespace[:64]!r}")
        with self.db.write() as conn:
            row = self._user(conn, user)
            gone = conn.execute(delete(namespace_members).where(
                namespace_members.c.namespace == namespace,
                namespace_members.c.user_id == row.id))
            if not gone.rowcount:
                raise NotFound(f"{user!r} has no role in namespace {namespace!r}")
            record(conn, "namespace.revoke", namespace, user=user)

    def set_anonymous_pull(self, namespace: str, allowed: bool) -> None:
        check_namespace(namespace)
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(self.db.upsert(namespaces, ["name"],
                                        {"anonymous_pull": allowed, "updated_at": now},
                                        name=namespace, anonymous_pull=allowed,
                                        updated_at=now))
            record(conn, "namespace.anonymous_pull", namespace, allowed=allowed)

    def configure_namespace(self, namespace: str, **changes) -> None:
        """Set any of ``anonymous_pull`` (bool), ``quota_bytes`` (bytes), and the retention
        rules ``keep_tags``, ``keep_ready``, ``untagged_days`` (see
        ``registry.maintenance.retention``) and ``protected_tags`` (a list of globs) in one
        transaction; None clears quota_bytes and the three numbers (unlimited, rule off).
        Every value is checked before anything is written (RequestInvalid names the
        first bad one), and each change is audited: namespace.anonymous_pull,
        namespace.quota, namespace.retention.
        """
        check_namespace(namespace)
        if not changes:
            raise RequestInvalid("nothing to change: give anonymous_pull, quota_bytes, "
                                 + ", ".join(RETENTION_FIELDS))
        stored = {field: _check_setting(field, value) for field, value in changes.items()}
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(self.db.insert_ignore(namespaces, name=namespace,
                                               anonymous_pull=False, updated_at=now))
            conn.execute(update(namespaces).where(namespaces.c.name == namespace)
                         .values(**stored, updated_at=now))
            if "anonymous_pull" in changes:
                record(conn, "namespace.anonymous_pull", namespace,
                       allowed=changes["anonymous_pull"])
            if "quota_bytes" in changes:
                # None is dropped from audit details: say "unlimited" in words.
                record(conn, "namespace.quota", namespace,
                       quota_bytes=changes["quota_bytes"],
                       unlimited=changes["quota_bytes"] is None or None)
            retention = {k: (json.loads(stored[k]) if k == "protected_tags" else stored[k])
                         for k in RETENTION_FIELDS if k in changes}
            if retention:
                record(conn, "namespace.retention", namespace, **retention,
                       cleared=[k for k, v in retention.items() if v is None] or None)

    def namespace(self, namespace: str) -> dict:
        """Members, anonymous-pull switch, quota with current usage, retention settings."""
        with self.db.read() as conn:
            row = conn.execute(select(namespaces).where(
                namespaces.c.name == namespace)).first()
            members = conn.execute(
                select(users.c.name, namespace_members.c.role)
                .join(users, users.c.id == namespace_members.c.user_id)
                .where(namespace_members.c.namespace == namespace)
                .order_by(users.c.name)).all()
            used = quotas.usage(conn, namespace)
        return {"name": namespace, "anonymous_pull": bool(row and row.anonymous_pull),
                "quota_bytes": row.quota_bytes if row else None, "usage_bytes": used,
                "keep_tags": row.keep_tags if row else None,
                "keep_ready": row.keep_ready if row else None,
                "untagged_days": row.untagged_days if row else None,
                "protected_tags": json.loads(row.protected_tags if row
                                             else DEFAULT_PROTECTED_TAGS),
                "members": [{"user": m.name, "role": m.role} for m in members]}

    # ---- personal access tokens --------------------------------------------------------
    def create_token(self, user: str, name: str, scopes: list[str] | None = None,
                     expires_in_days: float | None = None) -> tuple[dict, str]:
        """A new token for ``user``: its record and its secret (shown once)."""
        scopes = list(scopes) if scopes else list(DEFAULT_SCOPES)
        if len(scopes) > MAX_TOKEN_SCOPES or any(len(s) > MAX_TOKEN_SCOPE_LENGTH
                                                 for s in scopes):
            raise RequestInvalid(f"a token has at most {MAX_TOKEN_SCOPES} scopes of at most "
                                 f"{MAX_TOKEN_SCOPE_LENGTH} characters each")
        try:
            parse_scopes(scopes)
        except ValueError as exc:
            raise RequestInvalid(str(exc)) from exc
        # Printable: PostgreSQL refuses NUL bytes in text (a 500 instead of a 400).
        if not name or len(name) > MAX_TOKEN_NAME_LENGTH or not name.isprintable():
            raise RequestInvalid(f"a token needs a name of at most {MAX_TOKEN_NAME_LENGTH} "
                                 "printable characters")
        if expires_in_days is not None and not 0 < expires_in_days <= 3650:
            raise RequestInvalid("expiry must be between 0 and 3650 days")
        secret = tokens.new_pat()
        now = utcnow()
        expires = now + timedelta(days=expires_in_days) if expires_in_days else None
        with self.db.write() as conn:
            row = self._user(conn, user)
            tid = conn.execute(insert(access_tokens).values(
                user_id=row.id, name=name, token_hash=tokens.pat_hash(secret),
                prefix=secret[:14], scopes=json.dumps(scopes), expires_at=expires,
                created_at=now).returning(access_tokens.c.id)).scalar_one()
            record(conn, "token.create", user, token=name, scopes=scopes,
                   expires_at=expires.isoformat() if expires else None)
            created = conn.execute(select(access_tokens).where(access_tokens.c.id == tid))
            return _token_json(created.one()), secret

    def list_tokens(self, user: str) -> list[dict]:
        with self.db.read() as conn:
            row = self._user(conn, user)
            return [_token_json(t) for t in conn.execute(
                select(access_tokens).where(access_tokens.c.user_id == row.id)
                .order_by(access_tokens.c.id))]

    def revoke_token(self, user: str, token_id: int) -> None:
        with self.db.write() as conn:
            row = self._user(conn, user)
            done = conn.execute(update(access_tokens).where(
                access_tokens.c.id == token_id, access_tokens.c.user_id == row.id,
                access_tokens.c.revoked_at.is_(None)).values(revoked_at=utcnow()))
            if not done.rowcount:
                raise NotFound(f"{user!r} has no live token {token_id}")
            record(conn, "token.revoke", user, token_id=token_id)

    # ---- Ollama keys ------------------------------------------------------------------
    def add_key(self, user: str, public_key: str) -> dict:
        try:
            wire, comment = ollama.parse_public_key(public_key)
        except ollama.KeyInvalid as exc:
            raise RequestInvalid(str(exc)) from exc
        fp = ollama.fingerprint(wire)
        with self.db.write() as conn:
            row = self._user(conn, user)
            if conn.execute(select(user_keys.c.id).where(user_keys.c.public_key == wire)).first():
                raise Conflict(f"key {fp} is registered already")
            kid = conn.execute(insert(user_keys).values(
                user_id=row.id, public_key=wire, fingerprint=fp, comment=comment,
                created_at=utcnow()).returning(user_keys.c.id)).scalar_one()
            record(conn, "key.add", user, fingerprint=fp)
        return {"id": kid, "fingerprint": fp, "comment": comment}

    def list_keys(self, user: str) -> list[dict]:
        with self.db.read() as conn:
            row = self._user(conn, user)
            return [{"id": k.id, "fingerprint": k.fingerprint, "comment": k.comment,
                     "created_at": isoformat(k.created_at)}
                    for k in conn.execute(select(user_keys).where(
                        user_keys.c.user_id == row.id).order_by(user_keys.c.id))]

    def remove_key(self, user: str, key_id: int) -> None:
        with self.db.write() as conn:
            row = self._user(conn, user)
            gone = conn.execute(delete(user_keys).where(user_keys.c.id == key_id,
                                                        user_keys.c.user_id == row.id))
            if not gone.rowcount:
                raise NotFound(f"{user!r} has no key {key_id}")
            record(conn, "key.remove", user, key_id=key_id)

    # ---- authentication ----------------------------------------------------------------
    def _roles(self, conn, row) -> dict[str, str]:
        roles = {m.namespace: m.role for m in conn.execute(
            select(namespace_members.c.namespace, namespace_members.c.role)
            .where(namespace_members.c.user_id == row.id))}
        if not row.is_robot:
            roles[row.name] = "admin"  # everyone owns the namespace named after them
        return roles

    def anonymous_namespaces(self, conn=None) -> frozenset[str]:
        if conn is None:
            with self.db.read() as c:
                return self.anonymous_namespaces(c)
        return frozenset(conn.execute(select(namespaces.c.name)
                                      .where(namespaces.c.anonymous_pull.is_(True))).scalars())

    def anonymous(self) -> Identity:
        return Identity(name=None, anonymous_namespaces=self.anonymous_namespaces(),
                        anonymous_pull=self.settings.anonymous_pull)

    def _identity(self, conn, row, *, via: str, scopes=None, grants=None) -> Identity:
        return Identity(name=row.name, is_admin=row.is_admin, is_robot=row.is_robot,
                        roles=self._roles(conn, row),
                        anonymous_namespaces=self.anonymous_namespaces(conn),
                        anonymous_pull=self.settings.anonymous_pull, scopes=scopes,
                        grants=grants, via=via)

    def by_password(self, name: str, password: str) -> Identity | None:
        """The user if ``password`` is theirs (argon2: ~50 ms, cache the result)."""
        with self.db.read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first() \
                if _valid_user_name(name) else None
            if row is None or row.disabled_at is not None:
                passwords.check_password(None, password)
                return None
            if not passwords.check_password(row.password_hash, password):
                return None
            return self._identity(conn, row, via="password")

    def by_token(self, secret: str) -> Identity | None:
        """The owner of a live personal access token, limited to the token's scopes."""
        now = utcnow()
        with self.db.read() as conn:
            tok = conn.execute(select(access_tokens).where(
                access_tokens.c.token_hash == tokens.pat_hash(secret))).first()
            if tok is None or tok.revoked_at is not None or (
                    tok.expires_at is not None and _aware(tok.expires_at) <= now):
                return None
            row = conn.execute(select(users).where(users.c.id == tok.user_id)).one()
            if row.disabled_at is not None:
                return None
            scopes = tuple(parse_scopes(json.loads(tok.scopes)))
            identity = dataclasses.replace(
                self._identity(conn, row, via="token", scopes=scopes),
                credential=f"token:{tok.id}", credential_name=tok.name)
            if tok.expires_at is not None:
                identity = dataclasses.replace(
                    identity, expires_at=_aware(tok.expires_at).timestamp())
        if tok.last_used_at is None or now - _aware(tok.last_used_at) > timedelta(minutes=5):
            with self.db.write() as conn:  # coarse: one write per token per 5 minutes
                conn.execute(update(access_tokens).where(access_tokens.c.id == tok.id)
                             .values(last_used_at=now))
        return identity

    def by_key(self, wire_b64: str) -> Identity | None:
        """The user who registered this Ollama public key."""
        with self.db.read() as conn:
            row = conn.execute(select(users, user_keys.c.id.label("key_id"))
                               .join(user_keys, user_keys.c.user_id == users.c.id)
                               .where(user_keys.c.public_key == wire_b64)).first()
            if row is None or row.disabled_at is not None:
                return None
            return dataclasses.replace(self._identity(conn, row, via="key"),
                                       credential=f"key:{row.key_id}")

    def by_subject(self, name: str, *, issued_at: float | None, credential: str | None,
                   grants) -> Identity | None:
        """The user a bearer token was issued to (``sub``, ``iat`` and the
        ``assay_credential`` it was asked for with). None if the user is gone or
        disabled, if the name now belongs to a user made after the token (a deleted
        user's name reused), or if that personal access token is revoked or expired or
        that Ollama key removed."""
        with self.db.read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
            if row is None or row.disabled_at is not None:
                return None
            # iat is whole seconds, possibly from another replica's clock: allow for both.
            if issued_at is not None and \
                    _aware(row.created_at).timestamp() > issued_at + _CLOCK_SKEW:
                return None
            name = None
            if credential is not None:
                name = self._live_credential(conn, row, credential)
                if name is None:
                    return None
            return dataclasses.replace(self._identity(conn, row, via="bearer", grants=grants),
                                       credential_name=name or None)

    def _live_credential(self, conn, user_row, credential: str) -> str | None:
        """The name of a live personal access token (``""`` for a live Ollama key);
        None when it is revoked, expired, removed or not the user's."""
        kind, _, ident = credential.partition(":")
        if not ident.isdecimal() or int(ident) >= 2**63:
            return None
        if kind == "token":
            tok = conn.execute(select(access_tokens).where(
                access_tokens.c.id == int(ident),
                access_tokens.c.user_id == user_row.id)).first()
            live = tok is not None and tok.revoked_at is None and (
                tok.expires_at is None or _aware(tok.expires_at) > utcnow())
            return tok.name if live else None
        if kind == "key":
            found = conn.execute(select(user_keys.c.id).where(
                user_keys.c.id == int(ident),
                user_keys.c.user_id == user_row.id)).first() is not None
            return "" if found else None
        return None

    def use_nonce(self, nonce: str, max_age_seconds: float) -> bool:
        """Record a signed request's nonce; False if it was seen already (a replay).
        Nonces older than ``max_age_seconds`` are forgotten: their ``ts`` is stale."""
        if not nonce or len(nonce) > 128:
            return False
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(delete(auth_nonces).where(
                auth_nonces.c.seen_at < now - timedelta(seconds=max_age_seconds)))
            fresh = conn.execute(self.db.insert_ignore(auth_nonces, nonce=nonce, seen_at=now)
                                 .returning(auth_nonces.c.nonce)).scalar()
            return fresh is not None
