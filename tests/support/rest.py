"""Assertions on the REST API's answers: a model's description and RFC 9457 problems."""

from __future__ import annotations

PROBLEM = "application/problem+json"


def describe(client, name: str, reference: str) -> dict:
    """The REST description of a tag, or of a manifest when ``reference`` is a digest."""
    kind = "manifests" if ":" in reference else "tags"
    r = client.get(f"/api/v1/repositories/{name}/{kind}/{reference}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def assert_problem(r, status: int, code: str | None = None) -> dict:
    """``r`` is a problem document with ``status`` (and ``code``, when given); returns it."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail", "code"}
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    return body

