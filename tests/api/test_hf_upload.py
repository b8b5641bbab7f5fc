"""Hub API uploads over HTTP, on both stacks: create/delete a repository, preupload, the
git-LFS batch / PUT / verify, NDJSON commits into ModelPack manifests, branches and tags,
and the permissions with access control on. Requests are built by hand, as
``huggingface_hub`` sends them (``/work`` notes: hf_wire.md; ``tests/clients`` runs the
real client)."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import urlsplit

import numpy as np
import pytest
from safetensors.numpy import save
from sqlalchemy import func, select

from registry.db.tables import audit_log, blobs, manifests, tags, uploads
from registry.formats.classify import classify
from registry.manifests import parse_manifest
from tests.support.auth_app import auth_client
from tests.support.model_artifacts import push_ollama, push_safetensors
from tests.support.oci import push_blob, push_image
from tests.support.verification import push_model, verify

M = "/api/models"
WEIGHTS = save({"model.norm.weight": np.zeros(8, np.float16)})
CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}).encode()


def hexdigest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ndjson(*items) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def header(summary: str = "upload", **more) -> dict:
    return {"key": "header", "value": {"summary": summary, "description": "", **more}}


def lfs_line(path: str, data: bytes) -> dict:
    return {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": hexdigest(data),
                                        "size": len(data)}}


def file_line(path: str, data: bytes) -> dict:
    return {"key": "file", "value": {"path": path, "encoding": "base64",
                                     "content": base64.b64encode(data).decode()}}


def create(client, repo: str, **kw):
    org, _, name = repo.rpartition("/")
    return client.post("/api/repos/create", json={"name": name, "organization": org or None},
                       **kw)


def batch(client, repo: str, *datas: bytes, **kw):
    return client.post(f"/{repo}.git/info/lfs/objects/batch", **kw, json={
        "operation": "upload", "transfers": ["basic", "multipart"], "hash_algo": "sha256",
        "ref": {"name": "main"},
        "objects": [{"oid": hexdigest(d), "size": len(d)} for d in datas]})


def path_of(href: str) -> str:
    parts = urlsplit(href)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def upload(client, repo: str, data: bytes, *, put_headers=None, **kw) -> dict:
    """LFS batch, PUT (without credentials, as the client does, unless ``put_headers``)
    and verify."""
    r = batch(client, repo, data, **kw)
    assert r.status_code == 200, r.text
    obj = r.json()["objects"][0]
    if "actions" in obj:
        r = client.put(path_of(obj["actions"]["upload"]["href"]), content=data,
                       headers=put_headers)
        assert r.status_code == 200, r.text
        r = client.post(path_of(obj["actions"]["verify"]["href"]), **kw,
                        json={"oid": hexdigest(data), "size": len(data)})
        assert r.status_code == 200, r.text
    return obj


def commit(client, repo: str, *lines, branch: str = "main", **kw):
    return client.post(f"{M}/{repo}/commit/{branch}", content=ndjson(*lines),
                       headers={"Content-Type": "application/x-ndjson", **kw.pop("headers", {})},
                       **kw)


def head(service, repo: str, tag: str = "latest") -> tuple[str, dict]:
    """The manifest a tag points at. A commit to ``main`` in a repository without a
    ``main`` tag moves ``latest`` (the Hub's default branch is the OCI default tag)."""
    stored = service.manifests.get(repo, tag)
    return stored.digest, json.loads(stored.content)


def paths(manifest: dict) -> dict[str, str]:
    return {layer["annotations"]["org.cncf.model.filepath"]: layer["digest"]
            for layer in manifest["layers"]}


def count(service, table) -> int:
    with service.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def model_repo(client, repo: str = "team/gemma") -> str:
    assert create(client, repo).status_code == 200
    upload(client, repo, WEIGHTS)
    r = commit(client, repo, header("first"), lfs_line("model.safetensors", WEIGHTS),
               file_line("config.json", CONFIG))
    assert r.status_code == 200, r.text
    return r.json()["commitOid"]


# ---- repositories --------------------------------------------------------------


def test_create_repo_new_exists_and_wrong_type(client, service):
    r = create(client, "team/gemma")
    assert r.status_code == 200 and r.json()["url"] == "http://registry.test/team/gemma"
    r = create(client, "team/gemma")  # exist_ok reads "url" from the 409 too
    assert r.status_code == 409 and r.json()["url"] == "http://registry.test/team/gemma"
    assert "already exists" in r.headers["x-error-message"]
    r = client.post("/api/repos/create", json={"name": "d", "organization": "team",
                                               "type": "dataset"})
    assert r.status_code == 400 and "only model repositories" in r.json()["error"]
    assert service.audit.entries(action="repository.create")[0]["target"] == "team/gemma"
    r = client.request("DELETE", "/api/repos/delete", json={"name": "gemma",
                                                            "organization": "team"})
    assert r.status_code == 200
    r = client.request("DELETE", "/api/repos/delete", json={"name": "gemma",
                                                            "organization": "team"})
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    assert service.audit.entries(action="repository.delete")[0]["target"] == "team/gemma"


def test_preupload_says_inline_or_lfs_and_refuses_bad_paths(client):
    create(client, "team/gemma")
    r = client.post(f"{M}/team/gemma/preupload/main", json={"files": [
        {"path": "config.json", "size": 10, "sample": ""},
        {"path": "model.safetensors", "size": 5 << 20, "sample": ""}]})
    assert r.status_code == 200, r.text
    assert r.json()["files"] == [
        {"path": "config.json", "uploadMode": "regular", "shouldIgnore": False},
        {"path": "model.safetensors", "uploadMode": "lfs", "shouldIgnore": False}]
    r = client.post(f"{M}/team/gemma/preupload/main",
                    json={"files": [{"path": "../x", "size": 1, "sample": ""}]})
    assert r.status_code == 400 and "'..'" in r.json()["error"]
    r = client.post(f"{M}/team/nothing/preupload/main", json={"files": []})
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"


# ---- LFS -----------------------------------------------------------------------


def test_lfs_batch_present_only_when_linked_to_this_repo(client, service):
    create(client, "team/gemma")
    create(client, "team/other")
    push_blob(client, "team/other", WEIGHTS)  # stored, but not readable from team/gemma
    r = batch(client, "team/gemma", WEIGHTS)
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/vnd.git-lfs+json")
    body = r.json()
    assert body["transfer"] == "basic"
    obj = body["objects"][0]
    assert obj["actions"]["upload"]["href"].startswith(
        f"http://registry.test/team/gemma.git/info/lfs/objects/{hexdigest(WEIGHTS)}?size=")
    assert "header" not in obj["actions"]["upload"]  # no chunk_size: never multipart
    upload(client, "team/gemma", WEIGHTS)
    with service.db.read() as conn:  # stored once
        assert conn.execute(select(func.count()).select_from(blobs).where(
            blobs.c.digest == f"sha256:{hexdigest(WEIGHTS)}")).scalar() == 1
    assert "actions" not in batch(client, "team/gemma", WEIGHTS).json()["objects"][0]
    # Malformed objects get a per-object error; xet-only clients are refused.
    r = client.post("/team/gemma.git/info/lfs/objects/batch", json={
        "operation": "upload", "objects": [{"oid": "nothex", "size": 1}]})
    assert r.json()["objects"][0]["error"]["code"] == 422
    r = client.post("/team/gemma.git/info/lfs/objects/batch", json={
        "operation": "upload", "transfers": ["xet"], "objects": []})
    assert r.status_code == 400 and "HF_HUB_DISABLE_XET" in r.json()["error"]


def test_lfs_put_wrong_digest_or_size_stores_nothing(client, service):
    create(client, "team/gemma")
    oid = hexdigest(WEIGHTS)
    r = client.put(f"/team/gemma.git/info/lfs/objects/{oid}?size={len(WEIGHTS)}",
                   content=WEIGHTS[:-1] + b"x")
    assert r.status_code == 400
    r = client.put(f"/team/gemma.git/info/lfs/objects/{oid}?size={len(WEIGHTS) + 1}",
                   content=WEIGHTS)
    assert r.status_code == 400
    r = client.put(f"/team/gemma.git/info/lfs/objects/{oid}", content=WEIGHTS)
    assert r.status_code == 400 and "size" in r.json()["error"]
    assert count(service, blobs) == 0 and count(service, uploads) == 0
    r = client.post("/team/gemma.git/info/lfs/verify", json={"oid": oid, "size": len(WEIGHTS)})
    assert r.status_code == 404 and "upload it first" in r.json()["error"]


def test_quota_refuses_before_the_body_is_read(client, service):
    create(client, "team/gemma")
    r = client.put("/api/v1/namespaces/team", json={"quota_bytes": 10})
    assert r.status_code == 200, r.text
    r = batch(client, "team/gemma", WEIGHTS)
    assert r.status_code == 403 and "quota" in r.json()["error"]

    def body():
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    oid = hexdigest(WEIGHTS)
    r = client.put(f"/team/gemma.git/info/lfs/objects/{oid}?size={len(WEIGHTS)}",
                   content=body(), headers={"Content-Length": str(len(WEIGHTS))})
    assert r.status_code == 403 and "quota" in r.json()["error"]
    assert count(service, blobs) == 0


# ---- commits -------------------------------------------------------------------


def test_commit_records_a_modelpack_model_tagged_with_the_branch(client, service):
    oid = model_repo(client)
    digest, manifest = head(service, "team/gemma")
    assert oid == digest.removeprefix("sha256:")[:40]
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["annotations"]["org.huggingface.commit.summary"] == "first"
    assert {p: d for p, d in paths(manifest).items()} == {
        "config.json": f"sha256:{hexdigest(CONFIG)}",
        "model.safetensors": f"sha256:{hexdigest(WEIGHTS)}"}
    types = {lay["annotations"]["org.cncf.model.filepath"]: lay["mediaType"]
             for lay in manifest["layers"]}
    assert types["model.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    assert types["config.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    found = classify(parse_manifest(json.dumps(manifest).encode(), manifest["mediaType"]))
    assert found.kind == "modelpack" and found.weight_format == "safetensors"
    with service.db.read() as conn:
        status = conn.execute(select(manifests.c.status).where(
            manifests.c.digest == digest)).scalar()
    assert status == "queued"
    assert service.audit.entries(action="push")[0]["target"] == "team/gemma:latest"


def test_second_commit_carries_files_over_and_deletes_one(client, service):
    first = model_repo(client)
    r = commit(client, "team/gemma", header("second", parentCommit=first),
               file_line("README.md", b"# gemma\n"), {"key": "deletedFile",
                                                      "value": {"path": "config.json"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["commitUrl"] == f"http://registry.test/team/gemma/commit/{body['commitOid']}"
    assert body["pullRequestUrl"] is None
    _, manifest = head(service, "team/gemma")
    assert set(paths(manifest)) == {"model.safetensors", "README.md"}
    doc = next(x for x in manifest["layers"] if x["annotations"]["org.cncf.model.filepath"]
               == "README.md")
    assert doc["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    # Folders go as a whole.
    r = commit(client, "team/gemma", header(), file_line("sub/a.json", b"{}"),
               file_line("sub/b.json", b"[]"))
    assert r.status_code == 200
    r = commit(client, "team/gemma", header(),
               {"key": "deletedFolder", "value": {"path": "sub/"}})
    assert r.status_code == 200
    assert set(paths(head(service, "team/gemma")[1])) == {"model.safetensors", "README.md"}


def test_commit_on_top_of_layers_without_paths_is_refused(client, service):
    """An OCI image's unnamed layers cannot become files: refused, not dropped."""
    digest, _ = push_image(client, "team/img", "latest", layers=[b"weights"],
                           annotations=None)
    r = commit(client, "team/img", header(), file_line("config.json", CONFIG))
    assert r.status_code == 400 and "without a file path" in r.json()["error"], r.text
    assert head(service, "team/img")[0] == digest


def test_commit_on_top_of_ollama_keeps_whole_files_not_generated_ones(client, service):
    push_ollama(client, "team/llama", "latest", b"GGUF" + b"\0" * 60, system=b"be brief")
    r = commit(client, "team/llama", header(), file_line("config.json", CONFIG))
    assert r.status_code == 200, r.text
    # The GGUF and system prompt stay; the generated README and Modelfile are not stored.
    assert set(paths(head(service, "team/llama")[1])) == {"llama.gguf", "system",
                                                          "config.json"}


def test_commit_on_top_of_archive_layers_is_refused(client, service):
    push_safetensors(client, "team/tar", "latest")
    r = commit(client, "team/tar", header(), file_line("README.md", b"# x"))
    assert r.status_code == 400 and "archive layers" in r.json()["error"]


@pytest.mark.parametrize("lines, status, text", [
    ([b"not json\n"], 400, "not JSON"),
    ([{"key": "header", "value": {}}, {"key": "rename", "value": {"path": "a"}}], 400,
     "unknown operation"),
    ([{"key": "lfsFile", "value": {"path": "a", "oid": "0" * 64, "size": 1}}], 400,
     "header"),
    ([{"key": "header", "value": {}}, {"key": "lfsFile", "value": {
        "path": "x.safetensors", "algo": "sha256", "oid": "0" * 64, "size": 1}}], 400,
     "upload it first"),
    ([{"key": "header", "value": {}}, {"key": "file", "value": {
        "path": "../etc/passwd", "content": "", "encoding": "base64"}}], 400, "'..'"),
    ([{"key": "header", "value": {}}, {"key": "file", "value": {
        "path": "/abs", "content": "", "encoding": "base64"}}], 400, "absolute"),
    ([{"key": "header", "value": {}}, {"key": "file", "value": {
        "path": ".git/config", "content": "", "encoding": "base64"}}], 400, ".git"),
    ([{"key": "header", "value": {}}, {"key": "file", "value": {
        "path": "a", "content": "!!", "encoding": "base64"}}], 400, "base64"),
    ([{"key": "header", "value": {}}, {"key": "deletedFile", "value": {"path": "nope"}}],
     404, "no such file"),
])
def test_bad_commits_change_nothing(client, service, lines, status, text):
    model_repo(client)
    before = head(service, "team/gemma")[0], count(service, manifests), count(service, blobs)
    body = b"".join(x if isinstance(x, bytes) else json.dumps(x).encode() + b"\n"
                    for x in lines)
    r = client.post(f"{M}/team/gemma/commit/main", content=body)
    assert r.status_code == status and text in r.json()["error"], r.text
    assert (head(service, "team/gemma")[0], count(service, manifests),
            count(service, blobs)) == before


def test_parent_commit_mismatch_is_412(client, service):
    model_repo(client)
    r = commit(client, "team/gemma", header(parentCommit="0" * 40), file_line("a", b"a"))
    assert r.status_code == 412 and "not the head" in r.json()["error"]
    r = client.post(f"{M}/team/gemma/commit/main?create_pr=1", content=ndjson(header()))
    assert r.status_code == 400 and "pull requests" in r.json()["error"]


def test_a_commit_to_main_moves_latest_and_the_gate_keeps_serving_the_ready_one(
        client, service):
    """``main`` without a ``main`` tag is ``latest`` for uploads as for downloads: an
    Ollama model verified at ``latest``, then a Hub commit to ``main``."""
    service.verification.set_policy("gated", True, None)
    v1 = push_model(client, "gated/m", "latest")
    verify(service, "gated/m", v1)
    r = commit(client, "gated/m", header("notes"), file_line("NOTES.md", b"# notes\n"))
    assert r.status_code == 200, r.text
    with service.db.read() as conn:
        tagged = dict(conn.execute(select(tags.c.name, manifests.c.digest).join(
            manifests, manifests.c.id == tags.c.manifest_id)).all())
    assert set(tagged) == {"latest"} and tagged["latest"] != v1, tagged
    assert r.json()["commitOid"] == tagged["latest"].removeprefix("sha256:")[:40]
    # While the commit is verified, main (and ollama's :latest) still get v1.
    h = client.head("/gated/m/resolve/main/m.gguf")
    assert h.status_code == 200 and h.headers["X-Repo-Commit"] == v1[7:47]
    assert client.get("/v2/gated/m/manifests/latest").headers["Docker-Content-Digest"] == v1
    verify(service, "gated/m", tagged["latest"])
    h = client.head("/gated/m/resolve/main/NOTES.md")
    assert h.status_code == 200 and h.headers["X-Repo-Commit"] == tagged["latest"][7:47]


def test_limits_of_a_commit_are_checked_before_anything_is_stored(client, service,
                                                                  monkeypatch):
    model_repo(client)
    before = head(service, "team/gemma")[0], count(service, blobs)
    monkeypatch.setattr(service.settings, "max_manifest_bytes", 2000)
    many = [file_line(f"f{i}.json", b"{%d}" % i) for i in range(30)]
    r = commit(client, "team/gemma", header(), *many)
    assert r.status_code == 413 and "files makes a manifest" in r.json()["error"], r.text
    monkeypatch.setattr("registry.services.hub_commits.MAX_OPERATIONS", 3)
    r = commit(client, "team/gemma", header(), *many[:4])
    assert r.status_code == 400 and "at most 3 files" in r.json()["error"], r.text
    assert (head(service, "team/gemma")[0], count(service, blobs)) == before


def _race(service, monkeypatch, client, repo: str, lines: list) -> None:
    """Land the commit ``lines`` on ``repo``'s main right after the next commit has read
    the branch's head (what a second uploader racing it does)."""
    hub_commits = service.hub_commits
    read_head = type(hub_commits)._head
    raced = []

    def head_then_race(self, name, branch):
        found = read_head(self, name, branch)
        if not raced:
            raced.append(True)
            r = commit(client, repo, *lines)
            assert r.status_code == 200, r.text
        return found

    monkeypatch.setattr(type(hub_commits), "_head", head_then_race)


def test_racing_commits_both_land_and_a_stale_parent_is_412(client, service, monkeypatch):
    first = model_repo(client)
    # Without parentCommit: rebuilt on the head that moved, nothing of the other is lost.
    _race(service, monkeypatch, client, "team/gemma", [header("a"), file_line("a.txt", b"a")])
    r = commit(client, "team/gemma", header("b"), file_line("b.txt", b"b"))
    assert r.status_code == 200, r.text
    assert set(paths(head(service, "team/gemma")[1])) == {
        "model.safetensors", "config.json", "a.txt", "b.txt"}
    monkeypatch.undo()
    # With a parentCommit that was the head when read: refused, the other commit stands.
    now = head(service, "team/gemma")[0].removeprefix("sha256:")[:40]
    assert now != first
    _race(service, monkeypatch, client, "team/gemma", [header("c"), file_line("c.txt", b"c")])
    before = count(service, manifests)
    r = commit(client, "team/gemma", header("d", parentCommit=now), file_line("d.txt", b"d"))
    assert r.status_code == 412 and "another commit landed first" in r.json()["error"], r.text
    assert count(service, manifests) == before + 1  # the other commit's, not this one's
    assert "d.txt" not in paths(head(service, "team/gemma")[1])
    assert "c.txt" in paths(head(service, "team/gemma")[1])


# ---- branches and tags ---------------------------------------------------------


def test_branches_and_tags(client, service):
    first = model_repo(client)
    r = client.post(f"{M}/team/gemma/branch/dev", json={})
    assert r.status_code == 200, r.text
    assert head(service, "team/gemma", "dev")[0].removeprefix("sha256:")[:40] == first
    assert client.post(f"{M}/team/gemma/branch/dev", json={}).status_code == 409
    r = commit(client, "team/gemma", header(), file_line("b.txt", b"b"), branch="dev")
    assert r.status_code == 200
    assert head(service, "team/gemma")[0].removeprefix("sha256:")[:40] == first  # main kept
    r = client.post(f"{M}/team/gemma/branch/old", json={"startingPoint": first})
    assert r.status_code == 200
    r = client.post(f"{M}/team/gemma/tag/dev", json={"tag": "v1"})
    assert r.status_code == 200
    assert head(service, "team/gemma", "v1") == head(service, "team/gemma", "dev")
    assert client.post(f"{M}/team/gemma/tag/main", json={"tag": "v1"}).status_code == 409
    r = client.post(f"{M}/team/gemma/tag/nope", json={"tag": "v2"})
    assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"
    assert client.delete(f"{M}/team/gemma/tag/v1").status_code == 200
    assert client.delete(f"{M}/team/gemma/branch/dev").status_code == 200
    r = client.delete(f"{M}/team/gemma/branch/dev")
    assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"
    assert count(service, manifests) == 2  # the branch's commit stays, untagged


# ---- access control ------------------------------------------------------------


@pytest.fixture
def reg(settings):
    """Auth on: wanda (write in team, token in ``reg.pat``), rita (read in team)."""
    with auth_client(settings, users={"wanda": "wanda-password", "rita": "rita-password"},
                     roles={"team": {"wanda": "write", "rita": "read"}}) as client:
        access = client.app.state.registry.identities
        _, client.pat = access.create_token("wanda", "hf")
        _, client.rita = access.create_token("rita", "hf")
        yield client


@pytest.mark.slow
def test_reader_cannot_commit_writer_can_with_a_bearer_pat(reg):
    writer = {"Authorization": f"Bearer {reg.pat}"}
    reader = {"Authorization": f"Bearer {reg.rita}"}
    r = create(reg, "team/gemma", headers=reader)
    assert r.status_code == 403 and "rita has no write role" in r.json()["error"]
    assert create(reg, "team/gemma", headers=writer).status_code == 200
    assert batch(reg, "team/gemma", WEIGHTS, headers=reader).status_code == 403
    oid = hexdigest(WEIGHTS)
    r = reg.put(f"/team/gemma.git/info/lfs/objects/{oid}?size={len(WEIGHTS)}",
                content=WEIGHTS, headers=reader)
    assert r.status_code == 403
    upload(reg, "team/gemma", WEIGHTS, headers=writer, put_headers=writer)
    lines = (header(), lfs_line("model.safetensors", WEIGHTS))
    r = commit(reg, "team/gemma", *lines, headers=reader)
    assert r.status_code == 403 and "rita has no write role" in r.json()["error"]
    r = commit(reg, "team/gemma", *lines, headers=writer)
    assert r.status_code == 200, r.text
    with reg.app.state.registry.db.read() as conn:
        actors = {row.actor for row in conn.execute(select(audit_log.c.actor).where(
            audit_log.c.action == "push"))}
    assert actors == {"wanda"}


@pytest.mark.slow
def test_lfs_put_without_credentials_needs_the_signed_href(reg):
    """``huggingface_hub`` sends the PUT with no Authorization: the batch answer's href
    carries an expiring signature for exactly that object; a forged one is refused."""
    writer = {"Authorization": f"Bearer {reg.pat}"}
    assert create(reg, "team/gemma", headers=writer).status_code == 200
    oid = hexdigest(WEIGHTS)
    r = reg.put(f"/team/gemma.git/info/lfs/objects/{oid}?size={len(WEIGHTS)}"
                "&expires=9999999999&signature=forged", content=WEIGHTS)
    assert r.status_code == 401
    upload(reg, "team/gemma", WEIGHTS, headers=writer)


@pytest.mark.slow
def test_a_signed_upload_url_dies_with_its_signers_right_and_bad_input_is_a_400(reg):
    writer = {"Authorization": f"Bearer {reg.pat}"}
    assert create(reg, "team/gemma", headers=writer).status_code == 200
    r = batch(reg, "team/gemma", WEIGHTS, headers=writer)
    href = path_of(r.json()["objects"][0]["actions"]["upload"]["href"])
    assert r.json()["objects"][0]["actions"]["upload"]["expires_in"] >= 6 * 3600
    reg.app.state.registry.identities.revoke("team", "wanda")
    r = reg.put(href, content=WEIGHTS)
    assert r.status_code == 403 and "may no longer push" in r.json()["error"], r.text
    with reg.app.state.registry.db.read() as conn:
        assert conn.execute(select(blobs.c.digest).where(
            blobs.c.digest == f"sha256:{hexdigest(WEIGHTS)}")).first() is None
    oid = hexdigest(WEIGHTS)
    r = reg.put(f"/team/gemma.git/info/lfs/objects/{oid}?size={'9' * 5000}"
                f"&expires={'9' * 5000}&signature=x", content=WEIGHTS, headers=writer)
    assert r.status_code in (400, 403), r.text  # never a 500
    reg.app.state.registry.identities.grant("team", "wanda", "write")
    r = commit(reg, "team/gemma", header(), file_line("a.txt", b"a"), branch="ab" * 32,
               headers=writer)
    assert r.status_code == 400 and "may not be named like one" in r.json()["error"]
