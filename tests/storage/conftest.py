"""The ``store`` fixture: every test in tests/storage runs once per blob-store backend.

``backend`` also exposes the raw keys a backend holds (files under the root, or objects
under the bucket prefix) so tests can check the layout and that nothing is left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from registry.storage import BlobStore
from registry.storage.filesystem import FilesystemBlobStore
from registry.storage.s3 import S3BlobStore

MiB = 1 << 20


@dataclass
class Backend:
    name: str
    store: BlobStore
    keys: Callable[[], set[str]]  # every stored key, relative to the store's root/prefix
    raw: Callable[[str], bytes]  # the bytes stored under a key, read around the store


def _filesystem(tmp_path: Path) -> Backend:
    root = tmp_path / "storage"
    # fsync off: durability is not what these tests check, and it keeps them fast.
    store = FilesystemBlobStore(root, fsync=False)
    return Backend("filesystem", store,
                   lambda: {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()},
                   lambda key: (root / key).read_bytes())


def _s3(s3_server) -> Backend:
    client = s3_server.client()
    bucket, prefix = s3_server.new_bucket(), "assay/"
    # A 5 MiB threshold (S3's minimum part) sends the 6 MiB chunks of the tests through
    # the managed multipart upload and the multipart copy paths too.
    small_parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                                 max_concurrency=2)
    store = S3BlobStore(client, bucket, prefix, create_bucket=True, transfer_config=small_parts)

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"].removeprefix(prefix) for p in pages for o in p.get("Contents", ())}

    def raw(key: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()

    return Backend("s3", store, keys, raw)


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request, tmp_path) -> Backend:
    if request.param == "filesystem":
        return _filesystem(tmp_path)
    return _s3(request.getfixturevalue("s3_server"))


@pytest.fixture
def store(backend: Backend) -> BlobStore:
    return backend.store
