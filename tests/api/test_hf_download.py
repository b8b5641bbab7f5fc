"""The Hugging Face Hub API's download side, in process, on both stacks: model info, tree,
paths-info, refs, commits, resolve (headers, Range, tar members), the readiness gate by
branch (not by commit id), ``main`` -> ``latest``, errors as ``huggingface_hub`` turns
them into its exceptions, and access control.

Answers are checked against the installed ``huggingface_hub``'s own parsers (``ModelInfo``,
``RepoFile`` / ``RepoFolder``, ``hf_raise_for_status``); real clients run elsewhere.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from huggingface_hub import errors as hf_errors
from huggingface_hub.hf_api import ModelInfo, RepoFile, RepoFolder
from sqlalchemy import func, update

from registry.api.hf import download
from registry.db.tables import blobs
from registry.services import hub_files
from registry.services.hub import commit_id, git_blob_id
from tests.support.auth_app import auth_client
from tests.support.gguf_files import gguf_bytes
from tests.support.hub import raised
from tests.support.model_artifacts import OLLAMA_CONFIG, push_manifest, push_safetensors
from tests.support.oci import DOCKER_MANIFEST, OCI_MANIFEST, push_blob, sha256
from tests.support.verification import FakeWorker, model_bytes, push_model, report, verify

BASE = "http://registry.test"
TITLE = "org.opencontainers.image.title"
ORAS_CONFIG = ("application/vnd.oci.empty.v1+json", b"{}")
DOCKER_CONFIG = ("application/vnd.docker.ai.model.config.v0.1+json", b'{"format": "gguf"}')


@pytest.fixture
def gate(service):
    service.verification.set_policy("gated", True, None)



def info(client, repo: str, revision: str | None = None) -> ModelInfo:
    path = f"/api/models/{repo}" + (f"/revision/{revision}" if revision else "")
    r = client.get(path)
    assert r.status_code == 200, r.text
    return ModelInfo(**r.json())


def push_files(client, name: str, tag: str, files: dict[str, bytes]) -> str:
    """An oras-style artifact: one layer per file, named by its title."""
    return push_manifest(client, name, tag, ORAS_CONFIG, [
        ("application/vnd.oci.image.layer.v1.tar", data, {TITLE: path})
        for path, data in files.items()], OCI_MANIFEST, artifactType="application/x-model")


def entries(r) -> list:
    assert r.status_code == 200, r.text
    return [RepoFile(**e) if e["type"] == "file" else RepoFolder(**e) for e in r.json()]


# ---------------------------------------------------------------- model info


def test_model_info_of_a_modelpack_safetensors_model(client):
    digest = push_safetensors(client, "team/st", "latest")
    m = info(client, "team/st")
    assert (m.id, m.sha, m.private, m.gated, m.author) == \
        ("team/st", commit_id(digest), False, False, "team")
    assert len(m.sha) == 40 and digest.startswith("sha256:" + m.sha)
    siblings = {s.rfilename: s for s in m.siblings}
    assert set(siblings) == {"model.safetensors", "config.json", "README.md"}
    config = siblings["config.json"]
    assert config.lfs is not None and config.lfs.size == config.size
    assert config.lfs.sha256 == client.head("/team/st/resolve/main/config.json") \
        .headers["X-Linked-Etag"].strip('"')
    assert siblings["model.safetensors"].lfs is None  # inside a tar layer
    assert m.library_name == "transformers" and m.pipeline_tag == "text-generation"
    assert "safetensors" in m.tags and m.card_data.library_name == "transformers"
    assert m.last_modified is not None and m.created_at is not None
    # The same commit by its id, by digest, and by branch.
    for revision in (m.sha, digest, digest.split(":")[1], "latest"):
        assert info(client, "team/st", revision).sha == m.sha


def test_ollama_model_files_modelfile_and_generated_readme(client):
    push_model(client, "team/gem", "latest", "Be terse.")
    m = info(client, "team/gem")
    names = [s.rfilename for s in m.siblings]
    assert names == ["gem.gguf", "system", "Modelfile", "README.md"]
    r = client.get("/team/gem/resolve/main/Modelfile")
    assert r.status_code == 200
    assert r.text == "FROM ./gem.gguf\nSYSTEM Be terse.\n"
    assert r.headers["ETag"] == f'"{git_blob_id(r.content)}"'
    assert "X-Linked-Etag" not in r.headers
    assert client.get("/team/gem/resolve/main/gem.gguf").content == model_bytes()
    readme = client.get("/team/gem/resolve/main/README.md").text
    assert readme.startswith("---\nlibrary_name: \"gguf\"\n")
    assert "queued" in readme and m.sha in readme
    assert m.library_name == "gguf" and "gguf" in m.tags
    # Deterministic: the same bytes (and ETag) until the verification state changes.
    assert client.get("/team/gem/resolve/main/README.md").text == readme


def test_a_modelfile_reads_each_small_layer_once_within_a_budget(client):
    """A manifest naming one license blob thousands of times (a few hundred KiB of JSON)
    must not make a Modelfile thousands of licenses long; oversized parts are left out."""
    model, license_, system = model_bytes(), b"L" * 60_000, b"Be terse."
    big = b"T" * (hub_files.MAX_SMALL_LAYER + 1)
    config = json.dumps({"model_format": "gguf"}).encode()
    for blob in (config, model, license_, system, big):
        push_blob(client, "team/many", blob)

    def desc(kind: str, data: bytes) -> dict:
        return {"mediaType": f"{hub_files.OLLAMA}{kind}", "digest": sha256(data),
                "size": len(data)}

    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": OLLAMA_CONFIG, "digest": sha256(config),
                      "size": len(config)},
           "layers": [desc("model", model), desc("template", big), desc("system", system),
                      *[desc("license", license_)] * 3000]}
    r = client.put("/v2/team/many/manifests/latest", content=json.dumps(doc),
                   headers={"Content-Type": DOCKER_MANIFEST})
    assert r.status_code == 201, r.text
    modelfile = client.get("/team/many/resolve/main/Modelfile")
    assert modelfile.status_code == 200
    text = modelfile.text
    assert text.count("LICENSE") == 1 and "L" * 60_000 in text
    assert "TEMPLATE" not in text and "SYSTEM Be terse." in text
    assert len(modelfile.content) < 70_000
    listed = {e.path: e.size for e in entries(client.post(
        "/api/models/team/many/paths-info/main", json={"paths": ["Modelfile", "LICENSE-3000"]}))}
    assert listed == {"Modelfile": len(modelfile.content), "LICENSE-3000": len(license_)}


def test_a_quarantined_blob_is_no_file(client, service):
    """What ``assay scrub`` took out of service is absent here as on ``/v2/``."""
    push_files(client, "team/q", "latest", {"a.bin": b"a" * 10, "b.bin": b"b" * 10})
    with service.db.write() as conn:
        conn.execute(update(blobs).where(blobs.c.digest == sha256(b"b" * 10))
                     .values(quarantined_at=func.now()))
    listed = [e.path for e in entries(client.get("/api/models/team/q/tree/main"))]
    assert listed == ["a.bin"]
    r = client.head("/team/q/resolve/main/b.bin")
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"
    assert client.get("/team/q/resolve/main/a.bin").content == b"a" * 10


def test_readme_tells_the_verification_and_its_etag_follows_it(client, service):
    digest = push_model(client, "team/gem", "latest")
    before = client.head("/team/gem/resolve/main/README.md").headers["ETag"]
    verify(service, "team/gem", digest, tps=33.3)
    r = client.get("/team/gem/resolve/main/README.md")
    assert r.headers["ETag"] != before
    assert "ready" in r.text and "33.3 tokens/s" in r.text and "llama.cpp" in r.text


def test_a_models_own_readme_wins_and_gives_the_card_data(client):
    own = b"---\nlicense: mit\ntags:\n- mine\n---\n# Mine\n"
    push_files(client, "team/own", "latest", {"model.gguf": gguf_bytes(), "README.md": own})
    m = info(client, "team/own")
    assert [s.rfilename for s in m.siblings] == ["model.gguf", "README.md"]
    assert m.card_data.license == "mit" and m.tags == ["mine"]
    assert client.get("/team/own/resolve/main/README.md").content == own


def test_docker_gguf_model_is_named_after_the_repository(client):
    weights = gguf_bytes()
    push_manifest(client, "team/dmr", "latest", DOCKER_CONFIG, [
        ("application/vnd.docker.ai.gguf.v3", weights, None),
        ("application/vnd.docker.ai.license", b"MIT", None)], OCI_MANIFEST)
    m = info(client, "team/dmr")
    assert [s.rfilename for s in m.siblings] == ["dmr.gguf", "LICENSE", "README.md"]
    assert client.get("/team/dmr/resolve/main/dmr.gguf").content == weights


def test_a_non_model_artifact_shows_its_files_without_readme(client):
    push_files(client, "team/files", "v1", {"notes.txt": b"hello"})
    m = info(client, "team/files", "v1")
    assert [s.rfilename for s in m.siblings] == ["notes.txt"]
    assert m.card_data is None or not m.card_data.to_dict()


# ---------------------------------------------------------------- tree and paths-info


def test_tree_root_subfolder_recursive_and_paths_info(client):
    push_files(client, "team/t", "latest", {
        "model.gguf": gguf_bytes(), "tok/a.json": b"{}", "tok/sub/b.json": b"[]"})
    root = entries(client.get("/api/models/team/t/tree/main"))
    assert [(type(e).__name__, e.path) for e in root] == [
        ("RepoFile", "README.md"), ("RepoFile", "model.gguf"), ("RepoFolder", "tok")]
    gguf = root[1]
    assert gguf.lfs.sha256 == sha256(gguf_bytes()).split(":")[1] and gguf.size == len(gguf_bytes())
    assert gguf.blob_id == git_blob_id(
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{gguf.lfs.sha256}\n"
        f"size {gguf.size}\n".encode())
    sub = entries(client.get("/api/models/team/t/tree/main/tok%2Fsub"))
    assert [e.path for e in sub] == ["tok/sub/b.json"]
    r = client.get("/api/models/team/t/tree/main/tok", params={"recursive": "true",
                                                                   "expand": "true"})
    deep = entries(r)
    assert [e.path for e in deep] == ["tok/a.json", "tok/sub", "tok/sub/b.json"]
    assert deep[0].last_commit.oid == r.headers["X-Repo-Commit"]
    assert isinstance(raised(client.get("/api/models/team/t/tree/main/nope")),
                      hf_errors.RemoteEntryNotFoundError)
    assert isinstance(raised(client.get("/api/models/team/t/tree/main/model.gguf")),
                      hf_errors.RemoteEntryNotFoundError)

    form = client.post("/api/models/team/t/paths-info/main",
                       data={"paths": ["tok", "model.gguf", "missing"], "expand": "false"})
    assert [(type(e).__name__, e.path) for e in entries(form)] == \
        [("RepoFolder", "tok"), ("RepoFile", "model.gguf")]
    as_json = client.post("/api/models/team/t/paths-info/main",
                          json={"paths": ["tok/a.json"], "expand": True})
    assert [e.path for e in entries(as_json)] == ["tok/a.json"]


def test_tree_pages_follow_the_absolute_link(client, monkeypatch):
    push_files(client, "team/many", "latest", {f"f{i}.txt": b"%d" % i for i in range(5)})
    monkeypatch.setattr(download, "PAGE", 2)
    url, seen = f"{BASE}/api/models/team/many/tree/main?recursive=true&expand=false", []
    while url:
        r = client.get(url)
        seen += [e.path for e in entries(r)]
        link = r.links.get("next", {}).get("url")
        assert link is None or link.startswith(BASE + "/api/models/team/many/tree/main?")
        url = link
    assert seen == ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt"]
    assert raised(client.get("/api/models/team/many/tree/main?cursor=%%%")).response \
        .status_code == 400


# ---------------------------------------------------------------- resolve


def test_resolve_head_get_and_ranges_of_an_lfs_file(client):
    weights = gguf_bytes()
    digest = push_files(client, "team/r", "latest", {"model.gguf": weights})
    hex_ = sha256(weights).split(":")[1]
    h = client.head("/team/r/resolve/main/model.gguf")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["Content-Length"] == str(len(weights))
    assert h.headers["X-Repo-Commit"] == commit_id(digest)
    assert h.headers["ETag"] == h.headers["X-Linked-Etag"] == f'"{hex_}"'
    assert h.headers["X-Linked-Size"] == str(len(weights))
    assert h.headers["Accept-Ranges"] == "bytes"
    # The commit maps back to the manifest.
    assert client.head(f"/team/r/resolve/{h.headers['X-Repo-Commit']}/model.gguf") \
        .status_code == 200
    assert client.get(f"/v2/team/r/manifests/{digest}").status_code == 200

    g = client.get("/team/r/resolve/main/model.gguf")
    assert g.status_code == 200 and g.content == weights
    part = client.get("/team/r/resolve/main/model.gguf", headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == weights[4:12]
    assert part.headers["Content-Range"] == f"bytes 4-11/{len(weights)}"
    tail = client.get("/team/r/resolve/main/model.gguf", headers={"Range": "bytes=-3"})
    assert tail.status_code == 206 and tail.content == weights[-3:]
    bad = client.get("/team/r/resolve/main/model.gguf",
                     headers={"Range": f"bytes={len(weights)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(weights)}"


def test_resolve_a_file_inside_a_tar_layer(client):
    push_safetensors(client, "team/st", "latest")
    h = client.head("/team/st/resolve/main/model.safetensors")
    g = client.get("/team/st/resolve/main/model.safetensors")
    assert g.status_code == 200 and h.headers["Content-Length"] == str(len(g.content))
    header_len = int.from_bytes(g.content[:8], "little")
    assert json.loads(g.content[8:8 + header_len])["model.norm.weight"]["dtype"] == "F16"
    assert "X-Linked-Etag" not in h.headers
    blob_hex, offset, size = h.headers["ETag"].strip('"').split("-")
    assert (len(blob_hex), offset, size) == (64, "512", str(len(g.content)))
    r = client.get("/team/st/resolve/main/model.safetensors", headers={"Range": "bytes=0-7"})
    assert r.status_code == 206 and r.content == g.content[:8]


def test_errors_come_out_as_huggingface_hub_exceptions(client):
    digest = push_files(client, "team/e", "latest", {"model.gguf": gguf_bytes()})
    assert isinstance(raised(client.get("/api/models/team/nope")),
                      hf_errors.RepositoryNotFoundError)
    assert isinstance(raised(client.head("/team/nope/resolve/main/x.gguf"), "HEAD"),
                      hf_errors.RepositoryNotFoundError)
    for url in ("/api/models/team/e/revision/v9", "/team/e/resolve/v9/model.gguf",
                f"/team/e/resolve/{'0' * 40}/model.gguf", "/team/e/resolve/bad..tag/x"):
        assert isinstance(raised(client.get(url)), hf_errors.RevisionNotFoundError), url
    r = client.head("/team/e/resolve/main/missing.json")
    exc = raised(r, "HEAD")
    assert isinstance(exc, hf_errors.RemoteEntryNotFoundError)
    assert r.headers["X-Repo-Commit"] == commit_id(digest)
    assert "missing.json" in r.headers["X-Error-Message"]
    for path in ("a/%2E%2E/model.gguf", "%2E%2E/x", "a//b"):
        r = client.get(f"/team/e/resolve/main/{path}")
        assert r.status_code == 400 and "X-Error-Message" in r.headers, path


def test_main_is_the_main_tag_else_latest(client):
    latest = push_files(client, "team/m", "latest", {"a.txt": b"latest"})
    assert info(client, "team/m").sha == commit_id(latest)
    main = push_files(client, "team/m", "main", {"a.txt": b"main"})
    assert info(client, "team/m").sha == commit_id(main)
    assert client.get("/team/m/resolve/main/a.txt").content == b"main"
    only = push_files(client, "team/other", "v1", {"a.txt": b"v1"})
    assert commit_id(only)
    exc = raised(client.get("/api/models/team/other"))
    assert isinstance(exc, hf_errors.RevisionNotFoundError) and "latest" in str(exc)


# ---------------------------------------------------------------- the readiness gate


def test_the_gate_by_branch_and_not_by_commit(client, service, gate):
    name = "gated/tiny"
    v1 = push_model(client, name, "latest", "v1")
    r = client.head(f"/{name}/resolve/main/tiny.gguf")
    assert isinstance(raised(r, "HEAD"), hf_errors.RevisionNotFoundError)
    assert "queued" in r.headers["X-Error-Message"]
    # By commit id: never gated.
    assert client.head(f"/{name}/resolve/{commit_id(v1)}/tiny.gguf").status_code == 200

    worker = FakeWorker(service, name, v1)
    r = client.get(f"/api/models/{name}")
    assert isinstance(raised(r), hf_errors.RevisionNotFoundError)
    assert "verifying" in r.json()["error"]
    worker.finish(report(passed=False, reason="could not load"))
    exc = raised(client.get(f"/{name}/resolve/main/tiny.gguf"))
    assert isinstance(exc, hf_errors.RevisionNotFoundError) and "failed" in str(exc)

    v2 = push_model(client, name, "latest", "v2")
    verify(service, name, v2)
    assert info(client, name).sha == commit_id(v2)
    # A newer push verifies: the branch serves the older ready one meanwhile.
    v3 = push_model(client, name, "latest", "v3")
    verifying = FakeWorker(service, name, v3)
    h = client.head(f"/{name}/resolve/main/system")
    assert h.status_code == 200 and h.headers["X-Repo-Commit"] == commit_id(v2)
    assert client.get(f"/{name}/resolve/main/system").content == b"v2"
    refs = client.get(f"/api/models/{name}/refs").json()
    assert refs["branches"] == [{"name": "latest", "ref": "refs/heads/latest",
                                 "targetCommit": commit_id(v2)}]
    # The branch's history starts at the commit it serves; v3 joins it once ready.
    history = client.get(f"/api/models/{name}/commits/main").json()
    assert [c["id"] for c in history] == [commit_id(v) for v in (v2, v1)]
    assert all(c["date"].endswith("Z") and c["title"] for c in history)
    verifying.finish(report())
    history = client.get(f"/api/models/{name}/commits/main").json()
    assert [c["id"] for c in history] == [commit_id(v) for v in (v3, v2, v1)]


# ---------------------------------------------------------------- access control


@pytest.fixture
def reg(settings):
    with auth_client(settings, users={"wanda": None, "rita": None},
                     roles={"team": {"wanda": "write", "rita": "read"}}) as c:
        access = c.app.state.registry.identities
        _, c.writer = access.create_token("wanda", "push")
        _, c.reader = access.create_token("rita", "read")
        yield c


def test_auth_anonymous_is_refused_a_reader_with_a_token_downloads(reg):
    writer = {"Authorization": f"Bearer {reg.writer}"}
    reader = {"Authorization": f"Bearer {reg.reader}"}
    reg.headers.update(writer)
    push_files(reg, "team/p", "latest", {"model.gguf": gguf_bytes()})
    del reg.headers["Authorization"]
    for method, url in (("GET", "/api/models/team/p"), ("HEAD", "/team/p/resolve/main/model.gguf"),
                        ("GET", "/api/models/team/p/tree/main")):
        r = reg.request(method, url)
        assert r.status_code == 401 and r.headers["X-Error-Code"] == "RepoNotFound", url
        assert isinstance(raised(r, method), hf_errors.RepositoryNotFoundError)
    m = ModelInfo(**reg.get("/api/models/team/p", headers=reader).json())
    assert m.private is True
    assert reg.get("/team/p/resolve/main/model.gguf", headers=reader).content == gguf_bytes()
    who = reg.get("/api/whoami-v2", headers=reader).json()
    assert (who["name"], who["type"], who["auth"]["accessToken"]["role"]) == \
        ("rita", "user", "read")
    assert [o["name"] for o in who["orgs"]] == ["team"]
    assert reg.get("/api/whoami-v2").status_code == 401


def test_whoami_with_auth_off_and_hashes(client):
    who = client.get("/api/whoami-v2").json()
    assert who["name"] == "anonymous" and who["orgs"] == []
    assert git_blob_id(b"") == hashlib.sha1(b"blob 0\0").hexdigest()
