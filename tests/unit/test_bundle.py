"""Offline bundles without a server: the layout tar written and read (names, determinism,
refusals), export and import through an in-process registry (``FakeRegistry``): shared
blobs once, tags and repositories in index.json, referrers and their referrers carried,
digests kept, push order, a dropped download resumed, a damaged bundle refused before
anything is sent, and memory that stays bounded for a 64 MiB blob."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import tracemalloc
from pathlib import Path

import pytest

from client.bundles.contents import Bundle
from client.bundles.export import REF_NAME, REPOSITORY, export
from client.bundles.importer import Importer
from client.bundles.layout import LayoutReader, LayoutWriter
from client.errors import ClientError, IntegrityError
from client.locations import BlobLocations
from client.progress import silent
from client.ref import parse_reference
from client.registry_client import RegistryClient
from tests.support.fake_registry import FakeRegistry, Generated

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
VERIFICATION = "application/vnd.assay.verification.v1+json"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
HOST = "registry.test:5000"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(registry: FakeRegistry, name: str, layers: list[bytes | Generated], *,
          tag: str | None = None, config: bytes = b"{}", artifact_type: str | None = None,
          subject: dict | None = None) -> dict:
    """Store an image manifest (and its blobs); its descriptor."""
    def desc(data, media_type: str) -> dict:
        size = data.size if isinstance(data, Generated) else len(data)
        return {"mediaType": media_type, "digest": registry.add_blob(data), "size": size}

    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           **({"artifactType": artifact_type} if artifact_type else {}),
           "config": desc(config, "application/vnd.oci.empty.v1+json"),
           "layers": [desc(layer, "application/octet-stream") for layer in layers],
           **({"subject": subject} if subject else {})}
    digest = registry.add_manifest(name, doc, tag)
    return {"mediaType": OCI_MANIFEST, "digest": digest,
            "size": len(registry.manifests[(name, digest)][0])}


def source() -> FakeRegistry:
    """team/a:v1 and team/b:v1 share their weights; team/a has verification results,
    which are signed; other/c:latest is an index of two manifests."""
    reg = FakeRegistry()
    weights = b"W" * 300_000
    a = image(reg, "team/a", [weights, b"a-template"], tag="v1")
    image(reg, "team/b", [weights, b"b-template"], tag="v1")
    results = image(reg, "team/a", [b'{"report": {"passed": true}}'], artifact_type=VERIFICATION,
                    subject=a)
    image(reg, "team/a", [b"signature"], artifact_type=SIGNATURE, subject=results)
    children = [image(reg, "other/c", [f"child {i}".encode()]) for i in range(2)]
    reg.add_manifest("other/c", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                 "manifests": children}, "latest")
    return reg


def client(registry: FakeRegistry) -> RegistryClient:
    """A client of ``registry`` whose blob-location cache is its own (no mount hints
    from other tests, nothing written to the home directory)."""
    return RegistryClient(parse_reference(f"{HOST}/x").registry, transport=registry,
                          credentials=None, attempts=2, backoff=0.01,
                          locations=BlobLocations(Path(tempfile.mkdtemp()) / "l.json"))


def do_export(registry: FakeRegistry, refs: list[str], path: Path):
    with client(registry) as c:
        return export([parse_reference(f"{HOST}/{r}") for r in refs], path, silent(),
                      lambda _: c)


def do_import(path: Path, registry: FakeRegistry, prefix: str | None = None, after=None):
    with LayoutReader(path) as reader, client(registry) as c:
        bundle = Bundle.read(reader, prefix)
        reader.verify(bundle.digests())
        return Importer(bundle, c, silent()).run(after)


def members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


# ---------------------------------------------------------------------------- the layout


def test_layout_is_deterministic_and_leaves_no_part_file(tmp_path):
    outputs = []
    for n in range(2):
        path = tmp_path / f"b{n}.tar"
        with LayoutWriter(path) as writer:
            writer.add_bytes(sha(b"one"), b"one")
            writer.add_stream(sha(b"two" * 10), 30, iter([b"two" * 4, b"two" * 6]))
            writer.add_bytes(sha(b"one"), b"one")  # written once
            writer.close({"schemaVersion": 2, "manifests": []})
        outputs.append(path.read_bytes())
        assert not path.with_name(path.name + ".part").exists()
    assert outputs[0] == outputs[1]
    assert members(tmp_path / "b0.tar") == [
        "oci-layout", "blobs", "blobs/sha256", f"blobs/sha256/{sha(b'one')[7:]}",
        f"blobs/sha256/{sha(b'two' * 10)[7:]}", "index.json"]
    with LayoutReader(tmp_path / "b0.tar") as reader:
        assert reader.blob(sha(b"one")) == b"one"
        assert b"".join(reader.chunks(f"blobs/sha256/{sha(b'two' * 10)[7:]}", 3, 6)) == \
            b"twotwo"


@pytest.mark.parametrize("chunks, message", [
    ([b"x" * 30], "hash to"),
    ([b"two" * 3], "ended after 9 of 30"),
    ([b"two" * 10, b"more"], "more than the 30 bytes"),
])
def test_a_blob_that_is_not_what_it_claims_fails_and_leaves_no_file(tmp_path, chunks,
                                                                    message):
    path = tmp_path / "b.tar"
    with pytest.raises(IntegrityError, match=message), LayoutWriter(path) as writer:
        writer.add_stream(sha(b"two" * 10), 30, iter(chunks))
    assert list(tmp_path.iterdir()) == []


def tar_with(path: Path, *extra: tarfile.TarInfo, layout: bool = True,
             index: bool = True) -> Path:
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        if layout:
            add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        if index:
            add("index.json", b'{"schemaVersion": 2, "manifests": []}')
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size))
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1,
            link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


BLOB = "blobs/sha256/" + "a" * 64


@pytest.mark.parametrize("extra, message", [
    (_member("../escape"), "leaves the layout"),
    (_member("/etc/passwd"), "leaves the layout"),
    (_member("blobs/../../x"), "leaves the layout"),
    (_member(BLOB, tarfile.SYMTYPE, link="/etc/passwd"), "refusing the link"),
    (_member(BLOB, tarfile.LNKTYPE, link="index.json"), "refusing the link"),
    (_member(BLOB, tarfile.CHRTYPE), "not a plain file"),
    (_member("notes.txt"), "unexpected member"),
    (_member("blobs/sha512/" + "a" * 128), "unexpected member"),
    (_member("index.json"), "appears twice"),
])
def test_unsafe_or_foreign_tars_are_refused(tmp_path, extra, message):
    with pytest.raises(ClientError, match=message):
        LayoutReader(tar_with(tmp_path / "b.tar", extra))


def test_not_a_layout(tmp_path):
    with pytest.raises(ClientError, match="no index.json"):
        LayoutReader(tar_with(tmp_path / "a.tar", index=False))
    with pytest.raises(ClientError, match="no oci-layout"):
        LayoutReader(tar_with(tmp_path / "b.tar", layout=False))
    gz = tmp_path / "c.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        tar.add(tar_with(tmp_path / "d.tar"), "inner.tar")
    with pytest.raises(ClientError, match="not an uncompressed tar"):
        LayoutReader(gz)
    with pytest.raises(ClientError, match="lists no manifests"):
        Bundle.read(LayoutReader(tmp_path / "d.tar"))


# ---------------------------------------------------------------------------- export


def test_export_names_models_and_carries_referrers_and_shared_blobs_once(tmp_path):
    reg = source()
    result = do_export(reg, ["team/a:v1", "team/b:v1", "other/c:latest", "team/a:v1"],
                       tmp_path / "bundle.tar")
    with LayoutReader(tmp_path / "bundle.tar") as reader:
        index = reader.json("index.json")
        blobs = set(reader.blob_digests())
    entries = index["manifests"]
    named = [(e["annotations"][REPOSITORY], e["annotations"].get(REF_NAME))
             for e in entries if "artifactType" not in e]
    # v1 is shared by two repositories: NAME:TAG; latest is not: the tag alone.
    assert named == [("team/a", "team/a:v1"), ("team/b", "team/b:v1"), ("other/c", "latest")]
    referrers = [(e["artifactType"], e["annotations"]) for e in entries if "artifactType" in e]
    assert referrers == [(VERIFICATION, {REPOSITORY: "team/a"}),
                         (SIGNATURE, {REPOSITORY: "team/a"})]
    assert [m.referrers for m in result.models] == [2, 0, 0]
    # Every blob and manifest of the source, each once (the weights are shared).
    stored = {d for d in reg.blobs} | {sha(c) for c, _ in reg.manifests.values()}
    assert blobs == stored and result.blobs == len(stored)
    assert len(members(tmp_path / "bundle.tar")) == len(stored) + 4  # and the layout


def test_export_without_a_referrers_api_and_a_failed_export(tmp_path):
    reg = source()
    reg.referrers_api = False
    do_export(reg, ["team/a:v1"], tmp_path / "plain.tar")
    with LayoutReader(tmp_path / "plain.tar") as reader:
        assert [e.get("artifactType") for e in reader.json("index.json")["manifests"]] == \
            [None]
    with pytest.raises(ClientError, match="404"):
        do_export(reg, ["team/a:v1", "team/nothing:v1"], tmp_path / "failed.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.tar"]


def test_a_dropped_download_resumes_with_range(tmp_path):
    reg = FakeRegistry()
    big = Generated(3 * 1024 * 1024 + 5)
    image(reg, "team/big", [big], tag="v1")
    reg.drop = (big.digest(), 1024 * 1024 + 7)
    do_export(reg, ["team/big:v1"], tmp_path / "b.tar")
    gets = [p for m, p in reg.requests if m == "GET" and big.digest() in p]
    assert len(gets) == 2
    with LayoutReader(tmp_path / "b.tar") as reader:
        reader.verify([big.digest()])


# ---------------------------------------------------------------------------- import


def test_round_trip_keeps_every_digest_and_pushes_in_order(tmp_path):
    reg = source()
    do_export(reg, ["team/a:v1", "team/b:v1", "other/c:latest"], tmp_path / "one.tar")
    target = FakeRegistry()
    seen: list[tuple[str, int]] = []  # each model, and the requests made before it was done
    imported = do_import(tmp_path / "one.tar", target,
                         after=lambda m: seen.append((m.reference, len(target.requests))))
    # Each model, then its referrers (the results, their signature) at once.
    assert [i.reference.split("@")[0] for i in imported] == [
        f"{HOST}/team/a:v1", f"{HOST}/team/a", f"{HOST}/team/a", f"{HOST}/team/b:v1",
        f"{HOST}/other/c:latest"]
    assert [r for r, _ in seen] == [i.reference for i in imported if i.entry.tag]
    assert target.manifests == reg.manifests  # byte for byte, under the same tags
    assert target.blobs == reg.blobs
    c = reg.manifests[("other/c", "latest")][0]
    children = [d["digest"] for d in json.loads(c)["manifests"]]
    a = sha(reg.manifests[("team/a", "v1")][0])
    results = next(sha(content) for (n, _), (content, _) in reg.manifests.items()
                   if json.loads(content).get("artifactType") == VERIFICATION)
    calls = [(m, p.split("/")[-2], p.rsplit("/", 1)[1]) for m, p in target.requests]
    puts = [ref for m, kind, ref in calls if (m, kind) == ("PUT", "manifests")]
    assert puts.index(children[1]) < puts.index("latest")  # children before the index
    # The subject, then its referrers' manifests with no upload between, then `after`.
    first = calls.index(("PUT", "manifests", "v1"))
    assert [ref for _, _, ref in calls[first:seen[0][1]]] == \
        ["v1", results, puts[puts.index(results) + 1]]
    assert all((m, kind) == ("PUT", "manifests") for m, kind, _ in calls[first:seen[0][1]])
    assert a in {sha(content) for content, _ in target.manifests.values()}

    # Export again from where it was imported: the same bundle, byte for byte.
    do_export(target, ["team/a:v1", "team/b:v1", "other/c:latest"], tmp_path / "two.tar")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


def test_import_under_a_prefix(tmp_path):
    do_export(source(), ["team/b:v1"], tmp_path / "b.tar")
    target = FakeRegistry()
    (imported,) = do_import(tmp_path / "b.tar", target, prefix="site")
    assert imported.reference.startswith(f"{HOST}/site/team/b:v1@")
    assert ("site/team/b", "v1") in target.manifests


def test_a_damaged_bundle_is_refused_before_anything_is_sent(tmp_path):
    do_export(source(), ["team/a:v1"], tmp_path / "b.tar")
    data = bytearray((tmp_path / "b.tar").read_bytes())
    weights = data.find(b"W" * 1000)
    data[weights + 500] ^= 1  # one bit of the weights
    (tmp_path / "b.tar").write_bytes(data)
    target = FakeRegistry()
    with pytest.raises(IntegrityError, match="damaged or was changed"):
        do_import(tmp_path / "b.tar", target)
    assert target.requests == []


def test_a_bundle_missing_a_blob_is_refused(tmp_path):
    do_export(source(), ["team/b:v1"], tmp_path / "b.tar")
    with tarfile.open(tmp_path / "b.tar") as src, \
            tarfile.open(tmp_path / "cut.tar", "w") as dst:
        for m in src.getmembers():
            if m.size != 300_000:  # the weights
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    with pytest.raises(ClientError, match="missing from the bundle"), \
            LayoutReader(tmp_path / "cut.tar") as reader:
        Bundle.read(reader)


def test_memory_stays_bounded_for_a_large_blob(tmp_path):
    """64 MiB through export and import: the client never holds a blob."""
    size = 64 * 1024 * 1024
    reg = FakeRegistry()
    big = Generated(size)
    image(reg, "team/big", [big], tag="v1")
    big.digest()  # the test's own hashing, before measuring
    target = FakeRegistry(keep_limit=0)
    tracemalloc.start()
    try:
        do_export(reg, ["team/big:v1"], tmp_path / "big.tar")
        _, exported = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        do_import(tmp_path / "big.tar", target)
        _, imported = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert target.blobs[big.digest()] == size
    assert exported < size / 8 and imported < size / 8, (exported, imported)
