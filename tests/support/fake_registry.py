"""An OCI registry in this process, as an ``httpx`` transport for a ``RegistryClient``: just
enough of the Distribution API for the bundle tests (manifests, blobs with ``Range``,
monolithic and chunked uploads, the referrers API), and no more.

Blobs may be ``Generated``: their bytes are made block by block when read, and an upload
is hashed as it arrives and only its digest kept, so a test can move a blob of any size
while measuring the client's own memory. ``drop = (digest, n)`` breaks the next body of
that blob after ``n`` bytes (a dropped connection); ``requests`` records every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

BLOCK = 1024 * 1024
_PATH = re.compile(r"/v2/(?P<name>.+)/(?P<kind>manifests|blobs|referrers|blobs/uploads)"
                   r"/(?P<rest>[^/]*)")


@dataclass(frozen=True)
class Generated:
    """``size`` bytes made from ``seed``, never held whole: block i is sha256-derived."""

    size: int
    seed: bytes = b"assay"

    def chunks(self, offset: int = 0) -> Iterator[bytes]:
        index, skip = divmod(offset, BLOCK)
        position = index * BLOCK
        while position < self.size:
            block = (hashlib.sha256(self.seed + index.to_bytes(8, "big")).digest() *
                     (BLOCK // 32))[:min(BLOCK, self.size - position)]
            yield block[skip:]
            skip, index, position = 0, index + 1, position + len(block)

    def digest(self) -> str:
        h = hashlib.sha256()
        for block in self.chunks():
            h.update(block)
        return "sha256:" + h.hexdigest()


class _Body(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry(httpx.BaseTransport):
    def __init__(self, *, referrers_api: bool = True, keep_limit: int = 4 * BLOCK):
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}  # (name, ref)
        self.blobs: dict[str, bytes | Generated | int] = {}  # int: only its size kept
        self.referrers_api = referrers_api
        self.keep_limit = keep_limit
        self.drop: tuple[str, int] | None = None
        self.requests: list[tuple[str, str]] = []
        self._sessions: dict[str, tuple[hashlib._Hash, bytearray | None, int]] = {}
        self._lock = threading.Lock()

    # ---- set-up helpers
    def add_blob(self, data: bytes | Generated) -> str:
        digest = data.digest() if isinstance(data, Generated) else _sha(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(self, name: str, doc: dict, tag: str | None = None) -> str:
        content = json.dumps(doc).encode()
        digest = _sha(content)
        for ref in filter(None, (digest, tag)):
            self.manifests[(name, ref)] = (content, doc["mediaType"])
        return digest

    # ---- the API
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append((request.method, request.url.path))
        m = _PATH.fullmatch(request.url.path)
        if m is None:
            return httpx.Response(404)
        name, kind, rest = m["name"], m["kind"], m["rest"]
        if kind == "blobs/uploads" or (kind == "blobs" and rest == "uploads"):
            return self._upload(request, name, rest if kind == "blobs/uploads" else "")
        if kind == "manifests":
            return self._manifest(request, name, rest)
        if kind == "referrers":
            return self._referrers(name, rest)
        return self._blob(request, rest)

    def _manifest(self, request: httpx.Request, name: str, ref: str) -> httpx.Response:
        if request.method == "PUT":
            content = request.read()
            digest = _sha(content)
            media_type = request.headers["content-type"]
            for r in {digest, ref}:
                self.manifests[(name, r)] = (content, media_type)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        found = self.manifests.get((name, ref))
        if found is None:
            return httpx.Response(404)
        return httpx.Response(200, content=found[0], headers={"Content-Type": found[1]})

    def _referrers(self, name: str, digest: str) -> httpx.Response:
        if not self.referrers_api:
            return httpx.Response(404)
        found, seen = [], set()
        for (n, _), (content, media_type) in self.manifests.items():
            doc = json.loads(content)
            d = _sha(content)
            if n == name and (doc.get("subject") or {}).get("digest") == digest \
                    and d not in seen:
                seen.add(d)
                found.append({"mediaType": media_type, "digest": d, "size": len(content),
                              **({"artifactType": doc["artifactType"]}
                                 if doc.get("artifactType") else {})})
        return httpx.Response(200, json={"schemaVersion": 2, "manifests": found})

    def _blob(self, request: httpx.Request, digest: str) -> httpx.Response:
        data = self.blobs.get(digest)
        if data is None:
            return httpx.Response(404)
        size = data if isinstance(data, int) else \
            data.size if isinstance(data, Generated) else len(data)
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(size)})
        if isinstance(data, int):
            return httpx.Response(410)  # received, not kept: too large for the test
        offset = int(request.headers.get("range", "bytes=0-")[6:].split("-")[0])
        chunks = data.chunks(offset) if isinstance(data, Generated) else \
            iter([data[offset:]])
        if self.drop is not None and self.drop[0] == digest:
            chunks, self.drop = _broken(chunks, self.drop[1]), None
        status = 206 if offset else 200
        return httpx.Response(status, stream=_Body(chunks),
                              headers={"Content-Length": str(size - offset)})

    def _upload(self, request: httpx.Request, name: str, session: str) -> httpx.Response:
        if request.method == "POST":
            if request.url.params.get("mount") in self.blobs:
                return httpx.Response(201)
            session = f"s{len(self._sessions)}"
            self._sessions[session] = (hashlib.sha256(), bytearray(), 0)
            return httpx.Response(202, headers={"Location": f"/v2/{name}/blobs/uploads/"
                                                            f"{session}"})
        if request.method == "DELETE":
            self._sessions.pop(session, None)
            return httpx.Response(204)
        h, kept, size = self._sessions[session]
        for chunk in request.stream:  # hashed as it comes, never read whole
            h.update(chunk)
            size += len(chunk)
            if kept is not None:
                kept += chunk
                kept = kept if len(kept) <= self.keep_limit else None
        self._sessions[session] = (h, kept, size)
        if request.method == "PATCH":
            return httpx.Response(202, headers={"Location": f"/v2/{name}/blobs/uploads/"
                                                            f"{session}",
                                                "Range": f"0-{size - 1}"})
        digest = request.url.params["digest"]
        if "sha256:" + h.hexdigest() != digest:
            return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID",
                                                         "message": "digest mismatch"}]})
        self.blobs[digest] = bytes(kept) if kept is not None else size
        return httpx.Response(201)


def _broken(chunks: Iterator[bytes], after: int) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) > after:
            yield chunk[:after - sent]
            raise httpx.ReadError("connection reset by the test")
        sent += len(chunk)
        yield chunk
