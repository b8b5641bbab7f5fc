"""An Ollama client's key and signed token request, as ollama's own code does them
(``auth.Sign`` and ``registryChallenge.URL`` in ollama/server): a real ed25519 key in
OpenSSH format, ``ts`` and ``nonce`` added to the realm's query, and
``Authorization: <base64 SSH public key>:<base64 signature>`` over
``"GET,<url>,<base64 of the hex sha256 of the empty body>"``."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class OllamaKey:
    def __init__(self, private: Ed25519PrivateKey | None = None):
        self.private = private or Ed25519PrivateKey.generate()

    @classmethod
    def load(cls, path: Path) -> OllamaKey:
        return cls(serialization.load_ssh_private_key(path.read_bytes(), password=None))

    def save(self, directory: Path) -> Path:
        """Write ``id_ed25519`` and ``id_ed25519.pub`` as ``~/.ollama`` holds them."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "id_ed25519"
        path.write_bytes(self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption()))
        path.chmod(0o600)
        (directory / "id_ed25519.pub").write_text(self.public_line() + "\n")
        return path

    def public_line(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()

    def wire(self) -> str:
        return self.public_line().split()[1]

    def sign(self, url: str) -> str:
        empty = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
        signature = self.private.sign(f"GET,{url},{empty}".encode())
        return f"{self.wire()}:{base64.b64encode(signature).decode()}"


def token_url(realm: str, service: str, scope: str, *, ts: int | None = None,
              nonce: str | None = None) -> str:
    """The URL Ollama builds from a challenge: the realm's query plus service, each
    scope, ts and a random nonce, encoded as Go's url.Values.Encode (sorted by key)."""
    parts = urlsplit(realm)
    values = parse_qsl(parts.query)
    values += [("service", service)] + [("scope", s) for s in scope.split(" ")]
    values += [("ts", str(int(time.time()) if ts is None else ts)),
               ("nonce", nonce or base64.b64encode(secrets.token_bytes(16)).decode())]
    query = urlencode(sorted(values, key=lambda kv: kv[0]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
