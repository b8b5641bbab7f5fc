"""Tags and catalog (end-8a/8b): lexical order, n/last pagination, Link headers."""

from __future__ import annotations

from tests.support.oci import error_code, push_image

TAGS = ["v10", "B", "a", "v2", "latest", "1.0", "_x", "Z"]


def test_tags_in_lexical_order_with_pagination(client):
    digest, body = push_image(client, "team/app", "seed")
    for tag in TAGS:
        r = client.put(f"/v2/team/app/manifests/{tag}", content=body,
                       headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201
    expected = sorted([*TAGS, "seed"])
    r = client.get("/v2/team/app/tags/list")
    assert r.json() == {"name": "team/app", "tags": expected}
    assert "Link" not in r.headers

    seen, url = [], "/v2/team/app/tags/list?n=4"
    while url:
        r = client.get(url)
        assert r.status_code == 200
        page = r.json()["tags"]
        assert len(page) <= 4
        seen += page
        link = r.headers.get("Link")
        url = link[1:link.index(">")] if link else None
        if url:
            assert link.endswith('; rel="next"')
    assert seen == expected

    r = client.get("/v2/team/app/tags/list", params={"n": 2, "last": "a"})
    assert r.json()["tags"] == expected[expected.index("a") + 1:][:2]
    assert client.get("/v2/team/app/tags/list?n=0").json()["tags"] == []
    r = client.get("/v2/team/app/tags/list?n=-1")
    assert r.status_code == 400 and error_code(r) == "UNSUPPORTED"


def test_tags_of_unknown_repository(client):
    r = client.get("/v2/nobody/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_catalog_pagination(client):
    names = ["b/x", "a/y", "c", "a/a", "team/z"]
    for name in names:
        push_image(client, name, "v1")
    assert client.get("/v2/_catalog").json()["repositories"] == sorted(names)
    r = client.get("/v2/_catalog?n=2")
    assert r.json()["repositories"] == sorted(names)[:2]
    assert r.headers["Link"] == f'</v2/_catalog?n=2&last={sorted(names)[1]}>; rel="next"'
    r = client.get(f"/v2/_catalog?n=10&last={sorted(names)[1]}")
    assert r.json()["repositories"] == sorted(names)[2:]


def test_base_endpoint_and_unknown_routes(client):
    r = client.get("/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    r = client.get("/v2/team/app/nothing-here")
    assert r.status_code == 404 and r.json()["errors"][0]["code"]
    r = client.post("/v2/team/app/manifests/v1")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"


def test_page_size_is_capped_but_still_linked(client, monkeypatch):
    monkeypatch.setattr(client.app.state.settings, "max_page_size", 2)
    for name in ("a", "b", "c"):
        push_image(client, name, "v1")
    r = client.get("/v2/_catalog?n=1000")
    assert r.json()["repositories"] == ["a", "b"]
    assert r.headers["Link"] == '</v2/_catalog?n=2&last=b>; rel="next"'
    r = client.get("/v2/_catalog")  # no n: the default page is the cap
    assert r.json()["repositories"] == ["a", "b"] and "last=b" in r.headers["Link"]
