"""Untrusted input on the OCI routes, on both stacks: path traversal in names, digests
and session ids, malformed and oversized manifests, manifests naming blobs that are
missing or only in another repository, mounts, digest mismatches and bogus
Content-Range values. Each hostile request must get the right OCI error and leave no
trace: no blob row, no session change, no stray file or object, other data intact.
Hostile JSON (deep nesting, lone surrogates) on every route that parses a body, and
oversized request heads, against a real ``assay serve`` too: a 4xx, never a 500, and the
connection stays usable."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket

import httpx
import pytest
from sqlalchemy import select

from registry.db.tables import blobs, repository_blobs, uploads
from tests.support.oci import (
    LAYER,
    OCI_MANIFEST,
    error_code,
    image_manifest,
    push_blob,
    push_image,
    sha256,
)
from tests.support.processes import start_assay

ZERO = "sha256:" + "0" * 64


def storage_keys(service) -> list[str]:
    store = service.store
    if hasattr(store, "root"):
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*"))
    pages = store._s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def files_outside(settings) -> list[str]:
    """Files under the test's directory but outside data_dir (filesystem stack)."""
    base = settings.data_dir.parent
    return sorted(str(p) for p in base.rglob("*")
                  if p.is_file() and settings.data_dir not in p.parents)


def db_state(service):
    with service.db.read() as conn:
        return (sorted(conn.execute(select(blobs.c.digest)).scalars()),
                sorted(map(tuple, conn.execute(select(repository_blobs.c.repository_id,
                                                      repository_blobs.c.digest)).all())),
                sorted(map(tuple, conn.execute(select(uploads.c.id,
                                                      uploads.c.received)).all())))


@pytest.fixture
def baseline(client, service, settings):
    """Some real data, then a snapshot; ``check()`` asserts nothing changed since."""
    digest, body = push_image(client, "good/repo", "v1", layers=[b"precious layer"])
    snapshot = (storage_keys(service), db_state(service), files_outside(settings))

    def check():
        assert (storage_keys(service), db_state(service), files_outside(settings)) == snapshot
        assert client.get("/v2/good/repo/manifests/v1").content == body
        r = client.get(f"/v2/good/repo/blobs/{sha256(b'precious layer')}")
        assert r.content == b"precious layer"

    return check


# ---- names, references, session ids -------------------------------------------------

NAMES = ["a/%2e%2e/b", "%2e%2e/%2e%2e/etc", "a/%2E%2E", "a%2F..%2Fb", "..%2f..%2fx",
         "/etc/passwd", "%2Fetc%2Fpasswd", "a%00b", "a/b%00", "A/B", "a//b",
         "a/%2e/b", "-a", "a-", "a" * 256, "/".join(["a"] * 129), "a/b\\c", "a%0ab",
         "%c3%a9t%c3%a9", "a;b", "a b"]


@pytest.mark.parametrize("name", NAMES)
def test_hostile_names_are_name_invalid_on_every_route(client, baseline, name):
    for method, path in [("GET", "/tags/list"), ("GET", "/manifests/v1"),
                         ("PUT", "/manifests/v1"), ("DELETE", "/manifests/v1"),
                         ("HEAD", f"/blobs/{ZERO}"), ("GET", f"/blobs/{ZERO}"),
                         ("DELETE", f"/blobs/{ZERO}"), ("POST", "/blobs/uploads/"),
                         ("POST", f"/blobs/uploads/?digest={sha256(b'x')}"),
                         ("PATCH", "/blobs/uploads/" + "a" * 32),
                         ("PUT", "/blobs/uploads/" + "a" * 32 + f"?digest={sha256(b'x')}"),
                         ("GET", f"/referrers/{ZERO}")]:
        r = client.request(method, f"/v2/{name}{path}", content=b"x")
        assert r.status_code in (400, 404, 405), (method, path, r.status_code)
        if method != "HEAD":
            body = r.json()["errors"][0]
            # An empty segment or a leading slash can also miss every route (404
            # UNSUPPORTED); never a 500, never a match that touches storage.
            assert body["code"] in ("NAME_INVALID", "UNSUPPORTED"), (method, path, body)
    baseline()


def test_over_long_name_is_name_invalid(client, baseline):
    r = client.get(f"/v2/{'a' * 256}/tags/list")
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"
    assert client.post(f"/v2/{'a' * 255}/blobs/uploads/").status_code == 202
    baseline_ok = client.delete(client.post("/v2/good/repo/blobs/uploads/")
                                .headers["Location"])
    assert baseline_ok.status_code == 204


@pytest.mark.parametrize("tag,code", [
    ("a" * 129, "MANIFEST_INVALID"), (".x", "MANIFEST_INVALID"), ("-x", "MANIFEST_INVALID"),
    ("%2e%2e", "MANIFEST_INVALID"), ("a%00", "MANIFEST_INVALID"),
    ("sha256:..%2f..%2fetc", "DIGEST_INVALID"), ("sha256:" + "A" * 64, "DIGEST_INVALID"),
    ("md5:abc", "DIGEST_INVALID"),
])
def test_hostile_references(client, baseline, tag, code):
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        r = client.request(method, f"/v2/good/repo/manifests/{tag}", content=b"{}")
        expected_status, expected_code = 400, code
        if "%2f" in tag:  # a slash: no route matches at all
            expected_status, expected_code = 404, "UNSUPPORTED"
        elif code == "MANIFEST_INVALID" and method in ("GET", "HEAD"):
            # A read by what cannot be a tag names no manifest (as Distribution answers).
            expected_status, expected_code = 404, "MANIFEST_UNKNOWN"
        assert r.status_code == expected_status, (method, r.status_code)
        if method != "HEAD":
            assert error_code(r) == expected_code, method
    baseline()


@pytest.mark.parametrize("digest", ["sha256:..", "sha256:%2e%2e%2fx", "..%2f..%2fetc",
                                    "sha256:" + "0" * 63, "sha256:" + "g" * 64,
                                    "sha256:" + "0" * 64 + "%00", "sha999:" + "0" * 64])
def test_hostile_blob_digests(client, baseline, digest):
    for method in ("GET", "DELETE"):
        r = client.request(method, f"/v2/good/repo/blobs/{digest}")
        if "%2f" in digest:  # a slash: no route matches at all
            assert r.status_code == 404 and error_code(r) == "UNSUPPORTED", method
        else:
            assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID", method
    r = client.post(f"/v2/good/repo/blobs/uploads/?digest={digest}", content=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    baseline()


@pytest.mark.parametrize("session", ["%2e%2e", "..%2f..%2fblobs", "a" * 31,
                                     "A" * 32, "0" * 32 + "%00", "x" * 1000,
                                     "%2fetc%2fpasswd", "g" * 32])
def test_hostile_session_ids(client, baseline, session):
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(method, f"/v2/good/repo/blobs/uploads/{session}",
                           params={"digest": sha256(b"x")} if method == "PUT" else None,
                           content=b"x" if method in ("PATCH", "PUT") else None)
        # With a slash no route matches (404 UNSUPPORTED, or 405 for another route).
        expected = ("UNSUPPORTED",) if "%2f" in session else ("BLOB_UPLOAD_UNKNOWN",)
        assert r.status_code in (404, 405) and error_code(r) in expected, method
    baseline()


def test_another_repositorys_session_is_unknown(client, baseline):
    loc = client.post("/v2/good/repo/blobs/uploads/").headers["Location"]
    session = loc.rsplit("/", 1)[1]
    r = client.patch(f"/v2/evil/repo/blobs/uploads/{session}", content=b"x")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert client.get(loc).headers["Range"] == "0-0"
    assert client.delete(loc).status_code == 204
    baseline()


# ---- manifests ---------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe",
                                  b'{"schemaVersion": 2}', b'{"schemaVersion": "2"}',
                                  b'{"schemaVersion": 2, "layers": "x"}',
                                  b'{"schemaVersion": 2, "config": {"digest": "../../x"}}',
                                  b"{" * 10000 + b"}" * 10000])
def test_malformed_manifests(client, baseline, body):
    r = client.put("/v2/good/repo/manifests/bad", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) in ("MANIFEST_INVALID", "DIGEST_INVALID")
    baseline()


def test_oversized_manifest(client, baseline, settings):
    big = b" " * (settings.max_manifest_bytes + 1)
    r = client.put("/v2/good/repo/manifests/big", content=big,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413 and error_code(r) == "MANIFEST_INVALID"
    baseline()


def test_manifest_with_missing_blob(client, baseline):
    push_blob(client, "good/repo", b"cfg")
    r = client.put("/v2/good/repo/manifests/missing",
                   content=image_manifest(b"cfg", [b"never pushed"]),
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_blobs_of_another_repository_are_not_linkable(client, service, baseline):
    """A pusher who knows a digest in another repository (which it may not be able to
    read) can neither reference it from a manifest nor mount it without ``from``."""
    secret = b"precious layer"
    cfg = json.dumps({"x": 1}).encode()
    push_blob(client, "evil/repo", cfg)
    r = client.put("/v2/evil/repo/manifests/steal", content=image_manifest(cfg, [secret]),
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    # Auto-mount (no from) and the ?digest= probe: a session opens instead.
    r = client.post(f"/v2/evil/repo/blobs/uploads/?mount={sha256(secret)}")
    assert r.status_code == 202
    client.delete(r.headers["Location"])
    r = client.post(f"/v2/evil/repo/blobs/uploads/?digest={sha256(secret)}",
                    headers={"Content-Length": "0"})
    assert r.status_code == 202
    client.delete(r.headers["Location"])
    for source in ("evil/other", "%2e%2e", "a" * 300, "good/repo%00"):
        r = client.post(f"/v2/evil/repo/blobs/uploads/?mount={sha256(secret)}&from={source}")
        assert r.status_code == 202, source
        client.delete(r.headers["Location"])
    r = client.get(f"/v2/evil/repo/blobs/{sha256(secret)}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    # With `from` naming the repository that has it, mounting works (auth checks that
    # the pusher may read `from`).
    r = client.post(f"/v2/evil/repo/blobs/uploads/?mount={sha256(secret)}&from=good/repo")
    assert r.status_code == 201


# ---- uploads -------------------------------------------------------------------------------

def test_digest_mismatch_leaves_nothing(client, service, baseline):
    data = os.urandom(500)
    r = client.post(f"/v2/good/repo/blobs/uploads/?digest={sha256(b'other')}", content=data)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    loc = client.post("/v2/good/repo/blobs/uploads/").headers["Location"]
    client.patch(loc, content=data)
    r = client.put(loc, params={"digest": sha256(b"other")})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    baseline()


@pytest.mark.parametrize("value,status,code", [
    ("bytes=", 400, "BLOB_UPLOAD_INVALID"), ("-5-10", 400, "BLOB_UPLOAD_INVALID"),
    ("5--1", 400, "BLOB_UPLOAD_INVALID"), ("10-5", 400, "BLOB_UPLOAD_INVALID"),
    ("0-", 400, "BLOB_UPLOAD_INVALID"), ("a-b", 400, "BLOB_UPLOAD_INVALID"),
    ("\u00b2-\u00b3", 400, "BLOB_UPLOAD_INVALID"), ("0x0-0x3", 400, "BLOB_UPLOAD_INVALID"),
    ("9" * 30 + "-" + "9" * 31, 400, "BLOB_UPLOAD_INVALID"),
    ("9223372036854775807-9223372036854775810", 400, "BLOB_UPLOAD_INVALID"),
    ("0-3", 416, "BLOB_UPLOAD_INVALID"),  # overlaps what is there already
    ("2-5", 416, "BLOB_UPLOAD_INVALID"),  # overlapping
    ("100-103", 416, "BLOB_UPLOAD_INVALID"),  # a gap
    ("4-1000000000000", 400, "SIZE_INVALID"),  # contradicts Content-Length
])
def test_bogus_content_range_leaves_the_session_unchanged(client, baseline, value, status,
                                                          code):
    loc = client.post("/v2/good/repo/blobs/uploads/").headers["Location"]
    assert client.patch(loc, content=b"abcd").status_code == 202
    r = client.patch(loc, content=b"efgh", headers={"Content-Range": value.encode()})
    assert r.status_code == status and error_code(r) == code, r.text
    assert client.get(loc).headers["Range"] == "0-3"
    r = client.put(loc, params={"digest": sha256(b"abcdefgh")}, content=b"efgh",
                   headers={"Content-Range": "4-7"})
    assert r.status_code == 201
    client.delete(f"/v2/good/repo/blobs/{sha256(b'abcdefgh')}")


@pytest.mark.parametrize("length", ["-1", "abc", "\u00b2", "1e3", " 4"])
def test_bogus_content_length(client, baseline, length):
    loc = client.post("/v2/good/repo/blobs/uploads/").headers["Location"]
    r = client.patch(loc, content=b"abcd", headers={"Content-Length": length.encode()})
    assert r.status_code == 400 and error_code(r) == "SIZE_INVALID"
    assert client.get(loc).headers["Range"] == "0-0"
    client.delete(loc)
    baseline()


def test_layer_media_type_is_data_only(client):
    """Sanity: the helper module's layer type (keeps the imports honest)."""
    assert LAYER.endswith(".tar")


# ---- hostile JSON --------------------------------------------------------------------------

DEEP_JSON = b'{"a":' + b"[" * 5000
# JSON text escaping a lone surrogate: valid by the grammar, but no UTF-8 string holds it.
LONE_SURROGATES = [b'{"a": "a\\ud800"}', b'["\\udc00"]', b'{"\\udc00\\ud800": 1}']
HOSTILE_JSON = [DEEP_JSON, *LONE_SURROGATES]
HOOK_TOKEN = "hostile-input-hook-token"


@pytest.mark.parametrize("body", [
    DEEP_JSON,
    image_manifest(b"cfg", [b"precious layer"], annotations={"a": "\ud800"}),
    image_manifest(b"cfg", [b"precious layer"], annotations={"\udc00": "b"}),
])
def test_hostile_json_manifests_are_manifest_invalid(client, baseline, body):
    """Refused when parsed (deep nesting, lone surrogates), never a 500 or a stored
    string that cannot be encoded."""
    push_blob(client, "good/repo", b"cfg")
    r = client.put("/v2/good/repo/manifests/hostile", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", r.text
    assert "not valid JSON" in r.json()["errors"][0]["message"]
    assert client.get("/v2/good/repo/manifests/hostile").status_code == 404


def json_operations(client) -> list[tuple[str, str]]:
    """Every documented REST operation that takes a JSON body, its path filled in."""
    filled = {"{name}": "good/repo", "{reference}": ZERO, "{namespace}": "good",
              "{class_name}": "gpu",
              "{user}": "bob", "{id}": "1"}
    ops = []
    for path, item in client.get("/api/v1/openapi.json").json()["paths"].items():
        for method, op in item.items():
            if "application/json" in (op.get("requestBody") or {}).get("content", {}):
                for param, value in filled.items():
                    path = path.replace(param, value)
                ops.append((method.upper(), path))
    return ops


def test_hostile_json_bodies_are_400_on_every_rest_operation(client):
    client.app.state.settings.hook_token = HOOK_TOKEN
    ops = json_operations(client)
    assert ("POST", "/api/v1/hooks/validate") in ops and len(ops) >= 10
    for method, path in ops:
        for body in HOSTILE_JSON:
            r = client.request(method, path, content=body,
                               headers={"Content-Type": "application/json",
                                        "Authorization": f"Bearer {HOOK_TOKEN}"})
            if (method, path) == ("POST", "/api/v1/tokens"):  # auth off: refused unread
                assert r.status_code == 409, r.text
                continue
            assert r.status_code == 400, (method, path, body[:20], r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert "not JSON" in r.json()["detail"], (method, path, r.text)


@pytest.mark.parametrize("text", [b"[" * 3000, json.dumps(
    {"e": "repositories", "s": "name", "k": ["\ud800"]}).encode()])
def test_hostile_json_in_a_cursor_is_400(client, text):
    cursor = base64.urlsafe_b64encode(text).decode().rstrip("=")
    r = client.get("/api/v1/repositories", params={"cursor": cursor})
    assert r.status_code == 400 and "invalid cursor" in r.json()["detail"], r.text


# ---- a real server: the connection survives, the head is bounded ---------------------------

MAX_HEADER_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``assay serve`` with webhooks in and a small header cap (ASSAY_MAX_HEADER_BYTES)."""
    proc = start_assay(tmp_path_factory.mktemp("hostile") / "data",
                       env={"ASSAY_HOOK_TOKEN": HOOK_TOKEN,
                            "ASSAY_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES)})
    try:
        yield proc
    finally:
        proc.stop()


def _local_port(response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


@pytest.mark.slow  # starts an assay server process
def test_hostile_json_keeps_the_connection_and_logs_no_error(server):
    requests = [("PUT", "/v2/good/repo/manifests/x", OCI_MANIFEST, "MANIFEST_INVALID"),
                ("POST", "/api/v1/hooks/validate", "application/json", "UNSUPPORTED"),
                ("PUT", "/api/v1/policies/good", "application/json", "UNSUPPORTED"),
                ("POST", "/api/v1/webhooks", "application/json", "UNSUPPORTED")]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        port = _local_port(http.get("/v2/"))
        for method, path, content_type, code in requests:
            for body in HOSTILE_JSON:
                r = http.request(method, path, content=body,
                                 headers={"Content-Type": content_type,
                                          "Authorization": f"Bearer {HOOK_TOKEN}"})
                assert r.status_code == 400, (path, body[:20], r.text)
                got = (r.json()["errors"][0]["code"] if path.startswith("/v2/")
                       else r.json()["code"])
                assert got == code, (path, r.text)
                assert r.headers.get("connection") != "close"
                after = http.get("/v2/")  # the same keep-alive connection still answers
                assert after.status_code == 200 and _local_port(after) == port
    log = server.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]


def _raw_request(server, header_bytes: int) -> bytes:
    """The status line a GET with one header of about ``header_bytes`` gets (b"" if the
    connection closed without one)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        with contextlib.suppress(OSError):  # refused mid-send: the answer is still there
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes
                      + b"\r\n\r\n")
        try:
            return s.recv(4096).split(b"\r\n", 1)[0]
        except ConnectionResetError:
            return b""


@pytest.mark.slow  # starts an assay server process
def test_request_headers_over_the_cap_are_431(server):
    """Refused before any handler (or authentication) runs; a head that never ends is cut
    off as it arrives (16 MiB)."""
    assert _raw_request(server, MAX_HEADER_BYTES - 200) == b"HTTP/1.1 200 OK"
    for size in (MAX_HEADER_BYTES + 1, 4 * MAX_HEADER_BYTES, 16 * 1024 * 1024):
        assert _raw_request(server, size) == b"HTTP/1.1 431 Request Header Fields Too Large"
    # Pipelined behind a good request: that one is answered first, then the 431.
    good = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(good + b"GET /v2/ HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEADER_BYTES
                  + b"\r\n\r\n")
        answers = b"".join(iter(lambda: s.recv(65536), b""))  # until the server closes
    assert re.findall(rb"HTTP/1\.1 \d+", answers) == [b"HTTP/1.1 200", b"HTTP/1.1 431"]
    # Several headers count together; the connection after a refusal is a new one.
    with httpx.Client(base_url=server.url, timeout=10) as http:
        many = {f"x-h{i}": "v" * 1000 for i in range(MAX_HEADER_BYTES // 1000 + 1)}
        assert http.get("/v2/", headers=many).status_code == 431
        assert http.get("/v2/", headers={"x-ok": "v" * 1000}).status_code == 200
