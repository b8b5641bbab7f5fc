"""Hardware classes over REST, and the classes of the workers that announced themselves."""

from __future__ import annotations

from sqlalchemy import select

from registry.db.tables import audit_log

CUDA = {"backends": {"llama.cpp": {"build": "cuda"}}, "cores": 16, "memory_bytes": 64 << 30,
        "accelerator": {"kind": "cuda", "name": "NVIDIA L4", "memory_bytes": 24 << 30},
        "os": "linux", "arch": "x86_64"}
MAC = {"backends": {"mlx": {"device": "gpu"}, "llama.cpp": {"build": "metal"}}, "cores": 10,
       "memory_bytes": 32 << 30, "accelerator": {"kind": "metal", "memory_bytes": 32 << 30},
       "os": "darwin", "arch": "arm64"}


def test_define_list_change_and_remove_classes(client, service):
    r = client.put("/api/v1/classes/cuda", json={"selector": {
        "accelerator": "cuda", "min_accelerator_memory": "16GiB"}})
    assert r.status_code == 200, r.text
    assert r.json()["selector"] == {"accelerator": "cuda",
                                    "min_accelerator_memory": 16 << 30}
    client.put("/api/v1/classes/apple", json={"selector": {"os": "darwin", "backend": "mlx"}})
    client.put("/api/v1/classes/any", json={"selector": {}})
    names = [c["name"] for c in client.get("/api/v1/classes").json()["classes"]]
    assert names == ["any", "apple", "cuda"]
    r = client.put("/api/v1/classes/cuda", json={"selector": {"accelerator": "cuda"}})
    assert client.get("/api/v1/classes/cuda").json()["selector"] == {"accelerator": "cuda"}

    service.workers.announce("w-cuda", "gpu1", 10, capabilities=CUDA, labels={})
    service.workers.announce("w-mac", "mac1", 11, capabilities=MAC, labels={"site": "lab2"})
    workers = {w["id"]: w for w in client.get("/api/v1/workers").json()["workers"]}
    assert workers["w-cuda"]["classes"] == ["any", "cuda"]
    assert workers["w-mac"]["classes"] == ["any", "apple"]
    assert workers["w-mac"]["labels"] == {"site": "lab2"}
    assert workers["w-cuda"]["capabilities"]["accelerator"]["name"] == "NVIDIA L4"

    assert client.delete("/api/v1/classes/apple").json() == {"deleted": "apple"}
    assert client.get("/api/v1/classes/apple").status_code == 404
    assert client.delete("/api/v1/classes/apple").status_code == 404
    with service.db.read() as conn:
        actions = [r.action for r in conn.execute(select(audit_log.c.action)
                                                  .order_by(audit_log.c.id))]
    assert actions.count("class.set") == 4 and actions.count("class.delete") == 1


def test_bad_classes_are_refused_and_change_nothing(client):
    for name, body, words in (
            ("cuda", {"selector": {"accelerator": "tpu"}}, "one of"),
            ("cuda", {"selector": {"gpus": 2}}, "unknown selector key"),
            ("cuda", {"selector": {"min_accelerator_memory": "lots"}}, "size"),
            ("cuda", {"selector": []}, None),
            ("Bad Name", {"selector": {}}, None),
            ("cuda", {}, None)):
        r = client.put(f"/api/v1/classes/{name}", json=body)
        assert r.status_code in (400, 404), (name, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if words:
            assert words in r.json()["detail"], r.text
    assert client.get("/api/v1/classes").json() == {"classes": []}
