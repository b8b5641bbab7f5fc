"""Upload sessions: start, receive chunks, report progress, commit, cancel.

Session state lives in SQL (``uploads``) and upload bytes in the blob store, so any
replica can serve any request of a session. A chunk is accepted only if it starts
exactly where the session stands; the new offset is recorded (compare-and-set) after
the bytes are durable. Bytes are hashed while they arrive; the running hash is kept in
this process as an optimisation only (a session whose chunks went to several replicas,
or that ends with a sha512 digest, is re-hashed from storage at commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import anyio
from sqlalchemy import delete, select, update

from registry.db.tables import repositories, uploads, utcnow
from registry.digests import parse_digest
from registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
)
from registry.services.common import Service, ensure_repo, link_blob

_HASH_CACHE_SIZE = 1024


@dataclass
class Chunk:
    """What a request says about the bytes it carries."""

    start: int | None = None  # from Content-Range; None = "append where the upload stands"
    end: int | None = None  # inclusive
    length: int | None = None  # from Content-Length


class UploadService(Service):
    def __init__(self, *args):
        super().__init__(*args)
        # session -> (bytes hashed, sha256 state). LRU-bounded: abandoned sessions fall out.
        self._hashes: OrderedDict[str, tuple[int, object]] = OrderedDict()

    # ---- session bookkeeping ------------------------------------------------
    def _expiry(self):
        return utcnow() + timedelta(seconds=self.settings.upload_expiry_seconds)

    def start(self, name: str) -> str:
        """Open a new session for repository ``name`` and return its id."""
        session = uuid.uuid4().hex
        now = utcnow()
        # Row first, storage second: GC removes upload data only when its row is gone
        # or expired, so data must never exist before its row.
        with self.db.write() as conn:
            rid = ensure_repo(self.db, conn, name)
            conn.execute(uploads.insert().values(id=session, repository_id=rid, received=0,
                                                 created_at=now, updated_at=now,
                                                 expires_at=self._expiry()))
        self.store.begin_upload(session)
        self._hashes[session] = (0, hashlib.sha256())
        self._trim()
        return session

    def status(self, name: str, session: str) -> int:
        """Bytes received so far; BlobUploadUnknown if no such live session in ``name``."""
        with self.db.read() as conn:
            row = conn.execute(
                select(uploads.c.received, uploads.c.expires_at)
                .join(repositories, repositories.c.id == uploads.c.repository_id)
                .where(uploads.c.id == session, repositories.c.name == name)).first()
        if row is None:
            raise BlobUploadUnknown(f"upload {session} is not known in repository {name!r}")
        return row.received

    def cancel(self, name: str, session: str) -> None:
        self.status(name, session)
        self._discard(session)

    def _discard(self, session: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(uploads).where(uploads.c.id == session))
        self.store.cancel_upload(session)
        self._hashes.pop(session, None)

    def _trim(self) -> None:
        while len(self._hashes) > _HASH_CACHE_SIZE:
            self._hashes.popitem(last=False)

    # ---- receiving bytes ----------------------------------------------------
    async def append(self, name: str, session: str, body: AsyncIterator[bytes],
                     chunk: Chunk) -> int:
        """Receive one chunk into a session; returns the new offset.

        RangeInvalid (416) if the chunk does not start at the current offset;
        SizeInvalid if the body length contradicts Content-Range / Content-Length.
        """
        received = await anyio.to_thread.run_sync(self.status, name, session)
        expected = None
        if chunk.start is not None:
            if chunk.start != received or (chunk.end is not None and chunk.end < chunk.start):
                raise RangeInvalid(
                    f"chunk {chunk.start}-{chunk.end} does not start at offset {received}",
                    offset=received)
            if chunk.end is not None:
                expected = chunk.end - chunk.start + 1
        if chunk.length is not None:
            if expected is not None and chunk.length != expected:
                raise SizeInvalid(f"Content-Length {chunk.length} does not match Content-Range "
                                  f"{chunk.start}-{chunk.end}")
            expected = chunk.length

        cached = self._hashes.pop(session, None)
        hasher = cached[1] if cached and cached[0] == received else None
        writer = await anyio.to_thread.run_sync(self.store.upload_writer, session, received)
        try:
            n = await self._pump(body, writer, hasher, expected)
            if expected is not None and n != expected:
                raise SizeInvalid(f"received {n} bytes, expected {expected}")
        except BaseException:
            await anyio.to_thread.run_sync(writer.abort)
            raise
        await anyio.to_thread.run_sync(writer.close)
        if n:
            await anyio.to_thread.run_sync(self._advance, session, received, n)
        if hasher is not None:
            self._hashes[session] = (received + n, hasher)
            self._trim()
        return received + n

    def _advance(self, session: str, received: int, n: int) -> None:
        with self.db.write() as conn:
            done = conn.execute(
                update(uploads).where(uploads.c.id == session, uploads.c.received == received)
                .values(received=received + n, updated_at=utcnow(), expires_at=self._expiry()))
        if done.rowcount != 1:
            # Another request moved the session meanwhile: ours lost the race.
            raise RangeInvalid("upload was modified concurrently", offset=self.status_any(session))

    def status_any(self, session: str) -> int:
        with self.db.read() as conn:
            return conn.execute(select(uploads.c.received).where(uploads.c.id == session)
                                ).scalar() or 0

    async def _pump(self, body: AsyncIterator[bytes], writer, hasher, limit: int | None) -> int:
        """Copy the request body to ``writer`` (and ``hasher``), off the event loop.

        Parts are gathered into batches of ``write_batch_bytes``; each batch is written
        and hashed in two worker threads at once (both release the GIL), while the event
        loop receives the next batch. The parts are never joined: no extra copy.
        """
        batch_size = self.settings.write_batch_bytes
        total, buf, buf_len = 0, [], 0
        pending: list[asyncio.Future] = []

        def hash_parts(parts: list[bytes]) -> None:
            for part in parts:
                hasher.update(part)

        def flush(parts: list[bytes]) -> list[asyncio.Future]:
            futures = [asyncio.ensure_future(anyio.to_thread.run_sync(writer.writelines, parts))]
            if hasher is not None:
                futures.append(asyncio.ensure_future(anyio.to_thread.run_sync(hash_parts, parts)))
            return futures

        try:
            async for part in body:
                if not part:
                    continue
                total += len(part)
                if limit is not None and total > limit:
                    raise SizeInvalid(f"body is longer than the declared {limit} bytes")
                buf.append(part)
                buf_len += len(part)
                if buf_len >= batch_size:
                    await asyncio.gather(*pending)
                    pending = flush(buf)
                    buf, buf_len = [], 0
            await asyncio.gather(*pending)
            pending = flush(buf) if buf else []
            await asyncio.gather(*pending)
            pending = []
        finally:
            if pending:  # never leave a write running behind an abort
                await asyncio.gather(*pending, return_exceptions=True)
        return total

    # ---- commit -------------------------------------------------------------
    def _digest_of(self, session: str, size: int, algorithm: str) -> str:
        cached = self._hashes.get(session)
        if algorithm == "sha256" and cached and cached[0] == size:
            return f"sha256:{cached[1].hexdigest()}"
        h = hashlib.new(algorithm)
        for part in self.store.read_upload(session, size):
            h.update(part)
        return f"{algorithm}:{h.hexdigest()}"

    def commit(self, name: str, session: str, digest: str) -> int:
        """Verify the upload against ``digest`` and make it a blob of ``name``.

        On a digest mismatch the session and its data are discarded (nothing is left
        behind) and DigestInvalid is raised. Returns the blob size.
        """
        algorithm, _ = parse_digest(digest)
        size = self.status(name, session)
        actual = self._digest_of(session, size, algorithm)
        if actual != digest:
            self._discard(session)
            raise DigestInvalid(f"upload has digest {actual}, not {digest}",
                                {"expected": digest, "actual": actual})
        self.store.seal_upload(session, size)  # may wait for the disk: not under a lock
        with self.db.write() as conn:
            row = conn.execute(select(uploads.c.repository_id).where(uploads.c.id == session)
                               .with_for_update()).first()
            if row is None:
                raise BlobUploadUnknown(f"upload {session} was committed or cancelled meanwhile")
            link_blob(self.db, conn, row.repository_id, digest, size)
            conn.execute(delete(uploads).where(uploads.c.id == session))
            # Inside the transaction: the blob row is locked until the bytes are in
            # place, so GC cannot delete them between our check and our commit.
            self.store.commit_upload(session, size, digest)
        self._hashes.pop(session, None)
        return size

    async def upload_whole(self, name: str, digest: str, body: AsyncIterator[bytes],
                           length: int | None) -> int:
        """A monolithic upload in one request (POST ?digest= or streamed PUT)."""
        parse_digest(digest)
        session = await anyio.to_thread.run_sync(self.start, name)
        try:
            await self.append(name, session, body, Chunk(length=length))
            return await anyio.to_thread.run_sync(self.commit, name, session, digest)
        except BaseException:
            await anyio.to_thread.run_sync(self._discard_quietly, session)
            raise

    def _discard_quietly(self, session: str) -> None:
        # Best effort: GC removes expired sessions anyway.
        with contextlib.suppress(Exception):
            self._discard(session)

    def expired(self, limit: int = 1000) -> list[str]:
        with self.db.read() as conn:
            return list(conn.execute(select(uploads.c.id).where(uploads.c.expires_at < utcnow())
                                     .limit(limit)).scalars())



def parse_content_range(value: str) -> tuple[int, int]:
    """Parse an upload ``Content-Range``: ``a-b`` or ``bytes a-b`` (optionally ``/total``).

    Raises BlobUploadInvalid with 416 semantics left to the caller.
    """
    v = value.strip()
    if v.startswith("bytes"):
        v = v[5:].lstrip(" =")
    v = v.split("/", 1)[0].strip()
    start, sep, end = v.partition("-")
    if not sep or not start.isdigit() or not end.isdigit():
        raise BlobUploadInvalid(f"invalid Content-Range {value!r}")
    return int(start), int(end)
