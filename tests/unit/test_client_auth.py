"""The client's auth flow (``client.auth``) and credential sources
(``client.credentials``) against a scripted registry (``httpx.MockTransport``):
challenge parsing, token caching and renewal, Basic on ``/api/``, the one-line errors.
The CLI against a real auth-on server is ``tests/clients/test_cli_auth.py``."""

from __future__ import annotations

import base64
import json
import os
import stat

import httpx
import pytest

from client import auth as auth_module
from client import credentials as store
from client.auth import AuthError, merge_scopes, parse_challenge
from client.blobs import Blob
from client.credentials import Credentials
from client.errors import RegistryResponseError
from client.ref import Registry
from client.registry_client import RegistryClient

REALM = "https://reg.test/auth/token"
ALICE = Credentials("alice", "s3cret", "test")


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


class FakeRegistry:
    """Docker token auth: ``/v2/...`` wants ``Bearer <token>`` for the right scope,
    ``/auth/token`` takes Basic alice:s3cret (or nothing: an anonymous token), ``/api/``
    wants Basic."""

    def __init__(self, expires_in: int = 300, anonymous_ok: bool = False):
        self.requests: list[httpx.Request] = []
        self.issued: list[tuple[str, list[str]]] = []  # (token, scopes)
        self.expires_in = expires_in
        self.anonymous_ok = anonymous_ok
        self.revoked: set[str] = set()

    def token_answer(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        if header and header != basic("alice", "s3cret"):
            return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED",
                                                         "message": "wrong password"}]})
        who = "alice" if header else "anon"
        scopes = request.url.params.get_list("scope")
        token = f"{who}-{len(self.issued)}"
        self.issued.append((token, scopes))
        return httpx.Response(200, json={"token": token, "expires_in": self.expires_in})

    def granted(self, token: str) -> list[str]:
        for issued, scopes in self.issued:
            if issued == token and token not in self.revoked:
                return scopes
        return []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        # a snapshot: the flow sends the same Request object again with new headers
        self.requests.append(httpx.Request(request.method, request.url,
                                           headers=request.headers.copy()))
        path = request.url.path
        if path == "/auth/token":
            return self.token_answer(request)
        header = request.headers.get("authorization", "")
        if path.startswith("/api/"):
            if header != basic("alice", "s3cret"):
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="assay"'})
            return httpx.Response(200, json={"name": "alice"})
        name = path.split("/")[2] + "/" + path.split("/")[3]
        need = "pull" if request.method in ("GET", "HEAD") else "push"
        token = header.removeprefix("Bearer ")
        scopes = self.granted(token) if header.startswith("Bearer ") else None
        if scopes is None or (not scopes and not token.startswith("anon")) or \
                token in self.revoked or (header.startswith("Bearer ") and not scopes):
            scope = f"repository:{name}:{'pull' if need == 'pull' else 'pull,push'}"
            return httpx.Response(401, headers={"WWW-Authenticate":
                                                f'Bearer realm="{REALM}",service="reg",'
                                                f'scope="{scope}"'})
        actions = {a for s in scopes for a in s.rpartition(":")[2].split(",")}
        if token.startswith("anon") and not self.anonymous_ok or need not in actions:
            return httpx.Response(403, json={"errors": [{"code": "DENIED", "message":
                                                         f"may not {need} {name}"}]})
        if request.method == "HEAD" and "/blobs/" in path:
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": f"/v2/{name}/blobs/uploads/u1"})
        if request.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(200, json={"schemaVersion": 2})

    def sent(self, method: str, contains: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and contains in str(r.url)]


def client(fake, credentials=ALICE, **kw) -> RegistryClient:
    return RegistryClient(Registry("reg.test", "https"), transport=httpx.MockTransport(fake),
                          credentials=credentials, attempts=1, **kw)


# ---------------------------------------------------------------------------- parsing


def test_parse_challenge():
    assert parse_challenge('Bearer realm="https://r/auth",service="reg",'
                           'scope="repository:a/b:pull,push"') == (
        "bearer", {"realm": "https://r/auth", "service": "reg",
                   "scope": "repository:a/b:pull,push"})
    assert parse_challenge('Basic realm="assay"') == ("basic", {"realm": "assay"})
    assert parse_challenge("Bearer realm=https://r/a, service=reg") == (
        "bearer", {"realm": "https://r/a", "service": "reg"})
    assert parse_challenge('Bearer realm="a \\"q\\""') == ("bearer", {"realm": 'a "q"'})
    assert parse_challenge("") is None


def test_merge_scopes():
    assert merge_scopes("repository:a/b:pull", "repository:a/b:push,pull",
                        "repository:c:pull registry:catalog:*") == (
        "registry:catalog:*", "repository:a/b:pull,push", "repository:c:pull")
    assert merge_scopes("") == ()


# ---------------------------------------------------------------------------- bearer


def test_bearer_challenge_then_cached_token():
    fake = FakeRegistry()
    with client(fake) as c:
        c.get_manifest("a/b", "v1")
        c.get_manifest("a/b", "v2")
        c.get_manifest("a/b", "v3")
    token_requests = fake.sent("GET", "/auth/token")
    assert len(token_requests) == 1
    assert token_requests[0].headers["authorization"] == basic("alice", "s3cret")
    assert token_requests[0].url.params.get_list("scope") == ["repository:a/b:pull"]
    assert token_requests[0].url.params["service"] == "reg"
    gets = fake.sent("GET", "/manifests/")
    assert [r.headers.get("authorization") for r in gets] == [
        None, "Bearer alice-0", "Bearer alice-0", "Bearer alice-0"]  # one 401, then proactive


def test_push_asks_for_pull_push_first_and_sends_the_body_once(tmp_path):
    fake = FakeRegistry()
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 100_000)
    import hashlib

    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    blob = Blob(media_type="application/octet-stream", digest=digest,
                size=path.stat().st_size, path=path)
    with client(fake) as c:
        c.intend_push("a/b")
        assert c.push_blob("a/b", blob) == "uploaded"
    # The first request (a HEAD, no body) drew the only 401, for a pull,push token.
    assert fake.issued[0][1] == ["repository:a/b:pull,push"]
    assert len(fake.issued) == 1
    challenged = [r for r in fake.requests if "authorization" not in r.headers
                  and r.url.path != "/auth/token"]
    assert [r.method for r in challenged] == ["HEAD"]
    puts = fake.sent("PUT", "/blobs/uploads/")
    assert len(puts) == 1 and puts[0].headers["authorization"] == "Bearer alice-0"


def test_a_cross_repository_mount_asks_to_pull_its_source():
    """The registry mounts from FROM only for a token that may pull FROM."""
    fake = FakeRegistry()
    blob = Blob.from_bytes("application/octet-stream", b"weights", mounts=("library/base",))
    with client(fake) as c:
        c.intend_push("a/b")
        assert c.push_blob("a/b", blob) == "uploaded"  # the fake never mounts
    mount = fake.sent("POST", "from=library%2Fbase")[-1]
    token = mount.headers["authorization"].removeprefix("Bearer ")
    assert fake.granted(token) == ["repository:a/b:pull,push", "repository:library/base:pull"]
    blind = [r for r in fake.sent("POST", "/blobs/uploads/") if "from=" not in str(r.url)]
    assert blind and fake.granted(blind[-1].headers["authorization"].removeprefix(
        "Bearer ")) == ["repository:a/b:pull,push"]  # the push's own token, cached


def test_token_renewed_before_it_expires(monkeypatch):
    fake = FakeRegistry(expires_in=4)  # kept for 3 s (a quarter is the margin)
    now = [1000.0]
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: now[0])
    with client(fake) as c:
        c.get_manifest("a/b", "v1")
        now[0] += 2.9
        c.get_manifest("a/b", "v1")
        assert len(fake.issued) == 1
        now[0] += 0.2
        c.get_manifest("a/b", "v1")
    assert len(fake.issued) == 2
    last = fake.sent("GET", "/manifests/")[-1]
    assert last.headers["authorization"] == "Bearer alice-1"  # renewed without a 401
    assert len([r for r in fake.requests if r.url.path != "/auth/token"
                and "authorization" not in r.headers]) == 1


def test_token_the_registry_no_longer_takes_is_replaced_once():
    fake = FakeRegistry()
    with client(fake) as c:
        c.get_manifest("a/b", "v1")
        fake.revoked.add("alice-0")  # e.g. the registry restarted with a new key
        c.get_manifest("a/b", "v1")
    assert [t for t, _ in fake.issued] == ["alice-0", "alice-1"]


def test_wrong_password_is_one_line_naming_login():
    fake = FakeRegistry()
    with client(fake, Credentials("alice", "nope", "auth.json")) as c, \
            pytest.raises(AuthError) as err:
        c.get_manifest("a/b", "v1")
    assert str(err.value) == ("reg.test refused the credentials for a/b: run assay login "
                              "reg.test")
    assert err.value.status == 401 and err.value.detail == "wrong password"


def test_env_credentials_say_which_variable():
    fake = FakeRegistry()
    with client(fake, Credentials("token", "bad", "ASSAY_TOKEN")) as c, \
            pytest.raises(AuthError, match=r"\(or fix ASSAY_TOKEN\)"):
        c.get_manifest("a/b", "v1")


def test_anonymous_denied_says_log_in():
    fake = FakeRegistry()
    with client(fake, None) as c, pytest.raises(AuthError) as err:
        c.get_manifest("a/b", "v1")
    assert fake.sent("GET", "/auth/token")[0].headers.get("authorization") is None
    assert str(err.value) == ("reg.test requires a login for a/b (may not pull a/b): run "
                              "assay login reg.test")


def test_anonymous_pull_allowed():
    fake = FakeRegistry(anonymous_ok=True)
    with client(fake, None) as c:
        c.get_manifest("a/b", "v1")


def test_403_becomes_denied():
    def handler(request):
        return httpx.Response(403, json={"errors": [{"code": "DENIED",
                                                     "message": "bob may not push a/b"}]})

    with RegistryClient(Registry("reg.test", "https"), transport=httpx.MockTransport(handler),
                        credentials=ALICE, attempts=1) as c, \
            pytest.raises(RegistryResponseError) as err:
        c.put_manifest("a/b", "v1", b"{}", "application/json")
    assert str(err.value) == "denied: bob may not push a/b"


@pytest.mark.parametrize(("realm", "sent"), [
    ("http://reg.test:5000/token", True),     # the registry's own origin
    ("https://reg.test/token", True),         # HTTPS to the registry's host name
    ("http://reg.test:5001/token", False),    # another port in clear text: anyone's
    ("https://evil.test/token", False),       # another host
    ("http://evil.test:5000/token", False),
])
def test_credentials_go_to_a_realm_only_at_the_registrys_origin(realm, sent):
    seen = {}

    def handler(request):
        if request.url.path == "/token":
            seen["authorization"] = request.headers.get("authorization")
            return httpx.Response(200, json={"token": "t"})
        if request.headers.get("authorization") == "Bearer t":
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    with RegistryClient(Registry("reg.test:5000", "http"),
                        transport=httpx.MockTransport(handler), credentials=ALICE,
                        attempts=1) as c:
        c.get_manifest("a/b", "v1")
    assert (seen["authorization"] is not None) == sent


@pytest.mark.parametrize("target", ["http://reg.test:5001/blob", "http://cdn.test/blob",
                                    "http://reg.test:5000/blob"])
def test_a_redirect_carries_credentials_only_to_the_same_origin(target):
    seen = {}

    def handler(request):
        if request.url.path == "/blob":
            seen["authorization"] = request.headers.get("authorization")
            return httpx.Response(200, content=b"x")
        if request.headers.get("authorization") is None:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(307, headers={"Location": target})

    with RegistryClient(Registry("reg.test:5000", "http"),
                        transport=httpx.MockTransport(handler), credentials=ALICE,
                        attempts=1) as c:
        c.send("GET", "/v2/a/b/blobs/sha256:x", follow_redirects=True)
    assert (seen["authorization"] is not None) == target.startswith("http://reg.test:5000")


# ---------------------------------------------------------------------------- basic


def test_basic_on_the_rest_api_then_up_front():
    fake = FakeRegistry()
    with client(fake) as c:
        assert c.rest("/api/v1/me") == {"name": "alice"}
        assert c.rest("/api/v1/me") == {"name": "alice"}
    api = [r.headers.get("authorization") for r in fake.requests]
    assert api == [None, basic("alice", "s3cret"), basic("alice", "s3cret")]


def test_rest_without_credentials_is_none():
    with client(FakeRegistry(), None) as c:
        assert c.rest("/api/v1/me") is None
    with client(FakeRegistry(), None) as c, pytest.raises(AuthError, match="assay login"):
        c.request("GET", "/api/v1/tokens", what="list tokens")


# ---------------------------------------------------------------------------- the store


@pytest.fixture
def config(tmp_path, monkeypatch):
    for var in ("ASSAY_TOKEN", "ASSAY_USERNAME", "ASSAY_PASSWORD", "ASSAY_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path / "assay"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return tmp_path


def test_store_save_lookup_remove(config):
    assert store.lookup("reg.test:5000") is None
    path = store.save("reg.test:5000", Credentials("alice", "pw:with:colons"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    found = store.lookup("reg.test:5000")
    assert (found.username, found.secret) == ("alice", "pw:with:colons")
    assert store.lookup("reg.test") is None  # per HOST[:PORT]
    assert "pw:with" not in repr(found)
    assert store.remove("reg.test:5000") and not store.remove("reg.test:5000")
    assert store.lookup("reg.test:5000") is None
    assert json.loads(path.read_text()) == {"auths": {}}
    assert [p.name for p in path.parent.iterdir()] == ["auth.json"]  # no temp files left


def test_env_wins_over_the_file(config, monkeypatch):
    store.save("reg.test", Credentials("alice", "pw"))
    monkeypatch.setenv("ASSAY_USERNAME", "bob")
    monkeypatch.setenv("ASSAY_PASSWORD", "bobpw")
    assert store.lookup("reg.test").username == "bob"
    monkeypatch.setenv("ASSAY_TOKEN", "assay_pat_x")
    found = store.lookup("reg.test")
    assert (found.username, found.secret, found.source) == ("bob", "assay_pat_x", "ASSAY_TOKEN")


def test_docker_config_is_the_fallback(config):
    docker = config / "docker"
    docker.mkdir()
    auth = base64.b64encode(b"carol:cpw").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {
        "https://reg.test:5000/v1/": {"auth": auth},
        "other.test": {"username": "dan", "password": "dpw"}}}))
    found = store.lookup("reg.test:5000")
    assert (found.username, found.secret) == ("carol", "cpw")
    assert store.lookup("other.test").username == "dan"
    store.save("reg.test:5000", Credentials("alice", "pw"))
    assert store.lookup("reg.test:5000").username == "alice"  # ours first


def test_stored_credentials_are_bound_to_scheme_host_and_port(config):
    store.save("reg.test:5000", Credentials("alice", "pw"), "https")
    store.save("127.0.0.1:5000", Credentials("bob", "pw"))  # loopback: plain HTTP
    assert store.lookup("reg.test:5000", "https").username == "alice"
    assert store.lookup("reg.test:5000") is not None  # no scheme named: HTTPS by default
    assert store.lookup("reg.test:5000", "http") is None  # never in clear text
    assert store.lookup("reg.test:5001", "https") is None
    assert store.lookup("127.0.0.1:5000", "http").username == "bob"
    assert store.lookup("127.0.0.1:5000", "https") is None
    # An entry written before schemes were recorded: the client's default for the host.
    path = store.auth_file()
    doc = json.loads(path.read_text())
    del doc["auths"]["reg.test:5000"]["scheme"]
    path.write_text(json.dumps(doc))
    assert store.lookup("reg.test:5000", "https").username == "alice"
    assert store.lookup("reg.test:5000", "http") is None


def test_docker_keys_bind_their_scheme(config):
    docker = config / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {
        "https://reg.test:5000": {"username": "carol", "password": "cpw"},
        "http://lan.test:5000": {"username": "dan", "password": "dpw"}}}))
    assert store.lookup("reg.test:5000", "https").username == "carol"
    assert store.lookup("reg.test:5000", "http") is None
    assert store.lookup("lan.test:5000", "http").username == "dan"
    assert store.lookup("lan.test:5000", "https") is None


def test_environment_credentials_follow_assay_registry(config, monkeypatch):
    monkeypatch.setenv("ASSAY_TOKEN", "assay_pat_x")
    # The CLI (ambient): whatever registry the command names.
    assert store.lookup("anything.test:1").secret == "assay_pat_x"
    # A worker or the registry fetching what a caller named: nowhere by default ...
    assert store.lookup("anything.test:1", ambient=False) is None
    # ... and to $ASSAY_REGISTRY alone once it names one, for both.
    monkeypatch.setenv("ASSAY_REGISTRY", "https://reg.test:5000")
    for ambient in (True, False):
        assert store.lookup("reg.test:5000", "https", ambient=ambient).secret == "assay_pat_x"
        assert store.lookup("reg.test:5000", "http", ambient=ambient) is None
        assert store.lookup("reg.test:5001", "https", ambient=ambient) is None
        assert store.lookup("anything.test:1", ambient=ambient) is None
    monkeypatch.setenv("ASSAY_REGISTRY", "127.0.0.1:5000")
    assert store.lookup("127.0.0.1:5000", "http", ambient=False).secret == "assay_pat_x"


def test_unreadable_docker_config_is_ignored(config):
    (config / "docker").mkdir()
    (config / "docker" / "config.json").write_text("{not json")
    assert store.lookup("reg.test") is None
