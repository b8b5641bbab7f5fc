"""worker.materialize.Materializer against a real filesystem store (blobs read in place)
and a real S3-speaking server (blobs downloaded once into a bounded LRU cache).

Model layouts are built the way the worker gets them: a manifest's JSON through
``parse_manifest`` and ``classify``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from registry.formats.classify import ModelFormat, classify
from registry.manifests import OCI_MANIFEST, parse_manifest
from registry.storage import BlobStore
from registry.storage.filesystem import FilesystemBlobStore
from registry.storage.s3 import S3BlobStore
from worker.materialize import LayoutUnsupported, MaterializeError, Materializer

EMPTY = "application/vnd.oci.empty.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
DOCKER_GGUF = "application/vnd.docker.ai.gguf.v3"
MODELPACK = "application/vnd.cncf.model.manifest.v1+json"
MP_WEIGHT = "application/vnd.cncf.model.weight.v1."
MP_CONFIG = "application/vnd.cncf.model.weight.config.v1."
LAYER = "application/vnd.oci.image.layer.v1.tar"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"
GiB = 1 << 30


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put(store: BlobStore, data: bytes) -> str:
    digest = digest_of(data)
    session = uuid.uuid4().hex
    store.begin_upload(session)
    w = store.upload_writer(session, 0)
    w.write(data)
    w.close()
    store.seal_upload(session, len(data))
    store.commit_upload(session, len(data), digest)
    return digest


def model_format(store: BlobStore, layers: list[tuple[str, bytes, dict | None]],
                 artifact_type: str | None = None) -> ModelFormat:
    """Store the layers' blobs; the model layout of an OCI manifest listing them."""
    descriptors = []
    for media_type, data, notes in layers:
        d = {"mediaType": media_type, "digest": put(store, data), "size": len(data)}
        if notes:
            d["annotations"] = notes
        descriptors.append(d)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": EMPTY, "digest": digest_of(b"{}"), "size": 2},
           "layers": descriptors}
    if artifact_type:
        doc["artifactType"] = artifact_type
    fmt = classify(parse_manifest(json.dumps(doc).encode(), OCI_MANIFEST))
    assert fmt is not None, doc
    return fmt


def gguf(tag: str, size: int = 1000) -> bytes:
    """Bytes standing in for a GGUF file (the materializer never parses them)."""
    return (b"GGUF" + tag.encode() * size)[:size]


def tar_of(files: dict[str, bytes], gz: bool = False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = out.getvalue()
    return gzip.compress(raw) if gz else raw


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def work_dirs(cache: Path) -> list[Path]:
    work = cache / "work"
    return sorted(work.iterdir()) if work.exists() else []


# -------------------------------------------------------------------- filesystem store


@pytest.fixture
def fs_store(tmp_path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "storage", fsync=False)


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "model-cache"


def test_single_gguf_is_handed_over_in_place(fs_store, cache):
    data = gguf("a")
    fmt = model_format(fs_store, [(OLLAMA_MODEL, data, None)])
    m = Materializer(fs_store, cache, GiB)
    assert m.in_place
    with m.model(fmt) as path:
        blob = fs_store.blob_path(digest_of(data))
        assert path == blob
        assert path.read_bytes() == data
        assert path.stat().st_nlink == 1  # no copy, no link
        assert work_dirs(cache) == []
    assert blob.read_bytes() == data
    assert not (cache / "blobs").exists()  # nothing is cached from a filesystem store


def test_directory_model_is_hard_links_named_by_file_path(fs_store, cache):
    files = {"model.safetensors": b"safetensors weights",
             "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
             "tokenizer/tokenizer.json": b'{"model": {}}',
             "README.md": b"not a model file, but a file of the model"}
    fmt = model_format(fs_store, [(LAYER, data, {TITLE: name}) for name, data in files.items()])
    assert fmt.weight_format == "safetensors"
    m = Materializer(fs_store, cache, GiB)
    with m.model(fmt) as path:
        assert path.is_dir() and path.parent == cache / "work"
        assert tree(path) == files
        for name, data in files.items():
            blob = fs_store.blob_path(digest_of(data))
            assert (path / name).stat().st_ino == blob.stat().st_ino, name
    assert not path.exists()
    assert work_dirs(cache) == []
    for data in files.values():  # the store's blobs are untouched
        assert fs_store.blob_path(digest_of(data)).read_bytes() == data


def test_sharded_gguf_is_the_first_shard_next_to_the_others(fs_store, cache):
    one, two = gguf("1"), gguf("2")
    fmt = model_format(fs_store, [
        (DOCKER_GGUF, one, {FILEPATH: "model-00001-of-00002.gguf"}),
        (DOCKER_GGUF, two, {FILEPATH: "model-00002-of-00002.gguf"}),
    ])
    with Materializer(fs_store, cache, GiB).model(fmt) as path:
        assert path.name == "model-00001-of-00002.gguf" and path.read_bytes() == one
        assert path.stat().st_ino == fs_store.blob_path(digest_of(one)).stat().st_ino
        assert (path.parent / "model-00002-of-00002.gguf").read_bytes() == two
    assert work_dirs(cache) == []


def test_same_blob_under_two_paths(fs_store, cache):
    shared = b'{"same": "content"}'
    fmt = model_format(fs_store, [(LAYER, b"weights", {TITLE: "model.safetensors"}),
                                  (LAYER, shared, {TITLE: "config.json"}),
                                  (LAYER, shared, {TITLE: "generation_config.json"})])
    with Materializer(fs_store, cache, GiB).model(fmt) as path:
        assert tree(path) == {"model.safetensors": b"weights", "config.json": shared,
                              "generation_config.json": shared}


def test_tar_layers_are_unpacked(fs_store, cache):
    weights = b"safetensors weights in a tar"
    configs = {"config.json": b'{"hidden_size": 8}', "tokenizer.json": b"{}"}
    fmt = model_format(fs_store, [
        (MP_WEIGHT + "tar", tar_of({"model.safetensors": weights}),
         {FILEPATH: "model.safetensors"}),
        (MP_CONFIG + "tar+gzip", tar_of(configs, gz=True), {FILEPATH: "config.json"}),
    ], MODELPACK)
    assert [f.archive for f in fmt.files] == ["tar", "tar+gzip"]
    with Materializer(fs_store, cache, GiB).model(fmt) as path:
        assert tree(path) == {"model.safetensors": weights, **configs}
    assert work_dirs(cache) == []


def test_gguf_in_a_tar_layer_is_unpacked_even_in_place(fs_store, cache):
    data = gguf("t")
    fmt = model_format(fs_store, [(MP_WEIGHT + "tar", tar_of({"model.gguf": data}),
                                   {FILEPATH: "model.gguf"})], MODELPACK)
    with Materializer(fs_store, cache, GiB).model(fmt) as path:
        assert path.parent.parent == cache / "work"
        assert path.name == "model.gguf" and path.read_bytes() == data


def test_tar_zstd_is_layout_unsupported(fs_store, cache):
    fmt = model_format(fs_store, [
        (MP_WEIGHT + "tar+zstd", b"\x28\xb5\x2f\xfd not really zstd",
         {FILEPATH: "model.safetensors"}),
        (MP_CONFIG + "raw", b"{}", {FILEPATH: "config.json"}),
    ], MODELPACK)
    with pytest.raises(LayoutUnsupported, match="tar\\+zstd"), \
            Materializer(fs_store, cache, GiB).model(fmt):
        pytest.fail("a tar+zstd layer was handed over")
    assert work_dirs(cache) == []


def test_a_broken_tar_is_layout_unsupported(fs_store, cache):
    fmt = model_format(fs_store, [(MP_WEIGHT + "tar", b"this is not a tar archive" * 40,
                                   {FILEPATH: "model.safetensors"})], MODELPACK)
    with pytest.raises(LayoutUnsupported), Materializer(fs_store, cache, GiB).model(fmt):
        pytest.fail("a broken tar was handed over")
    assert work_dirs(cache) == []


@pytest.mark.parametrize("path", ["../x.safetensors", "a/../../x.safetensors",
                                  "/tmp/x.safetensors", "../../../../x.safetensors"])
def test_path_traversal_is_refused(fs_store, cache, tmp_path, path):
    fmt = model_format(fs_store, [(LAYER, b"weights", {TITLE: path})])
    assert fmt.weights[0].path == path
    with pytest.raises(LayoutUnsupported, match="refusing"), \
            Materializer(fs_store, cache, GiB).model(fmt):
        pytest.fail(f"{path} was placed")
    assert work_dirs(cache) == []
    assert not list(tmp_path.rglob("x.safetensors"))
    assert not Path("/tmp/x.safetensors").exists()


def test_a_config_file_path_traversal_is_refused(fs_store, cache, tmp_path):
    fmt = model_format(fs_store, [(LAYER, b"weights", {TITLE: "model.safetensors"}),
                                  (LAYER, b"{}", {TITLE: "../config.json"})])
    with pytest.raises(LayoutUnsupported), Materializer(fs_store, cache, GiB).model(fmt):
        pytest.fail("../config.json was placed")
    assert not (cache / "work" / "config.json").exists()
    assert work_dirs(cache) == []


def test_a_tar_member_escaping_the_work_directory_is_refused(fs_store, cache, tmp_path):
    fmt = model_format(fs_store, [(MP_WEIGHT + "tar",
                                   tar_of({"../escaped.safetensors": b"weights"}),
                                   {FILEPATH: "model.safetensors"})], MODELPACK)
    with pytest.raises(LayoutUnsupported), Materializer(fs_store, cache, GiB).model(fmt):
        pytest.fail("an escaping tar member was unpacked")
    assert not list(tmp_path.rglob("escaped.safetensors"))


def test_colliding_file_paths_are_the_models_fault_not_the_infrastructures(fs_store, cache):
    # "config" is a file and also the directory of "config/extra.json": the model cannot
    # be laid out as pushed, which no retry changes (LayoutUnsupported, not the
    # MaterializeError that re-queues the job).
    fmt = model_format(fs_store, [(LAYER, b"weights", {TITLE: "model.safetensors"}),
                                  (LAYER, b"a file", {TITLE: "config"}),
                                  (LAYER, b"{}", {TITLE: "config/extra.json"})])
    with pytest.raises(LayoutUnsupported), Materializer(fs_store, cache, GiB).model(fmt):
        pytest.fail("colliding paths were laid out")
    assert work_dirs(cache) == []


def test_missing_blob_is_an_infrastructure_error(fs_store, cache):
    data = gguf("gone")
    fmt = model_format(fs_store, [(OLLAMA_MODEL, data, None)])
    fs_store.delete(digest_of(data))
    m = Materializer(fs_store, cache, GiB)
    with pytest.raises(MaterializeError, match="missing"), m.model(fmt):
        pytest.fail("a missing blob was handed over")
    tensors = model_format(fs_store, [(LAYER, b"w", {TITLE: "model.safetensors"})])
    fs_store.delete(digest_of(b"w"))
    with pytest.raises(MaterializeError), m.model(tensors):
        pytest.fail("a missing blob was handed over")
    assert work_dirs(cache) == []


# --------------------------------------------------------------------------- S3 store


class CountingS3(S3BlobStore):
    """An S3 store that counts reads (to prove the cache is used) and can lie."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opens: list[str] = []
        self.corrupt = False

    def open(self, digest, offset=0, length=None, chunk_size=1 << 20):
        self.opens.append(digest)
        chunks = super().open(digest, offset, length, chunk_size)
        if not self.corrupt:
            return chunks
        data = bytearray(b"".join(chunks))
        data[0] ^= 0xFF
        return iter([bytes(data)])


@pytest.fixture
def s3_store(s3_server) -> CountingS3:
    return CountingS3(s3_server.client(), s3_server.new_bucket(), "assay/", create_bucket=True)


def cached_path(cache: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return cache / "blobs" / algorithm / hexdigest


def cache_files(cache: Path) -> list[Path]:
    base = cache / "blobs"
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


@pytest.mark.s3
def test_s3_blob_is_downloaded_once_and_reused(s3_store, cache):
    data = gguf("s3", 5000)
    fmt = model_format(s3_store, [(OLLAMA_MODEL, data, None)])
    digest = digest_of(data)
    m = Materializer(s3_store, cache, GiB)
    assert not m.in_place
    path = m.blob(digest, len(data))
    assert path == cached_path(cache, digest) and path.read_bytes() == data
    assert s3_store.opens == [digest]
    assert m.blob(digest, len(data)) == path
    assert s3_store.opens == [digest]

    # A job works on a hard link to the cache entry, named like the model file.
    with m.model(fmt) as work:
        assert work.parent.parent == cache / "work" and work.name == "model.gguf"
        assert work.read_bytes() == data
        assert work.stat().st_ino == path.stat().st_ino
    assert not work.exists() and path.exists()
    with m.model(fmt) as again:
        assert again.read_bytes() == data
    # Another worker process sharing the cache directory reuses it too.
    with Materializer(s3_store, cache, GiB).model(fmt) as other:
        assert other.read_bytes() == data
    assert s3_store.opens == [digest]
    assert cache_files(cache) == [path]  # no temporary files left behind


@pytest.mark.s3
def test_s3_directory_model_and_tar_layers(s3_store, cache):
    weights = b"safetensors weights"
    configs = {"config.json": b'{"hidden_size": 8}', "tokenizer.json": b"{}"}
    fmt = model_format(s3_store, [
        (MP_WEIGHT + "raw", weights, {FILEPATH: "model.safetensors"}),
        (MP_CONFIG + "tar", tar_of(configs), {FILEPATH: "config.json"}),
    ], MODELPACK)
    m = Materializer(s3_store, cache, GiB)
    with m.model(fmt) as path:
        assert tree(path) == {"model.safetensors": weights, **configs}
    assert len(s3_store.opens) == 2
    assert work_dirs(cache) == []


@pytest.mark.s3
def test_s3_digest_is_verified(s3_store, cache):
    data = gguf("bad", 3000)
    digest = put(s3_store, data)
    s3_store.corrupt = True
    m = Materializer(s3_store, cache, GiB)
    with pytest.raises(MaterializeError, match="another digest"):
        m.blob(digest, len(data))
    assert cache_files(cache) == []  # neither the bad bytes nor a temporary file stay
    s3_store.corrupt = False
    assert m.blob(digest, len(data)).read_bytes() == data


@pytest.mark.s3
def test_s3_cache_entry_of_the_wrong_size_is_fetched_again(s3_store, cache):
    data = gguf("trunc", 3000)
    digest = put(s3_store, data)
    stale = cached_path(cache, digest)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(data[:100])  # e.g. left by a crash of an older version
    m = Materializer(s3_store, cache, GiB)
    assert m.blob(digest, len(data)).read_bytes() == data
    assert s3_store.opens == [digest]


@pytest.mark.s3
def test_s3_eviction_between_lookup_and_link_is_not_a_dangling_file(s3_store, cache):
    # Another worker evicts the cache entry after blob() found it and before the job
    # linked it. The job must get the file (fetched again) or an infrastructure error
    # (retry), never a dangling symbolic link that the verifier reports as a model that
    # does not load.
    data = gguf("raced", 500)
    fmt = model_format(s3_store, [(OLLAMA_MODEL, data, None)])

    class EvictedInBetween(Materializer):
        def blob(self, digest, size):
            path = super().blob(digest, size)
            path.unlink()  # the other worker's _make_room
            return path

    m = EvictedInBetween(s3_store, cache, GiB)
    try:
        with m.model(fmt) as path:
            assert path.exists(), f"{path} -> {os.readlink(path)} dangles"
            assert path.read_bytes() == data
    except MaterializeError:
        pass


@pytest.mark.s3
def test_s3_missing_blob_is_an_infrastructure_error(s3_store, cache):
    data = gguf("never stored")
    with pytest.raises(MaterializeError):
        Materializer(s3_store, cache, GiB).blob(digest_of(data), len(data))
    assert cache_files(cache) == []


@pytest.mark.s3
def test_s3_lru_evicts_least_recently_used_first(s3_store, cache):
    a, b, c = gguf("a", 100), gguf("b", 100), gguf("c", 100)
    da, db, dc = (put(s3_store, x) for x in (a, b, c))
    m = Materializer(s3_store, cache, 250)
    pa, pb = m.blob(da, 100), m.blob(db, 100)
    now = time.time()
    os.utime(pa, (now - 300, now - 300))  # a fetched first ...
    os.utime(pb, (now - 200, now - 200))
    assert m.blob(da, 100) == pa  # ... but used again since: b is least recently used
    assert s3_store.opens == [da, db]
    assert pa.stat().st_mtime > now - 60

    pc = m.blob(dc, 100)
    assert not pb.exists()
    assert pa.read_bytes() == a and pc.read_bytes() == c
    assert sum(p.stat().st_size for p in cache_files(cache)) <= 250
    # b comes back from the store; a, now the least recently used, makes room.
    os.utime(pc, (now + 10, now + 10))
    assert m.blob(db, 100).read_bytes() == b
    assert s3_store.opens == [da, db, dc, db]
    assert not pa.exists() and pc.exists()


@pytest.mark.s3
def test_s3_a_jobs_hard_links_survive_eviction(s3_store, cache):
    data, other = gguf("model", 100), gguf("other", 100)
    fmt = model_format(s3_store, [(OLLAMA_MODEL, data, None)])
    d_other = put(s3_store, other)
    m = Materializer(s3_store, cache, 150)
    with m.model(fmt) as path:
        entry = cached_path(cache, digest_of(data))
        assert entry.exists() and path.stat().st_ino == entry.stat().st_ino
        # Another job (here or in another worker) needs the room.
        Materializer(s3_store, cache, 150).blob(d_other, 100)
        assert not entry.exists()
        assert path.read_bytes() == data  # the running job still has its file
    assert not path.exists()
    assert cache_files(cache) == [cached_path(cache, d_other)]
