"""Upload sessions: start, receive chunks, report progress, commit, cancel.

Session state lives in SQL (``uploads``) and upload bytes in the blob store, so any
replica can serve any request of a session.

Exactly one request at a time may write or commit a session. Before it touches storage
it claims the session's *write lease* in SQL (``uploads.writer``, ``lease_until``), and
a chunk is accepted only if it starts exactly where the session stands. A second
request meanwhile gets 416 without opening anything, so it can neither truncate nor
overwrite bytes another request is writing, nor touch a file that a commit renames
into ``blobs/``. A lease is renewed while a long chunk streams and lapses by itself if
its process dies, so a crashed replica never wedges a session. The new offset is
recorded together with the lease's release.

Bytes are hashed while they arrive; the running hash is kept in this process as an
optimisation only (a session whose chunks went to several replicas, or that ends with a
sha512 digest, is re-hashed from storage at commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import anyio
from sqlalchemy import delete, func, select, update

from registry.db.tables import repositories, uploads, utcnow
from registry.digests import parse_digest
from registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    QuotaExceeded,
    RangeInvalid,
    SizeInvalid,
    TooManyRequests,
    UploadTooLarge,
)
from registry.services import quotas
from registry.services.common import Service, ensure_repo, link_blob

_HASH_CACHE_SIZE = 1024
_DIGITS = re.compile(r"[0-9]{1,19}")  # offsets are BIGINTs: anything larger is invalid
# (bytes a request may still send, the error for sending more): see UploadService._limits
Limit = tuple[int, Callable[[int], Exception]]
# Retry-After for a client at its max_concurrent_uploads: sessions end when their
# uploads finish, so a short wait usually frees one.
SESSIONS_RETRY_AFTER = 30


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

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.upload_lease_seconds)

    # ---- session bookkeeping ------------------------------------------------
    def _expiry(self):
        return utcnow() + timedelta(seconds=self.settings.upload_expiry_seconds)

    def start(self, name: str, owner: str | None = None) -> str:
        """Open a new session for repository ``name`` and return its id.

        ``owner`` (the user, else the client IP; None for the registry itself) may hold
        ``max_concurrent_uploads`` open sessions; one more raises TooManyRequests.
        """
        session = uuid.uuid4().hex
        now = utcnow()
        limit = self.settings.max_concurrent_uploads
        # Row first, storage second: GC removes upload data only when its row is gone
        # or expired, so data must never exist before its row.
        with self.db.write() as conn:
            if owner is not None and limit > 0:
                open_sessions = conn.execute(
                    select(func.count()).select_from(uploads)
                    .where(uploads.c.owner == owner, uploads.c.expires_at > now)).scalar()
                if open_sessions >= limit:
                    raise TooManyRequests(
                        f"{open_sessions} upload sessions are open for this client; the "
                        f"limit is {limit}: finish or cancel one",
                        retry_after=SESSIONS_RETRY_AFTER)
            rid = ensure_repo(self.db, conn, name)
            conn.execute(uploads.insert().values(id=session, repository_id=rid, received=0,
                                                 created_at=now, updated_at=now,
                                                 expires_at=self._expiry(), owner=owner))
        self.store.begin_upload(session)
        self._hashes[session] = (0, hashlib.sha256())
        self._trim()
        return session

    @staticmethod
    def _session_query(name: str, session: str, now):
        return (select(uploads.c.received,
                       (uploads.c.writer.is_not(None) & (uploads.c.lease_until > now))
                       .label("busy"))
                .join(repositories, repositories.c.id == uploads.c.repository_id)
                .where(uploads.c.id == session, repositories.c.name == name,
                       uploads.c.expires_at > now))

    def status(self, name: str, session: str) -> int:
        """Bytes received so far; BlobUploadUnknown if no such live session in ``name``."""
        with self.db.read() as conn:
            row = conn.execute(self._session_query(name, session, utcnow())).first()
        if row is None:
            raise BlobUploadUnknown(f"upload {session} is not known in repository {name!r}")
        return row.received

    def _claim(self, name: str, session: str, start: int | None) -> tuple[str, int]:
        """Take the session's write lease; returns ``(token, bytes received)``.

        RangeInvalid (416) if another request holds the lease or if ``start`` is given
        and is not where the upload stands.
        """
        token, now = uuid.uuid4().hex, utcnow()
        with self.db.write() as conn:
            row = conn.execute(self._session_query(name, session, now).with_for_update()
                               ).first()
            if row is None:
                raise BlobUploadUnknown(f"upload {session} is not known in repository {name!r}")
            if row.busy:
                raise RangeInvalid("another request is writing this upload", offset=row.received)
            if start is not None and start != row.received:
                raise RangeInvalid(f"chunk starts at {start}, the upload stands at "
                                   f"{row.received}", offset=row.received)
            conn.execute(update(uploads).where(uploads.c.id == session)
                         .values(writer=token, lease_until=now + self._lease))
        return token, row.received

    def _renew(self, session: str, token: str) -> None:
        with self.db.write() as conn:
            done = conn.execute(update(uploads)
                                .where(uploads.c.id == session, uploads.c.writer == token)
                                .values(lease_until=utcnow() + self._lease))
        if done.rowcount != 1:
            raise BlobUploadInvalid("the upload was cancelled or taken over while writing")

    def _release(self, session: str, token: str, received: int | None = None) -> None:
        """Give the lease back, recording the new offset when ``received`` is given."""
        values: dict = {"writer": None, "lease_until": None}
        if received is not None:
            values.update(received=received, updated_at=utcnow(), expires_at=self._expiry())
        with self.db.write() as conn:
            done = conn.execute(update(uploads)
                                .where(uploads.c.id == session, uploads.c.writer == token)
                                .values(**values))
        if received is not None and done.rowcount != 1:
            raise BlobUploadInvalid("the upload was cancelled or taken over while writing")

    def _release_quietly(self, session: str, token: str) -> None:
        with contextlib.suppress(Exception):  # the lease lapses by itself anyway
            self._release(session, token)

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
                     chunk: Chunk, digest: str | None = None) -> int:
        """Receive one chunk into a session; returns the new offset.

        RangeInvalid (416) if the chunk does not start at the current offset or another
        request is writing the session; SizeInvalid if the body length contradicts
        Content-Range / Content-Length; UploadTooLarge (413) if the session would pass
        ``max_upload_bytes``; QuotaExceeded (403 DENIED) if the session would pass the
        room left in the namespace's quota. The quota applies only when the request names
        its ``digest`` (a monolithic POST or the final PUT): a bare PATCH may be carrying a
        blob the namespace holds already, which costs nothing, and that is known only once
        the digest is, so such a session is checked when it commits. Both limits
        are checked by the declared length before a byte is read, else as the body
        streams. On any failure the chunk's bytes are dropped and the session stays at
        its previous offset; past the quota the session is removed (it cannot commit).
        """
        expected = self._expected(chunk)
        cap = self.settings.max_upload_bytes
        if expected is not None and expected > cap:
            raise UploadTooLarge(f"a chunk of {expected} bytes exceeds the upload limit of "
                                 f"{cap} bytes", {"limit": cap})

        token, received = await anyio.to_thread.run_sync(self._claim, name, session,
                                                         chunk.start)
        try:
            limits = await anyio.to_thread.run_sync(self._limits, name, digest, received)
            for allowed, error in limits:
                if expected is not None and expected > allowed:
                    raise error(expected)
        except BaseException as exc:
            await anyio.to_thread.run_sync(self._give_up, session, token, exc)
            raise
        cached = self._hashes.pop(session, None)
        hasher = cached[1] if cached and cached[0] == received else None
        writer = None
        try:
            writer = await anyio.to_thread.run_sync(self.store.upload_writer, session, received)
            n = await self._pump(body, writer, hasher, expected,
                                 renew=lambda: self._renew(session, token), limits=limits)
            if expected is not None and n != expected:
                raise SizeInvalid(f"received {n} bytes, expected {expected}")
            await anyio.to_thread.run_sync(writer.close)
            writer = None
            await anyio.to_thread.run_sync(self._release, session, token, received + n)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                if writer is not None:
                    await anyio.to_thread.run_sync(writer.abort)
                await anyio.to_thread.run_sync(self._give_up, session, token, exc)
            raise
        if hasher is not None:
            self._hashes[session] = (received + n, hasher)
            self._trim()
        return received + n

    @staticmethod
    def _expected(chunk: Chunk) -> int | None:
        """The chunk's length as the request declares it (Content-Range and
        Content-Length must agree), or None when it does not say."""
        expected = None
        if chunk.start is not None and chunk.end is not None:
            if chunk.end < chunk.start:
                raise BlobUploadInvalid(f"invalid Content-Range {chunk.start}-{chunk.end}")
            expected = chunk.end - chunk.start + 1
        if chunk.length is not None:
            if expected is not None and chunk.length != expected:
                raise SizeInvalid(f"Content-Length {chunk.length} does not match Content-Range "
                                  f"{chunk.start}-{chunk.end}")
            expected = chunk.length
        return expected

    def _limits(self, name: str, digest: str | None, received: int) -> list[Limit]:
        """What a session standing at ``received`` bytes may still take: the upload size
        limit and, when the request names the blob's ``digest`` in a namespace with a
        quota, the room left in it."""
        cap = self.settings.max_upload_bytes

        def too_large(n: int) -> UploadTooLarge:
            return UploadTooLarge(f"the upload stands at {received} bytes; {n} more would "
                                  f"exceed the limit of {cap} bytes", {"limit": cap})

        limits = [(cap - received, too_large)]
        if digest is None:  # maybe a blob the namespace holds: the commit decides
            return limits
        with self.db.read() as conn:
            room = quotas.room(conn, name, digest)
        if room is not None:
            def over_quota(n: int) -> QuotaExceeded:
                return room.refusal(received + n, "this upload",
                                    upload_bytes=received + n)

            limits.append((room.left - received, over_quota))
        return limits

    def _give_up(self, session: str, token: str, exc: BaseException) -> None:
        """After a failed chunk: a session past the quota is removed (it could never
        commit), any other goes back to where it stood."""
        if isinstance(exc, QuotaExceeded):
            self._discard_quietly(session)
        else:
            self._release_quietly(session, token)

    async def _pump(self, body: AsyncIterator[bytes], writer, hasher, limit: int | None,
                    renew: Callable[[], None], limits: list[Limit] = ()) -> int:
        """Copy the request body to ``writer`` (and ``hasher``), off the event loop.

        Parts are gathered into batches of ``write_batch_bytes``; each batch is written
        and hashed in two worker threads at once (both release the GIL), while the event
        loop receives the next batch. The parts are never joined: no extra copy.
        ``renew`` keeps the write lease alive during long chunks; past one of ``limits``
        (bytes allowed, the error for passing it) its error is raised.
        """
        batch_size = self.settings.write_batch_bytes
        total, buf, buf_len = 0, [], 0
        pending: list[asyncio.Future] = []
        renewed = time.monotonic()

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
                for allowed, error in limits:
                    if total > allowed:
                        raise error(total)
                buf.append(part)
                buf_len += len(part)
                if buf_len >= batch_size:
                    await asyncio.gather(*pending)
                    pending = flush(buf)
                    buf, buf_len = [], 0
                # On every part, not every batch: a slow client may take longer than the
                # lease to fill one batch.
                if time.monotonic() - renewed > self._lease.total_seconds() / 4:
                    await anyio.to_thread.run_sync(renew)
                    renewed = time.monotonic()
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

    def commit(self, name: str, session: str, digest: str, *, quota: bool = True) -> int:
        """Verify the upload against ``digest`` and make it a blob of ``name``.

        Holds the session's write lease throughout, so no chunk can land while the bytes
        are hashed and moved. On a digest mismatch the session and its data are discarded
        (nothing is left behind) and DigestInvalid is raised. Returns the blob size.

        With ``quota`` (the default; off only for blobs the registry itself writes) a blob
        new to the namespace must fit its storage quota, checked in the transaction that
        links it (``registry.services.quotas``); else the session and its data are
        discarded and QuotaExceeded (403 DENIED) is raised. The same check runs once
        before hashing, so a doomed upload is refused without reading it back.
        """
        algorithm, _ = parse_digest(digest)
        token, size = self._claim(name, session, None)
        try:
            if quota:
                self._check_quota(name, digest, size)
            actual = self._digest_of(session, size, algorithm)
            if actual != digest:
                self._discard(session)
                raise DigestInvalid(f"upload has digest {actual}, not {digest}",
                                    {"expected": digest, "actual": actual})
            self.store.seal_upload(session, size)  # may wait for the disk: not under a lock
            with self.db.write() as conn:
                row = conn.execute(select(uploads.c.repository_id).where(
                    uploads.c.id == session, uploads.c.writer == token).with_for_update()
                ).first()
                if row is None:
                    raise BlobUploadUnknown(f"upload {session} was cancelled meanwhile")
                if quota:
                    quotas.check(conn, name, digest, size, lock=True)
                link_blob(self.db, conn, row.repository_id, digest, size)
                conn.execute(delete(uploads).where(uploads.c.id == session))
                # Inside the transaction: the blob row is locked until the bytes are in
                # place, so GC cannot delete them between our check and our commit.
                self.store.commit_upload(session, size, digest)
        except QuotaExceeded:
            self._discard_quietly(session)
            raise
        except BaseException:
            self._release_quietly(session, token)
            raise
        self._hashes.pop(session, None)
        return size

    def put_bytes(self, name: str, data: bytes, *, owner: str | None = None,
                  quota: bool = False) -> str:
        """Store a small blob in ``name`` through the same session, digest check and
        commit as a client upload. By default for what the registry itself produces (a
        verification report: not held to the quota); a client's small files (a Hub
        commit's inline files) pass ``quota=True`` and their ``owner``."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        session = self.start(name, owner)
        try:
            token, _ = self._claim(name, session, 0)
            writer = self.store.upload_writer(session, 0)
            try:
                writer.write(data)
                writer.close()
            except BaseException:
                writer.abort()
                raise
            self._release(session, token, received=len(data))
            # The registry's own small reports are not held to the namespace's quota: a
            # full namespace must not stop its models from being verified.
            self.commit(name, session, digest, quota=quota)
        except BaseException:
            self._discard_quietly(session)
            raise
        return digest

    def store_stream(self, name: str, digest: str, chunks: Iterable[bytes], *,
                     size: int | None = None, owner: str | None = None,
                     progress: Callable[[], None] | None = None) -> Iterator[bytes]:
        """Store blob ``digest`` of ``name`` from ``chunks`` while passing them on.

        Yields every chunk as it is written, except the last, which is held back until
        the bytes are checked against ``digest`` (and ``size``, if given) and committed,
        quota included: whoever consumes this never receives the whole body of a blob
        that was refused. Any failure, or closing the generator before the end, discards
        the upload: nothing partial is ever stored. ``progress()`` is called every few
        seconds while bytes flow (a caller's lease renewal); it may raise to abort.
        """
        algorithm, _ = parse_digest(digest)
        cap = self.settings.max_upload_bytes
        if size is not None:
            if size > cap:
                raise UploadTooLarge(f"a blob of {size} bytes exceeds the upload limit of "
                                     f"{cap} bytes", {"limit": cap})
            self._check_quota(name, digest, size)
        session = self.start(name, owner)
        held = None
        try:
            token, _ = self._claim(name, session, 0)
            writer = self.store.upload_writer(session, 0)
            hasher = hashlib.new(algorithm)
            total, renewed = 0, time.monotonic()
            try:
                for chunk in chunks:
                    if not chunk:
                        continue
                    total += len(chunk)
                    if total > (size if size is not None else cap):
                        raise SizeInvalid(f"the blob is longer than {size or cap} bytes")
                    writer.write(chunk)
                    hasher.update(chunk)
                    if held is not None:
                        yield held
                    held = chunk
                    if time.monotonic() - renewed > self._lease.total_seconds() / 4:
                        self._renew(session, token)
                        if progress is not None:
                            progress()
                        renewed = time.monotonic()
                writer.close()
            except BaseException:
                writer.abort()
                raise
            if size is not None and total != size:
                raise SizeInvalid(f"the blob ended after {total} of {size} bytes")
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestInvalid(f"the blob has digest {actual}, not {digest}",
                                    {"expected": digest, "actual": actual})
            self._hashes[session] = (total, hasher)  # commit need not read it back
            self._release(session, token, received=total)
            self.commit(name, session, digest)
        except BaseException:
            self._discard_quietly(session)
            raise
        if held is not None:
            yield held

    async def upload_whole(self, name: str, digest: str, body: AsyncIterator[bytes],
                           length: int | None, owner: str | None = None) -> int:
        """A monolithic upload in one request (POST ?digest= or streamed PUT); on any
        failure its session and data are removed."""
        parse_digest(digest)
        cap = self.settings.max_upload_bytes
        if length is not None and length > cap:
            raise UploadTooLarge(f"a blob of {length} bytes exceeds the upload limit of "
                                 f"{cap} bytes", {"limit": cap})
        if length is not None:  # fail fast, before a byte is sent (commit re-checks)
            await anyio.to_thread.run_sync(self._check_quota, name, digest, length)
        session = await anyio.to_thread.run_sync(self.start, name, owner)
        try:
            await self.append(name, session, body, Chunk(length=length), digest)
            return await anyio.to_thread.run_sync(self.commit, name, session, digest)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._discard_quietly, session)
            raise

    def check_push(self, name: str, blobs: dict[str, int]) -> dict:
        """Whether blobs (digest -> size) about to be pushed to ``name`` fit its
        namespace's quota (``quotas.check_push``): QuotaExceeded if not."""
        with self.db.read() as conn:
            return quotas.check_push(conn, name, blobs)

    def _check_quota(self, name: str, digest: str, size: int) -> None:
        with self.db.read() as conn:
            quotas.check(conn, name, digest, size)

    def _discard_quietly(self, session: str) -> None:
        # Best effort: GC removes expired sessions anyway.
        with contextlib.suppress(Exception):
            self._discard(session)


def parse_content_range(value: str) -> tuple[int, int]:
    """Parse an upload ``Content-Range``: ``a-b`` or ``bytes a-b`` (optionally ``/total``).

    Raises BlobUploadInvalid (400) for anything else.
    """
    v = value.strip()
    if v.startswith("bytes"):
        v = v[5:].lstrip(" =")
    v = v.split("/", 1)[0].strip()
    start, sep, end = v.partition("-")
    if (not sep or not _DIGITS.fullmatch(start) or not _DIGITS.fullmatch(end)
            or max(int(start), int(end)) >= 2**63):
        raise BlobUploadInvalid(f"invalid Content-Range {value[:80]!r}")
    return int(start), int(end)
