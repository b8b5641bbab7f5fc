"""The S3 blob store (AWS S3, MinIO, or anything speaking the S3 API).

Layout under ``prefix`` in ``bucket`` (see ``registry.storage``)::

    blobs/<algorithm>/<first 2 hex>/<hex>     committed blobs (``blob_key``)
    quarantine/<algorithm>/<2 hex>/<hex>      blobs moved aside by ``assay scrub``
    uploads/<session>/<offset, 20 digits>     one object per received chunk

S3 objects can be neither appended to nor truncated, so an upload is a series of chunk
objects named by the offset they start at. Every chunk is spooled to a local temporary
file first: a request body has no length known in advance, and a file lets the managed
transfer send big chunks as a multipart upload with retried parts. Commit builds the blob
server-side from the chunks (a copy, or a multipart upload whose parts are
``UploadPartCopy`` ranges of the chunks), so a blob becomes visible only when S3
completes that one request: never half-written.

Overlapping chunks: ``upload_writer(session, offset)`` deletes every chunk starting at or
after ``offset``, so of two surviving chunks the one starting later is always the newer
one. Reading therefore cuts each chunk where the next one starts, which is exactly
"re-writing at an earlier offset discards what was beyond".

Every boto3/botocore exception is translated by ``_translated`` into ``StorageError``
(``BlobUnknown`` for a missing blob); no raw backend exception leaves this module.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import S3CopyFailedError

from registry.digests import parse_digest
from registry.errors import BlobUnknown, BlobUploadUnknown, DigestInvalid, StorageError
from registry.storage import BlobStore, UploadWriter, blob_key, quarantine_key

MiB = 1 << 20
# S3 rejects (at completion) a multipart upload whose parts, except the last, are smaller.
MIN_PART = 5 * MiB
# Largest range a single UploadPartCopy may copy.
MAX_COPY_PART = 5 * 1024 * MiB
# Small chunks are coalesced in memory and sent as parts of about this size.
BUFFER_PART = 8 * MiB
MAX_PARTS = 10_000
# DeleteObjects takes at most this many keys per request.
DELETE_BATCH = 1000
# Managed transfers (chunk uploads, single-chunk copies) use 64 MiB parts: 10,000 parts
# then allow 640 GB per object, enough for the largest model files.
DEFAULT_TRANSFER = TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB,
                                  max_concurrency=4)

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _translated(action: str, digest: str | None = None) -> Iterator[None]:
    """Run S3 calls, turning every boto3/botocore/s3transfer (and spool file) error into ours.

    With ``digest``, a missing object becomes ``BlobUnknown``; anything else is a
    ``StorageError`` naming the action and S3's error code, chained to the original.
    """
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if digest is not None and code in _NOT_FOUND:
            raise BlobUnknown(detail={"digest": digest}) from exc
        raise StorageError(f"S3 {action} failed: {code or exc}", {"action": action}) from exc
    except (BotoCoreError, Boto3Error, S3CopyFailedError, OSError) as exc:
        raise StorageError(f"S3 {action} failed: {exc}", {"action": action}) from exc


@dataclass(frozen=True)
class _Chunk:
    offset: int
    size: int
    key: str
    modified: float


@dataclass(frozen=True)
class _Segment:
    """The bytes ``[start, end)`` of chunk object ``key`` (whose full size is ``object_size``)."""

    key: str
    start: int
    end: int
    object_size: int


class S3BlobStore(BlobStore):
    """Blobs and upload chunks as objects in one bucket, under an optional key prefix.

    ``client`` is a boto3 S3 client (thread-safe; the store is shared by worker threads).
    ``prefix`` is normalised to end in ``/`` when not empty. With ``create_bucket`` the
    bucket is created now if missing. With ``presign``, ``redirect_url`` hands clients a
    presigned GET URL; it is off by default because the endpoint the registry reaches
    (e.g. ``http://minio:9000`` inside compose) is often not one clients can reach.
    Chunks are spooled in ``spool_dir`` (the system temp dir by default).

    Concurrent writers to the *same* session are not supported (the registry serialises
    them); concurrent commits of the same digest are: both complete, and since both hold
    the same bytes, whichever S3 applies last leaves the same blob.
    """

    def __init__(self, client, bucket: str, prefix: str = "", *, create_bucket: bool = False,
                 presign: bool = False, transfer_config: TransferConfig | None = None,
                 spool_dir: str | None = None):
        self._s3 = client
        self.bucket = bucket
        stripped = prefix.strip("/")
        self.prefix = f"{stripped}/" if stripped else ""
        self.presign = presign
        self._transfer = transfer_config or DEFAULT_TRANSFER
        self._spool_dir = spool_dir
        if create_bucket:
            self._ensure_bucket()

    @classmethod
    def from_settings(cls, settings) -> S3BlobStore:
        """Build a client from ``settings.s3_*`` (path-style addressing for custom endpoints)."""
        # MinIO and most self-hosted S3 servers do not resolve bucket.host virtual hosts.
        s3_options = {"addressing_style": "path"} if settings.s3_endpoint_url else None
        config = Config(retries={"mode": "standard", "max_attempts": 5},
                        max_pool_connections=32, s3=s3_options)
        with _translated("client setup"):
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=settings.s3_secret_access_key,
                config=config,
            )
        return cls(client, settings.s3_bucket, settings.s3_prefix,
                   create_bucket=settings.s3_create_bucket,
                   presign=getattr(settings, "s3_presign", False))

    def _ensure_bucket(self) -> None:
        with _translated("create_bucket"):
            try:
                self._s3.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _code(exc) not in _NO_BUCKET:
                    raise
            kwargs = {}
            region = self._s3.meta.region_name
            # us-east-1 is the one region that rejects an explicit LocationConstraint.
            if region and region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self._s3.create_bucket(Bucket=self.bucket, **kwargs)
            except ClientError as exc:
                # Another process created it between our HEAD and CREATE.
                if _code(exc) != "BucketAlreadyOwnedByYou":
                    raise

    def ping(self) -> None:
        with _translated("head_bucket"):
            self._s3.head_bucket(Bucket=self.bucket)

    # ---- keys and listings -------------------------------------------------
    def _blob(self, digest: str) -> str:
        return self.prefix + blob_key(digest)

    def _session_prefix(self, session: str) -> str:
        # Session ids become key components: one with "/" could reach another session.
        if not session or "/" in session:
            raise BlobUploadUnknown(detail={"session": session})
        return f"{self.prefix}uploads/{session}/"

    def _list(self, prefix: str) -> Iterator[dict]:
        with _translated("list_objects_v2"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                yield from page.get("Contents", ())

    def _chunks(self, session: str) -> list[_Chunk]:
        """The session's chunk objects in offset order."""
        base = self._session_prefix(session)
        chunks = []
        for obj in self._list(base):
            name = obj["Key"][len(base):]
            if name.isdigit():
                chunks.append(_Chunk(int(name), obj["Size"], obj["Key"],
                                     obj["LastModified"].timestamp()))
        chunks.sort(key=lambda c: c.offset)
        return chunks

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i:i + DELETE_BATCH]]
            with _translated("delete_objects"):
                resp = self._s3.delete_objects(Bucket=self.bucket,
                                               Delete={"Objects": batch, "Quiet": True})
            # DeleteObjects answers 200 even when single keys fail.
            if resp.get("Errors"):
                err = resp["Errors"][0]
                raise StorageError(f"S3 delete_objects failed for {len(resp['Errors'])} keys: "
                                   f"{err.get('Code')} {err.get('Key')}")

    def _plan(self, session: str, size: int) -> list[_Segment]:
        """The chunk ranges making up the first ``size`` bytes of an upload, in order.

        A chunk is cut where the next (newer) one starts; a gap, or fewer than ``size``
        bytes in total, raises StorageError.
        """
        chunks = self._chunks(session)
        segments: list[_Segment] = []
        pos = 0
        for i, chunk in enumerate(chunks):
            if pos >= size:
                break
            if chunk.offset != pos:
                raise StorageError(f"upload {session} has a gap: bytes {pos}-{chunk.offset - 1} "
                                   "are missing")
            end = min(chunk.offset + chunk.size, size)
            if i + 1 < len(chunks):
                end = min(end, chunks[i + 1].offset)
            if end > pos:
                segments.append(_Segment(chunk.key, pos - chunk.offset, end - chunk.offset,
                                         chunk.size))
            pos = end
        if pos < size:
            raise StorageError(f"upload {session} holds {pos} bytes, {size} were expected")
        return segments

    def _read_range(self, key: str, start: int, end: int,
                    chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the bytes ``[start, end)`` of an object (``end > start``)."""
        with _translated("get_object"):
            resp = self._s3.get_object(Bucket=self.bucket, Key=key,
                                       Range=f"bytes={start}-{end - 1}")
        yield from self._iter_body(resp["Body"], chunk_size)

    @staticmethod
    def _iter_body(body, chunk_size: int) -> Iterator[bytes]:
        # The stream is closed even when the consumer stops early (a client hung up).
        with _translated("read"), contextlib.closing(body):
            yield from body.iter_chunks(chunk_size)

    # ---- committed blobs ---------------------------------------------------
    def stat(self, digest: str) -> int | None:
        with _translated("head_object"):
            try:
                resp = self._s3.head_object(Bucket=self.bucket, Key=self._blob(digest))
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    return None
                raise
        return int(resp["ContentLength"])

    def open(self, digest: str, offset: int = 0, length: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Ranged GET, issued now (so BlobUnknown is raised by this call, not by iteration).

        A range starting at or past the end yields nothing, as reading a file would.
        """
        if length is not None and length <= 0:
            if self.stat(digest) is None:
                raise BlobUnknown(detail={"digest": digest})
            return iter(())
        kwargs = {"Bucket": self.bucket, "Key": self._blob(digest)}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{last}"
        with _translated("get_object", digest):
            try:
                resp = self._s3.get_object(**kwargs)
            except ClientError as exc:
                # A missing key answers NoSuchKey first, so the blob exists here.
                if _code(exc) == "InvalidRange":
                    return iter(())
                raise
        return self._iter_body(resp["Body"], chunk_size)

    def delete(self, digest: str) -> None:
        with _translated("delete_object"):
            # S3 answers 204 for a missing key too.
            self._s3.delete_object(Bucket=self.bucket, Key=self._blob(digest))

    def quarantine(self, digest: str) -> bool:
        """S3 cannot rename: a managed server-side copy (multipart above the threshold,
        so blobs over CopyObject's 5 GB limit work), then the original is deleted. The
        blob stays served until the delete; a failure before it leaves it in place."""
        if self.stat(digest) is None:
            return False
        source = {"Bucket": self.bucket, "Key": self._blob(digest)}
        try:
            with _translated("copy", digest):
                self._s3.copy(source, self.bucket, self.prefix + quarantine_key(digest),
                              Config=self._transfer)
        except BlobUnknown:  # deleted since the stat
            return False
        self.delete(digest)
        return True

    def iter_blobs(self) -> Iterator[tuple[str, float]]:
        """Every well-formed ``blobs/<alg>/<2 hex>/<hex>`` key; stray keys are ignored."""
        base = f"{self.prefix}blobs/"
        for obj in self._list(base):
            parts = obj["Key"][len(base):].split("/")
            if len(parts) != 3 or parts[2][:2] != parts[1]:
                continue
            digest = f"{parts[0]}:{parts[2]}"
            try:
                parse_digest(digest)
            except DigestInvalid:
                continue
            yield digest, obj["LastModified"].timestamp()

    def redirect_url(self, digest: str, expires_in: int = 600) -> str | None:
        if not self.presign:
            return None
        with _translated("generate_presigned_url"):
            return self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._blob(digest)},
                ExpiresIn=expires_in)

    # ---- uploads -----------------------------------------------------------
    def begin_upload(self, session: str) -> None:
        """Nothing to prepare: chunk objects need no directory. Validates the id only."""
        self._session_prefix(session)

    def upload_writer(self, session: str, offset: int) -> UploadWriter:
        stale = [c.key for c in self._chunks(session) if c.offset >= offset]
        self._delete_keys(stale)
        return _S3UploadWriter(self, f"{self._session_prefix(session)}{offset:020d}")

    def read_upload(self, session: str, size: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the first ``size`` bytes; the chunk list is checked by this call already."""
        segments = self._plan(session, size)

        def stream() -> Iterator[bytes]:
            for seg in segments:
                yield from self._read_range(seg.key, seg.start, seg.end, chunk_size)

        return stream()

    def commit_upload(self, session: str, size: int, digest: str) -> bool:
        final = self._blob(digest)
        if self.stat(digest) is not None:
            self.cancel_upload(session)
            return False
        segments = self._plan(session, size)
        if not segments:
            with _translated("put_object"):
                self._s3.put_object(Bucket=self.bucket, Key=final, Body=b"")
        elif len(segments) == 1 and segments[0].start == 0 and \
                segments[0].end == segments[0].object_size:
            # One whole chunk: a managed server-side copy (multipart above the threshold,
            # so chunks over CopyObject's 5 GB limit work; s3transfer aborts on failure).
            with _translated("copy"):
                self._s3.copy({"Bucket": self.bucket, "Key": segments[0].key},
                              self.bucket, final, Config=self._transfer)
        else:
            self._assemble(final, segments)
        self.cancel_upload(session)
        return True

    def _assemble(self, final: str, segments: list[_Segment]) -> None:
        """Build ``final`` from the segments as one multipart upload, aborted on any failure.

        Segments of at least MIN_PART bytes are copied server-side; smaller ones are
        downloaded into a buffer sent as parts of at least MIN_PART (only the last part may
        be smaller). A big segment met while the buffer holds bytes first tops the buffer
        up to MIN_PART from its head, so at most 5 MiB of it passes through us.
        """
        with _translated("create_multipart_upload"):
            upload_id = self._s3.create_multipart_upload(Bucket=self.bucket,
                                                         Key=final)["UploadId"]
        target = {"Bucket": self.bucket, "Key": final, "UploadId": upload_id}
        parts: list[dict] = []
        buf = bytearray()

        def next_part() -> int:
            if len(parts) >= MAX_PARTS:
                raise StorageError(f"blob needs more than {MAX_PARTS} multipart parts")
            return len(parts) + 1

        def flush() -> None:
            n = next_part()
            with _translated("upload_part"):
                etag = self._s3.upload_part(**target, PartNumber=n, Body=bytes(buf))["ETag"]
            parts.append({"PartNumber": n, "ETag": etag})
            buf.clear()

        def copy(key: str, start: int, end: int) -> None:
            # Equal pieces of at most MAX_COPY_PART: each stays >= MIN_PART when the range is.
            pieces = -(-(end - start) // MAX_COPY_PART)
            step = -(-(end - start) // pieces)
            for a in range(start, end, step):
                b = min(a + step, end)
                n = next_part()
                with _translated("upload_part_copy"):
                    resp = self._s3.upload_part_copy(
                        **target, PartNumber=n, CopySource={"Bucket": self.bucket, "Key": key},
                        CopySourceRange=f"bytes={a}-{b - 1}")
                parts.append({"PartNumber": n, "ETag": resp["CopyPartResult"]["ETag"]})

        try:
            for seg in segments:
                pos = seg.start
                if buf and seg.end - pos >= MIN_PART:
                    take = max(MIN_PART - len(buf), 0)
                    if take:
                        for data in self._read_range(seg.key, pos, pos + take):
                            buf += data
                        pos += take
                    flush()
                if not buf and seg.end - pos >= MIN_PART:
                    copy(seg.key, pos, seg.end)
                elif seg.end > pos:
                    for data in self._read_range(seg.key, pos, seg.end):
                        buf += data
                        if len(buf) >= BUFFER_PART:
                            flush()
            if buf:
                flush()
            with _translated("complete_multipart_upload"):
                self._s3.complete_multipart_upload(**target, MultipartUpload={"Parts": parts})
        except BaseException:
            # Parts of an unfinished multipart upload are stored (and billed) until aborted.
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(**target)
            raise

    def cancel_upload(self, session: str) -> None:
        self._delete_keys([c.key for c in self._chunks(session)])

    def iter_uploads(self) -> Iterator[tuple[str, float]]:
        """Sessions with at least one chunk object, with their newest chunk's time."""
        base = f"{self.prefix}uploads/"
        newest: dict[str, float] = {}
        for obj in self._list(base):
            session = obj["Key"][len(base):].split("/", 1)[0]
            modified = obj["LastModified"].timestamp()
            newest[session] = max(newest.get(session, modified), modified)
        yield from newest.items()


class _S3UploadWriter(UploadWriter):
    """Spools one chunk to a named temporary file; ``close`` uploads it as one object.

    The named file is deleted when closed; ``upload_file`` reopens it by name, so the
    managed transfer reads parts from disk instead of buffering them in memory.
    """

    def __init__(self, store: S3BlobStore, key: str):
        self._store = store
        self._key = key
        self._size = 0
        with _translated("spool"):
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close/abort
                prefix="assay-chunk-", dir=store._spool_dir)

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise StorageError("write to a closed upload writer")
        with _translated("spool"):
            self._file.write(data)
        self._size += len(data)

    def close(self) -> None:
        """Upload the chunk; once this returns it is durable. Idempotent."""
        if self._file is None:
            return
        f, self._file = self._file, None
        try:
            # An empty chunk adds nothing; storing no object keeps the chunk list simple.
            if self._size:
                with _translated("upload"):
                    f.flush()
                    self._store._s3.upload_file(f.name, self._store.bucket, self._key,
                                                Config=self._store._transfer)
        finally:
            f.close()

    def abort(self) -> None:
        """Drop the spooled bytes; nothing is uploaded. Idempotent."""
        if self._file is not None:
            f, self._file = self._file, None
            with _translated("spool"):
                f.close()
