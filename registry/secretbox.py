"""Secrets the registry must read back, sealed at rest: ``SecretBox``.

A webhook's signing key, or the password of an upstream registry, has to be used in
plaintext, so it cannot be hashed like a user's password. Its owner keeps it in the
database sealed with Fernet (``cryptography``: AES-128-CBC and HMAC-SHA256) under a key that
is never in the database, so a database backup alone does not give the secrets away:

- ``ASSAY_SECRETS_KEY``: a Fernet key, 32 random bytes in base64 (``openssl rand -base64
  32``). Several, comma-separated, rotate it: the first seals, every one opens, and
  ``reseal`` moves a value sealed under a later one to the first.
- unset: the key in ``ASSAY_SECRETS_KEY_FILE`` (default ``<data_dir>/secrets.key``),
  generated there on first use with mode 0600. Processes that share a database but not
  that file (replicas, workers in other containers or on other machines) must be given
  one ``ASSAY_SECRETS_KEY``, or the same key file.

A sealed value is ``sealed:v1:`` and a Fernet token. Any other value was stored before
sealing existed: ``open`` returns it as it is and ``reseal`` seals it. A value sealed under
a key this box lacks does not open: ``SecretUnreadable``, whose message names the setting
to check and never the value.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "sealed:v1:"
KEY_FILE_NAME = "secrets.key"

log = logging.getLogger(__name__)


class SecretUnreadable(Exception):
    """A sealed value that none of this process's keys opens."""


def parse_keys(value: str) -> list[bytes]:
    """The Fernet keys in ``value`` (comma-separated, first one first); ``ValueError`` with
    the reason when one is not 32 bytes of base64 (either alphabet)."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    if not keys:
        raise ValueError("no key: expected 32 random bytes in base64 "
                         "(openssl rand -base64 32)")
    out = []
    for n, key in enumerate(keys, 1):
        try:
            raw = base64.b64decode(key.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"key {n} is not 32 bytes in base64 "
                             "(make one with: openssl rand -base64 32)")
        out.append(base64.urlsafe_b64encode(raw))
    return out


def key_file(path: Path) -> bytes:
    """The key kept in ``path``, made there first (mode 0600) if there is none yet.

    Several processes may start at once on one data directory: each writes a key of its
    own under a temporary name and links it into place, which only the first one does;
    every process then reads the winner."""
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            log.info("generated the key that seals stored secrets into %s: back it up, "
                     "apart from the database", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    text = path.read_text().strip()
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users: chmod 600 it", path)
    try:
        (key,) = parse_keys(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return key


class SecretBox:
    """Seals and opens secrets with ``keys`` (the first seals); ``source`` names where the
    keys came from, for error messages."""

    def __init__(self, keys: list[bytes], source: str):
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self.source = source
        self._current = Fernet(keys[0])
        self._all = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_settings(cls, settings) -> SecretBox:
        """The box of ``settings.secrets_key``, else of the key file (made if missing)."""
        if settings.secrets_key:
            return cls(parse_keys(settings.secrets_key), "ASSAY_SECRETS_KEY")
        path = (settings.secrets_key_file or settings.data_dir / KEY_FILE_NAME).resolve()
        return cls([key_file(path)], f"the key file {path} (ASSAY_SECRETS_KEY is unset)")

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored.startswith(PREFIX)

    def seal(self, plaintext: str) -> str:
        return PREFIX + self._current.encrypt(plaintext.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        """The plaintext of ``stored``; a value that is not sealed is returned as it is."""
        if not self.is_sealed(stored):
            return stored
        try:
            return self._all.decrypt(stored[len(PREFIX):].encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SecretUnreadable(
                f"a stored secret does not open with {self.source}: it was sealed with "
                "another key. Every process that shares this database needs the same "
                "ASSAY_SECRETS_KEY") from None

    def reseal(self, stored: str) -> str | None:
        """``stored`` sealed under the first key, or None if it already is. Raises
        ``SecretUnreadable`` when it does not open."""
        if self.is_sealed(stored):
            try:
                self._current.decrypt(stored[len(PREFIX):].encode("ascii"))
                return None
            except InvalidToken:
                pass
        return self.seal(self.open(stored))
