"""``DELETE /api/v1/repositories/<name>`` and ``assay rm HOST/REPO --all``: a whole
repository goes, every manifest with the same audit entry and ``delete`` event a single
``DELETE /v2/<name>/manifests/<digest>`` makes."""

from __future__ import annotations

import json
from types import SimpleNamespace

from sqlalchemy import select

from registry.db.tables import deliveries
from tests.support.cli import assay
from tests.support.oci import OCI_MANIFEST, image_manifest, push_blob, push_image, sha256
from tests.support.rest import assert_problem

CONFIG = json.dumps({"architecture": "amd64"}).encode()


def _fill(client, name: str) -> dict[str, str]:
    """v1; v2 and v3 on one manifest; one untagged manifest. Same bytes in every
    repository, so digests compare across repositories."""
    first, _ = push_image(client, name, "v1", layers=[b"one"], config=CONFIG)
    second, body = push_image(client, name, "v2", layers=[b"two"], config=CONFIG)
    r = client.put(f"/v2/{name}/manifests/v3", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    push_blob(client, name, b"three")
    untagged = image_manifest(CONFIG, [b"three"])
    third = sha256(untagged)
    r = client.put(f"/v2/{name}/manifests/{third}", content=untagged,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return {"first": first, "second": second, "third": third}


def _audit(service, name: str) -> list[str]:
    return [e["target"].replace(name, "REPO") for e in service.audit.entries(limit=100)
            if e["action"] == "delete" and e["target"].startswith(name)]


def _events(service, name: str) -> list[tuple]:
    with service.db.read() as conn:
        rows = conn.execute(select(deliveries).order_by(deliveries.c.id)).all()
    out = []
    for row in rows:
        event = json.loads(row.body)["events"][0]
        if row.action == "delete" and event["target"]["repository"] == name:
            t = event["target"]
            out.append((t.get("tag"), t["digest"], t["mediaType"], t["size"]))
    return out


def test_whole_repository_delete_is_its_manifests_single_deletes(client, service):
    r = client.post("/api/v1/webhooks", json={"url": "https://ci.example.com/hook",
                                              "secret": "s" * 16, "events": ["delete"]})
    assert r.status_code == 201, r.text
    digests = _fill(client, "team/whole")
    assert _fill(client, "team/single") == digests

    r = client.delete("/api/v1/repositories/team/whole")
    assert r.status_code == 200, r.text
    assert r.json() == {"repository": "team/whole", "manifests": [
        {"digest": digests["third"], "tags": []},
        {"digest": digests["second"], "tags": ["v2", "v3"]},
        {"digest": digests["first"], "tags": ["v1"]}]}
    for m in r.json()["manifests"]:  # the same, one DELETE /v2/ at a time
        assert client.delete(f"/v2/team/single/manifests/{m['digest']}").status_code == 202
    assert _audit(service, "team/whole") == _audit(service, "team/single")
    assert _audit(service, "team/whole") == [f"REPO@{digests[k]}"
                                             for k in ("first", "second", "third")]
    whole = _events(service, "team/whole")
    assert whole == _events(service, "team/single")
    assert [(tag, digest) for tag, digest, _, _ in whole] == [
        (None, digests[k]) for k in ("third", "second", "first")]

    # The repository itself is gone; the other one, holding the same blobs, is intact.
    assert "team/whole" not in client.get("/v2/_catalog").json()["repositories"]
    assert client.get("/v2/team/whole/tags/list").json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert client.get("/v2/team/single/blobs/" + push_blob(client, "team/single", b"one")
                      ).content == b"one"
    assert_problem(client.delete("/api/v1/repositories/team/whole"), 404)
    assert_problem(client.delete("/api/v1/repositories/Team!"), 400)


def test_cli_deletes_a_whole_repository_and_says_what_went(client, live_url, monkeypatch):
    host = live_url.removeprefix("http://")
    first, _ = push_image(client, "team/app", "v1", layers=[b"one"], config=CONFIG)
    second, _ = push_image(client, "team/app", "v2", layers=[b"two"], config=CONFIG)
    ref = f"{host}/team/app"

    for args, code, text in [
            (["rm", ref, "--all"], 1, "needs --yes when not run on a terminal"),
            (["rm", f"{ref}:v1", "--all", "--yes"], 1, "give HOST/NAME without a tag"),
            (["rm", host, "--all", "--yes"], 1, "give the repository to delete"),
            (["rm", ref, "--yes"], 2, "--yes goes with --all")]:
        lines = assay(*args, code=code).splitlines()
        assert lines[-1].startswith("error: ") and text in lines[-1], lines
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["v1", "v2"]

    import client.commands

    monkeypatch.setattr(client.commands, "sys",
                        SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))
    out = assay("rm", ref, "--all", input="n\n", code=1)
    assert "Delete " + ref + ": 2 tag(s) (v1, v2) and every manifest? [y/N]" in out
    assert out.splitlines()[-1] == f"error: {ref}: nothing deleted"
    out = assay("rm", ref, "--all", input="y\n", stream="stdout")
    assert out.splitlines() == [
        f"deleted {ref}@{second} (tags: v2)", f"deleted {ref}@{first} (tags: v1)",
        f"deleted repository {ref}: 2 manifest(s), 2 tag(s); the registry's `assay gc` "
        "frees their blobs"]
    line = assay("rm", ref, "--all", "--yes", code=1).splitlines()[-1]
    assert line.startswith(f"error: {ref}: ") and "not known" in line, line


def test_paths_below_a_repository_are_never_taken_for_its_name(client):
    push_image(client, "team/app", "v1", layers=[b"one"], config=CONFIG)
    digest = client.head("/v2/team/app/manifests/v1").headers["Docker-Content-Digest"]
    for path in ("tags", "tags/v1", "tags/v1/verify", f"manifests/{digest}",
                 f"manifests/{digest}/verify", f"manifests/{digest}/verifications",
                 f"manifests/{digest}/override"):
        r = client.delete(f"/api/v1/repositories/team/app/{path}")
        assert r.status_code == 405, (path, r.status_code, r.text)
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["v1"]
