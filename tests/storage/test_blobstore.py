"""The BlobStore contract, run against every backend (see conftest.py).

Digests are computed here with hashlib, independently of the code under test.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from registry.errors import BlobUnknown, StorageError
from registry.settings import Settings
from registry.storage import BlobStore, blob_key, open_store, quarantine_key
from registry.storage.s3 import S3BlobStore
from tests.support.processes import free_port

MiB = 1 << 20
KiB = 1 << 10


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def new_session(store: BlobStore) -> str:
    session = uuid.uuid4().hex
    store.begin_upload(session)
    return session


def write_chunk(store: BlobStore, session: str, offset: int, data: bytes,
                writes: int = 1) -> None:
    """One chunk through one writer, split into ``writes`` write() calls."""
    w = store.upload_writer(session, offset)
    step = max(1, -(-len(data) // writes))
    for i in range(0, len(data), step):
        w.write(data[i:i + step])
    w.close()


def upload(store: BlobStore, chunks: list[bytes]) -> str:
    session = new_session(store)
    offset = 0
    for chunk in chunks:
        write_chunk(store, session, offset, chunk)
        offset += len(chunk)
    return session


def read(store: BlobStore, digest: str, **kwargs) -> bytes:
    return b"".join(store.open(digest, **kwargs))


def store_blob(store: BlobStore, data: bytes, algorithm: str = "sha256") -> str:
    digest = digest_of(data, algorithm)
    session = upload(store, [data])
    assert store.commit_upload(session, len(data), digest) is True
    return digest


def upload_keys(backend, session: str) -> set[str]:
    stored = backend.keys()
    return {k for k in stored if k.startswith(f"uploads/{session}/")}


# ---- layout -----------------------------------------------------------------------------

def test_blob_key_layout(backend):
    hexdigest = hashlib.sha256(b"layout").hexdigest()
    assert blob_key(f"sha256:{hexdigest}") == f"blobs/sha256/{hexdigest[:2]}/{hexdigest}"
    sha512 = hashlib.sha512(b"layout").hexdigest()
    assert blob_key(f"sha512:{sha512}") == f"blobs/sha512/{sha512[:2]}/{sha512}"

    digest = store_blob(backend.store, b"layout")
    assert backend.keys() == {blob_key(digest)}


# ---- upload and commit ------------------------------------------------------------------

def test_chunked_upload_then_commit(backend):
    store = backend.store
    chunks = [payload(1000, 1), payload(1, 2), payload(70 * KiB, 3)]
    data = b"".join(chunks)
    session = new_session(store)
    offset = 0
    for chunk in chunks:
        write_chunk(store, session, offset, chunk, writes=3)
        offset += len(chunk)
    digest = digest_of(data)

    assert store.commit_upload(session, len(data), digest) is True
    assert store.stat(digest) == len(data)
    assert read(store, digest) == data
    assert session not in dict(store.iter_uploads())
    assert upload_keys(backend, session) == set()


def test_empty_blob(store):
    session = new_session(store)
    digest = digest_of(b"")
    assert store.commit_upload(session, 0, digest) is True
    assert store.stat(digest) == 0
    assert read(store, digest) == b""


@pytest.mark.parametrize(("offset", "length"), [
    (0, None), (0, 1), (5, None), (5, 10), (0, 100), (99, None), (99, 1), (100, None), (10, 0),
])
def test_open_with_offset_and_length(store, offset, length):
    data = payload(100, 4)
    digest = store_blob(store, data)
    end = None if length is None else offset + length
    chunks = list(store.open(digest, offset=offset, length=length, chunk_size=7))
    assert b"".join(chunks) == data[offset:end]
    assert all(0 < len(c) <= 7 for c in chunks)


def test_blob_not_visible_before_commit(store):
    data = payload(3000, 5)
    digest = digest_of(data)
    session = upload(store, [data[:1000], data[1000:]])

    assert store.stat(digest) is None
    assert digest not in dict(store.iter_blobs())
    with pytest.raises(BlobUnknown):
        read(store, digest)

    assert store.commit_upload(session, len(data), digest) is True
    assert digest in dict(store.iter_blobs())


def test_read_upload(store):
    first, second = payload(5000, 6), payload(3000, 7)
    session = upload(store, [first, second])
    data = first + second

    assert b"".join(store.read_upload(session, len(data))) == data
    # At most ``size`` bytes, whatever the chunk boundaries.
    assert b"".join(store.read_upload(session, 6000)) == data[:6000]
    assert b"".join(store.read_upload(session, 10)) == data[:10]
    pieces = list(store.read_upload(session, len(data), chunk_size=1024))
    assert b"".join(pieces) == data
    assert all(len(p) <= 1024 for p in pieces)


# ---- retried chunks ---------------------------------------------------------------------

def test_retry_after_aborted_writer(store):
    first, second = payload(2000, 8), payload(1500, 9)
    session = upload(store, [first])

    w = store.upload_writer(session, len(first))
    w.write(b"garbage from a request that failed half-way")
    w.abort()
    write_chunk(store, session, len(first), second)

    data = first + second
    assert b"".join(store.read_upload(session, len(data))) == data
    assert store.commit_upload(session, len(data), digest_of(data)) is True
    assert read(store, digest_of(data)) == data


def test_retry_after_writer_past_recorded_offset(store):
    """A chunk was stored but its offset never recorded (the request failed afterwards)."""
    first, second = payload(2000, 10), payload(1500, 11)
    session = upload(store, [first])
    write_chunk(store, session, len(first), payload(4000, 12))  # offset stays len(first)

    write_chunk(store, session, len(first), second)
    data = first + second
    assert b"".join(store.read_upload(session, len(data))) == data
    assert store.commit_upload(session, len(data), digest_of(data)) is True
    assert read(store, digest_of(data)) == data


def test_rewrite_at_earlier_offset_discards_what_was_beyond(store):
    session = upload(store, [b"0123456789", b"abcdef"])
    write_chunk(store, session, 4, b"XYZ")

    data = b"0123XYZ"
    assert b"".join(store.read_upload(session, len(data))) == data
    assert store.commit_upload(session, len(data), digest_of(data)) is True
    assert read(store, digest_of(data)) == data


# ---- existing content and concurrency ---------------------------------------------------

def test_commit_of_existing_content_returns_false(backend):
    store = backend.store
    data = payload(4000, 13)
    digest = store_blob(store, data)

    session = upload(store, [data[:100], data[100:]])
    assert store.commit_upload(session, len(data), digest) is False
    assert read(store, digest) == data
    assert [d for d, _ in store.iter_blobs()] == [digest]
    assert session not in dict(store.iter_uploads())
    assert backend.keys() == {blob_key(digest)}


def test_concurrent_uploads_of_same_content(backend):
    store = backend.store
    data = payload(300 * KiB, 14)
    digest = digest_of(data)
    barrier = threading.Barrier(2)
    results: list[bool] = []
    errors: list[BaseException] = []

    def push() -> None:
        try:
            session = new_session(store)
            for offset in range(0, len(data), 100 * KiB):
                write_chunk(store, session, offset, data[offset:offset + 100 * KiB])
            barrier.wait(timeout=30)
            results.append(store.commit_upload(session, len(data), digest))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=push) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert len(results) == 2 and any(results)
    assert store.stat(digest) == len(data)
    assert read(store, digest) == data
    assert [d for d, _ in store.iter_blobs()] == [digest]
    assert list(store.iter_uploads()) == []
    assert backend.keys() == {blob_key(digest)}


# ---- cancel, delete, listings -----------------------------------------------------------

def test_cancel_upload(backend):
    store = backend.store
    session = upload(store, [payload(1000, 15), payload(1000, 16)])
    assert session in dict(store.iter_uploads())

    store.cancel_upload(session)
    assert list(store.iter_uploads()) == []
    assert upload_keys(backend, session) == set()
    store.cancel_upload(session)  # idempotent


def test_iter_uploads(store):
    before = time.time()
    a = upload(store, [b"a" * 10])
    b = upload(store, [b"b" * 10, b"c" * 10])
    uploads = dict(store.iter_uploads())

    assert set(uploads) == {a, b}
    for modified in uploads.values():
        assert before - 5 <= modified <= time.time() + 5


def test_delete(store):
    digest = store_blob(store, b"to be deleted")
    store.delete(digest)
    assert store.stat(digest) is None
    assert digest not in dict(store.iter_blobs())
    store.delete(digest)  # missing is fine


def test_iter_blobs(store):
    before = time.time()
    digests = {store_blob(store, payload(100, seed)) for seed in range(3)}
    digests.add(store_blob(store, b"sha512 blob", algorithm="sha512"))
    listed = dict(store.iter_blobs())

    assert set(listed) == digests
    for modified in listed.values():
        assert before - 5 <= modified <= time.time() + 5


# 6 MiB: on S3 (5 MiB transfer threshold in conftest) the move is a multipart copy.
@pytest.mark.parametrize("size", [0, 1000, 6 * MiB])
def test_quarantine_moves_the_bytes_aside(backend, size):
    store = backend.store
    data = payload(size, 21)
    digest = store_blob(store, data)
    kept = store_blob(store, b"another blob")

    assert store.quarantine(digest) is True
    assert store.stat(digest) is None
    with pytest.raises(BlobUnknown):
        read(store, digest)
    assert dict(store.iter_blobs()).keys() == {kept}
    assert backend.keys() == {blob_key(kept), quarantine_key(digest)}
    assert backend.raw(quarantine_key(digest)) == data
    assert quarantine_key(digest) == "quarantine/" + blob_key(digest)[len("blobs/"):]


def test_quarantine_of_a_missing_blob_stores_nothing(backend):
    assert backend.store.quarantine(digest_of(b"never stored")) is False
    assert backend.keys() == set()


def test_commit_after_quarantine_stores_fresh_bytes(backend):
    """A re-push heals: the moved-aside digest is free again, and a second quarantine
    replaces the first copy."""
    store = backend.store
    data = payload(3000, 22)
    digest = store_blob(store, data)
    assert store.quarantine(digest) is True

    session = upload(store, [data[:1000], data[1000:]])
    assert store.commit_upload(session, len(data), digest) is True
    assert read(store, digest) == data
    assert backend.keys() == {blob_key(digest), quarantine_key(digest)}

    assert store.quarantine(digest) is True
    assert backend.keys() == {quarantine_key(digest)}
    assert backend.raw(quarantine_key(digest)) == data


def test_open_missing_blob_raises_blob_unknown(store):
    missing = digest_of(b"never stored")
    with pytest.raises(BlobUnknown):
        read(store, missing)
    with pytest.raises(BlobUnknown):
        read(store, missing, offset=3, length=5)
    assert store.stat(missing) is None


def test_redirect_url_is_off_by_default(store):
    assert store.redirect_url(store_blob(store, b"served by us")) is None


# ---- big and small chunks (S3 multipart assembly) ---------------------------------------

LAYOUTS = {
    # small chunks buffered, a big chunk arriving while the buffer holds bytes, more small
    # chunks, a big chunk copied server-side, a small last part
    "mixed": [MiB, MiB, MiB, 6 * MiB, *[100 * KiB] * 5, 6 * MiB, 2 * MiB],
    "big-only": [6 * MiB, 6 * MiB],
    "big-then-small": [6 * MiB, MiB, 300 * KiB],
    "single-big": [6 * MiB],
    "many-small": [256 * KiB] * 40,  # coalesced into an 8 MiB part plus a last part
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_small_and_big_chunks_assemble(backend, layout):
    store = backend.store
    chunks = [payload(n, seed) for seed, n in enumerate(layout)]
    data = b"".join(chunks)
    digest = digest_of(data)
    session = upload(store, chunks)

    assert store.commit_upload(session, len(data), digest) is True
    assert store.stat(digest) == len(data)
    assert hashlib.sha256(read(store, digest)).hexdigest() == digest.split(":")[1]
    assert backend.keys() == {blob_key(digest)}
    if isinstance(store, S3BlobStore):  # every multipart upload was completed or aborted
        assert store._s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("cut", [MiB + 512 * KiB, 7 * MiB])
def test_commit_takes_only_the_first_size_bytes(backend, cut):
    """Chunks holding more than ``size`` bytes: the last needed one is cut at ``size``."""
    store = backend.store
    chunks = [payload(MiB, 1), payload(6 * MiB, 2), payload(8 * MiB, 3)]
    data = b"".join(chunks)[: MiB + 6 * MiB + cut]
    digest = digest_of(data)
    session = upload(store, chunks)

    assert store.commit_upload(session, len(data), digest) is True
    assert store.stat(digest) == len(data)
    assert read(store, digest) == data


@pytest.mark.parametrize("cut", [KiB, 100 * KiB])
def test_seal_then_commit(backend, cut):
    """The service seals (truncate + make durable) outside its lock, then commits."""
    store = backend.store
    chunks = [payload(50 * KiB, 1), payload(70 * KiB, 2)]
    data = b"".join(chunks)[:cut]
    session = upload(store, chunks)
    store.seal_upload(session, len(data))
    assert b"".join(store.read_upload(session, len(data))) == data
    digest = digest_of(data)
    assert store.commit_upload(session, len(data), digest) is True
    assert read(store, digest) == data
    assert upload_keys(backend, session) == set()


# ---- S3 specifics -----------------------------------------------------------------------

@pytest.mark.s3
def test_s3_presigned_redirect(s3_server):
    store = S3BlobStore(s3_server.client(), s3_server.new_bucket(), create_bucket=True,
                        presign=True)
    digest = store_blob(store, b"fetched directly from S3")
    url = store.redirect_url(digest, expires_in=60)
    assert url is not None and blob_key(digest) in url
    assert httpx.get(url).content == b"fetched directly from S3"


@pytest.mark.s3
def test_s3_errors_are_translated(s3_server):
    store = S3BlobStore(s3_server.client(), s3_server.new_bucket())  # bucket never created
    digest = digest_of(b"x")
    # NoSuchBucket, unlike NoSuchKey, is a storage failure, not an unknown blob. (stat can't
    # tell: S3 answers a HEAD for a missing bucket with a bare 404, like a missing key.)
    with pytest.raises(StorageError) as info:
        store.open(digest)
    assert not isinstance(info.value, BlobUnknown)
    with pytest.raises(StorageError):
        list(store.iter_blobs())
    with pytest.raises(StorageError):
        store.upload_writer(uuid.uuid4().hex, 0)

    # Connection failures too (no retries, so this is quick).
    dead = boto3.session.Session().client(
        "s3", endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2))
    with pytest.raises(StorageError):
        S3BlobStore(dead, "nope").stat(digest)
    with pytest.raises(StorageError):
        S3BlobStore(dead, "nope", create_bucket=True)


@pytest.mark.s3
def test_s3_from_settings(s3_server):
    bucket = s3_server.new_bucket()
    settings = Settings(storage="s3", s3_bucket=bucket, s3_prefix="/models/",
                        s3_endpoint_url=s3_server.endpoint_url, s3_region=s3_server.region,
                        s3_access_key_id=s3_server.access_key,
                        s3_secret_access_key=s3_server.secret_key)
    store = open_store(settings)
    assert isinstance(store, S3BlobStore) and store.prefix == "models/"
    digest = store_blob(store, b"via settings")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["models/" + blob_key(digest)]


@pytest.mark.s3
def test_s3_gap_in_chunks_is_a_storage_error(s3_server):
    store = S3BlobStore(s3_server.client(), s3_server.new_bucket(), create_bucket=True)
    session = upload(store, [b"a" * 10])
    w = store.upload_writer(session, 20)  # skips bytes 10-19
    w.write(b"b" * 10)
    w.close()
    with pytest.raises(StorageError, match="gap"):
        store.commit_upload(session, 30, digest_of(b"a" * 10 + b"\0" * 10 + b"b" * 10))
    with pytest.raises(StorageError):
        store.read_upload(session, 40)


@pytest.mark.s3
def test_s3_failed_assembly_is_aborted_and_retryable(s3_server, monkeypatch):
    store = S3BlobStore(s3_server.client(), s3_server.new_bucket(), create_bucket=True)
    chunks = [payload(MiB, 1), payload(6 * MiB, 2)]
    data = b"".join(chunks)
    digest = digest_of(data)
    session = upload(store, chunks)

    def fail(**kwargs):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}},
                          "CompleteMultipartUpload")

    monkeypatch.setattr(store._s3, "complete_multipart_upload", fail)
    with pytest.raises(StorageError, match="InternalError"):
        store.commit_upload(session, len(data), digest)
    assert store.stat(digest) is None
    assert store._s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []

    monkeypatch.undo()  # the upload data is untouched: the commit can be retried
    assert store.commit_upload(session, len(data), digest) is True
    assert read(store, digest) == data
