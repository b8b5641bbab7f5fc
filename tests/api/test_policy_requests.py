"""Policy namespaces are repository names: a malformed one is a 400, never a 500; and
a path served for several methods says so in ``Allow``."""

from __future__ import annotations


def test_bad_policy_namespaces_are_client_errors_and_allow_lists_every_method(client):
    for path in ("/api/v1/policies/a%00b", "/api/v1/policies/" + "a" * 300,
                 "/api/v1/policies/Team"):
        for method in ("PUT", "DELETE"):
            r = client.request(method, path, json={"gate": False})
            assert r.status_code == 400, (method, path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
    r = client.request("PATCH", "/api/v1/policies/team")
    assert r.status_code == 405
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PUT",
                                                                   "DELETE"}
