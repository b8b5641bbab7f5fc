"""Access control over HTTP (``ASSAY_AUTH=1``), on both stacks: challenges, Basic auth,
Docker token auth with scope reduction, personal access tokens (scopes, expiry,
revocation, the user name sent with them), bearer tokens dying with what they were
issued for (on every replica), bounds on what is asked for, robots, anonymous pull,
signed blob URLs, listings filtered by role, cross-namespace mounts, Ollama's
ed25519-signed token requests, who may read remote verification records and the audit
log."""

from __future__ import annotations

import base64
import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

import jwt
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from registry.access import tokens
from registry.app import create_app
from registry.db.tables import access_tokens, users, utcnow
from registry.services.remote import parse_payload
from tests.support.oci import error_code, push_image, sha256
from tests.support.ollama_keys import OllamaKey, token_url

# Slow: access control on, every credential check is a deliberately costly argon2 hash.
pytestmark = pytest.mark.slow

BASE = "http://registry.test"
PASSWORDS = {"root": "root-password", "wanda": "wanda-password", "rita": "rita-password",
             "otto": "otto-password"}


@pytest.fixture
def reg(settings):
    """An auth-on registry: root (site admin), wanda (write in team), rita (read in
    team), otto (no role anywhere) and robot ci (write in team, token in ``reg.ci``)."""
    settings = settings.model_copy(update={"auth": True, "auth_cache_seconds": 0})
    app = create_app(settings, run_migrations=False)
    with TestClient(app, base_url=BASE) as client:
        access = app.state.registry.identities
        access.add_user("root", PASSWORDS["root"], admin=True)
        for name in ("wanda", "rita", "otto"):
            access.add_user(name, PASSWORDS[name])
        access.grant("team", "wanda", "write")
        access.grant("team", "rita", "read")
        access.add_user("ci", None, robot=True)
        access.grant("team", "ci", "write")
        _, client.ci = access.create_token("ci", "deploy")
        yield client


def as_(name: str) -> tuple[str, str]:
    return name, PASSWORDS[name]


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def challenge_params(response) -> dict:
    value = response.headers["www-authenticate"]
    assert value.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def test_anonymous_gets_a_bearer_challenge_with_quoted_realm_on_this_host(reg):
    r = reg.get("/v2/")
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    assert challenge_params(r) == {"realm": f"{BASE}/auth/token", "service": "assay"}
    r = reg.get("/v2/team/model/manifests/latest")
    assert r.status_code == 401
    assert challenge_params(r)["scope"] == "repository:team/model:pull"
    r = reg.post("/v2/team/model/blobs/uploads/")
    assert challenge_params(r)["scope"] == "repository:team/model:pull,push"
    # REST asks for Basic and answers problem JSON.
    r = reg.get("/api/v1/repositories/team/model/tags")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="assay"'
    assert r.headers["content-type"] == "application/problem+json"


def test_basic_auth_roles_writer_pushes_reader_pulls_others_are_denied(reg):
    reg.auth = as_("wanda")
    digest, _ = push_image(reg, "team/model", "v1")
    reg.auth = as_("rita")
    assert reg.get("/v2/team/model/manifests/v1").status_code == 200
    r = reg.post("/v2/team/model/blobs/uploads/")
    assert r.status_code == 403 and error_code(r) == "DENIED"
    assert r.json()["errors"][0]["message"].startswith(
        "rita has no write role in namespace team (pushing team/model needs write")
    r = reg.delete(f"/v2/team/model/manifests/{digest}")
    assert r.status_code == 403  # delete needs admin of the namespace
    reg.auth = as_("otto")
    assert reg.get("/v2/team/model/manifests/v1").status_code == 403
    reg.auth = ("rita", "wrong-password")
    r = reg.get("/v2/team/model/manifests/v1")
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    reg.auth = as_("root")
    assert reg.delete(f"/v2/team/model/manifests/{digest}").status_code == 202


def test_everyone_owns_the_namespace_named_after_them(reg):
    reg.auth = as_("otto")
    push_image(reg, "otto/private", "v1")
    assert reg.get("/v2/otto/private/manifests/v1").status_code == 200
    reg.auth = as_("rita")
    assert reg.get("/v2/otto/private/manifests/v1").status_code == 403


def _token(reg, scope: str | list[str], auth=None, headers=None) -> dict:
    scopes = [scope] if isinstance(scope, str) else scope
    r = reg.get("/auth/token", params=[("service", "assay")] + [("scope", s) for s in scopes],
                auth=auth, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] > 0
    return body


def _claims(reg, token: str) -> dict:
    return tokens.verify(reg.app.state.registry.identities.signing_key(), token, service="assay")


def test_token_endpoint_grants_only_what_the_caller_may_do(reg):
    reg.auth = as_("wanda")
    push_image(reg, "team/model", "v1")
    reg.auth = None
    body = _token(reg, "repository:team/model:pull,push", auth=as_("rita"))
    assert _claims(reg, body["token"])["access"] == [
        {"type": "repository", "name": "team/model", "actions": ["pull"]}]
    h = bearer(body["token"])
    assert reg.get("/v2/team/model/manifests/v1", headers=h).status_code == 200
    r = reg.post("/v2/team/model/blobs/uploads/", headers=h)
    assert r.status_code == 403 and error_code(r) == "DENIED"
    # The token is for that repository only, even where rita could read: 401
    # insufficient_scope, asking for a token that covers it (Ollama then fetches one).
    r = reg.get("/v2/team/other/tags/list", headers=h)
    assert r.status_code == 401
    assert challenge_params(r) == {"realm": f"{BASE}/auth/token", "service": "assay",
                                   "scope": "repository:team/other:pull",
                                   "error": "insufficient_scope"}
    # A blob HEAD (how Ollama and oras start a push) asks for pull,push up front.
    r = reg.head(f"/v2/team/new/blobs/{sha256(b'z')}")
    assert challenge_params(r)["scope"] == "repository:team/new:pull,push"
    # The writer's token for the same scope can push.
    body = _token(reg, "repository:team/model:pull,push", auth=as_("wanda"))
    assert reg.post("/v2/team/model/blobs/uploads/",
                    headers=bearer(body["token"])).status_code == 202
    # Wrong password at the token endpoint: 401, OCI error JSON.
    r = reg.get("/auth/token", params={"scope": "repository:team/model:pull"},
                auth=("rita", "nope-nope"))
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    # Another service's audience is refused up front.
    r = reg.get("/auth/token", params={"service": "elsewhere"}, auth=as_("rita"))
    assert r.status_code == 400


def test_anonymous_tokens_only_for_what_anonymous_callers_may_do(reg):
    reg.auth = as_("wanda")
    push_image(reg, "team/model", "v1")
    reg.auth = None
    # oras and skopeo ask for an anonymous token first: one that would not do what they
    # ask is refused (401), so they sign in rather than fail on a bare 403 later.
    r = reg.get("/auth/token", params={"scope": "repository:team/model:pull"})
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    reg.app.state.registry.identities.set_anonymous_pull("team", True)
    body = _token(reg, "repository:team/model:pull")
    assert _claims(reg, body["token"])["access"][0]["actions"] == ["pull"]
    assert reg.get("/v2/team/model/manifests/v1",
                   headers=bearer(body["token"])).status_code == 200
    assert reg.get("/v2/team/model/manifests/v1").status_code == 200  # no token at all
    r = reg.get("/auth/token", params={"scope": "repository:team/model:pull,push"})
    assert r.status_code == 401
    # An anonymous token that lacks an action gets a challenge, never a bare 403.
    r = reg.post("/v2/team/model/blobs/uploads/", headers=bearer(body["token"]))
    assert r.status_code == 401 and "realm=" in r.headers["www-authenticate"]
    assert reg.post("/v2/team/model/blobs/uploads/").status_code == 401


def test_bearer_tokens_expire_and_forgeries_are_refused(reg):
    key = reg.app.state.registry.identities.signing_key()
    access = [{"type": "repository", "name": "team/model", "actions": ["pull"]}]
    expired, _ = tokens.issue(key, subject="rita", service="assay", issuer=BASE,
                              access=access, ttl=-60)
    r = reg.get("/v2/team/model/tags/list", headers=bearer(expired))
    assert r.status_code == 401 and "challenge" not in r.text
    assert "realm=" in r.headers["www-authenticate"]
    forged, _ = tokens.issue("not-the-key-" + "x" * 32, subject="root", service="assay",
                             issuer=BASE, access=access, ttl=60)
    assert reg.get("/v2/team/model/tags/list", headers=bearer(forged)).status_code == 401
    other, _ = tokens.issue(key, subject="rita", service="other", issuer=BASE,
                            access=access, ttl=60)
    assert reg.get("/v2/team/model/tags/list", headers=bearer(other)).status_code == 401


def test_personal_access_tokens_scopes_revocation_and_expiry(reg):
    access = reg.app.state.registry.identities
    record, secret = access.create_token("wanda", "laptop", ["pull"])
    assert secret.startswith("assay_pat_") and record["scopes"] == ["pull"]
    reg.auth = as_("wanda")
    push_image(reg, "team/model", "v1")
    reg.auth = None
    for how in ({"headers": basic("wanda", secret)}, {"headers": bearer(secret)}):
        assert reg.get("/v2/team/model/manifests/v1", **how).status_code == 200
        assert reg.post("/v2/team/model/blobs/uploads/", **how).status_code == 403
    # The token endpoint accepts it too, and never grants more than its scopes.
    body = _token(reg, "repository:team/model:pull,push", headers=basic("token", secret))
    assert _claims(reg, body["token"])["access"][0]["actions"] == ["pull"]
    # A wider bearer token could not be had with this PAT: 403, not insufficient_scope.
    r = reg.post("/v2/team/model/blobs/uploads/", headers=bearer(body["token"]))
    assert r.status_code == 403 and error_code(r) == "DENIED"
    # Namespace-limited scope.
    _, team_push = access.create_token("wanda", "team only", ["pull:team", "push:team"])
    h = bearer(team_push)
    assert reg.post("/v2/team/model/blobs/uploads/", headers=h).status_code == 202
    assert reg.post("/v2/wanda/own/blobs/uploads/", headers=h).status_code == 403
    # Revoked: 401 at once (the credential cache is off in this fixture).
    access.revoke_token("wanda", record["id"])
    assert reg.get("/v2/team/model/manifests/v1", headers=bearer(secret)).status_code == 401
    # Expired.
    record, secret = access.create_token("wanda", "short", ["pull"], 1)
    with access.db.write() as conn:
        conn.execute(update(access_tokens).where(access_tokens.c.id == record["id"])
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert reg.get("/v2/team/model/manifests/v1", headers=bearer(secret)).status_code == 401
    # Bad scopes are refused when the token is made.
    r = reg.post("/api/v1/tokens", json={"name": "t", "scopes": ["fly"]}, auth=as_("wanda"))
    assert r.status_code == 400 and "invalid scope" in r.json()["detail"]


def test_robot_pushes_with_its_token_and_has_no_password(reg):
    h = basic("ci", reg.ci)
    r = reg.post(f"/v2/team/app/blobs/uploads/?digest={sha256(b'x')}", content=b"x", headers=h)
    assert r.status_code == 201
    assert reg.get("/v2/ci/own/tags/list", headers=h).status_code == 403  # no own namespace
    r = reg.post("/api/v1/users", json={"name": "r2", "password": "abcdefghij", "robot": True},
                 auth=as_("root"))
    assert r.status_code == 400


def test_signed_blob_urls_let_ranged_part_requests_in_without_credentials(reg):
    reg.auth = as_("wanda")
    data = bytes(range(256)) * 40
    push_image(reg, "team/model", "v1", layers=[data])
    digest = sha256(data)
    location = reg.get(f"/v2/team/model/blobs/{digest}").headers["location"]
    assert "signature=" in location and "expires=" in location
    reg.auth = None
    url = urlsplit(location)
    path = f"{url.path}?{url.query}"
    r = reg.get(path, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    # Tampered, or for another blob, or expired: refused.
    assert reg.get(path[:-4] + "0000").status_code == 401
    other = sha256(b"other")
    assert reg.get(path.replace(digest, other)).status_code == 401
    key = reg.app.state.registry.identities.signing_key()
    stale = tokens.sign_blob(key, "team/model", digest, -5)
    assert reg.get(f"{url.path}?{stale}").status_code == 401
    # A signature never opens a manifest or an upload.
    assert reg.get(f"/v2/team/model/manifests/v1?{url.query}").status_code == 401


def test_listings_show_only_what_the_caller_may_pull(reg):
    for user, repo in (("wanda", "team/a"), ("otto", "otto/b"), ("root", "secret/c")):
        reg.auth = as_(user)
        push_image(reg, repo, "v1")
    reg.auth = as_("rita")
    assert reg.get("/v2/_catalog").json()["repositories"] == ["team/a"]
    names = [r["name"] for r in reg.get("/api/v1/repositories").json()["repositories"]]
    assert names == ["team/a"]
    reg.auth = as_("root")
    assert reg.get("/v2/_catalog").json()["repositories"] == ["otto/b", "secret/c", "team/a"]
    reg.auth = None
    assert reg.get("/v2/_catalog").status_code == 200  # anonymous: nothing to see
    assert reg.get("/v2/_catalog").json()["repositories"] == []


def test_mount_from_a_namespace_the_pusher_cannot_read_uploads_instead(reg):
    reg.auth = as_("root")
    secret = b"root's secret weights"
    push_image(reg, "secret/model", "v1", layers=[secret])
    reg.auth = as_("otto")
    r = reg.post(f"/v2/otto/steal/blobs/uploads/?mount={sha256(secret)}&from=secret/model")
    assert r.status_code == 202  # an upload session, not a mount
    assert reg.head(f"/v2/otto/steal/blobs/{sha256(secret)}").status_code == 404
    reg.auth = as_("root")
    r = reg.post(f"/v2/root/copy/blobs/uploads/?mount={sha256(secret)}&from=secret/model")
    assert r.status_code == 201


def test_ollama_signed_token_request(reg, tmp_path):
    key = OllamaKey()
    key.save(tmp_path / ".ollama")
    reg.auth = as_("wanda")
    r = reg.post("/api/v1/keys", json={"public_key": key.public_line() + " wanda@laptop"})
    assert r.status_code == 201 and r.json()["fingerprint"].startswith("SHA256:")
    push_image(reg, "team/model", "v1")
    reg.auth = None
    r = reg.get("/v2/team/model/manifests/v1")
    ch = challenge_params(r)
    url = token_url(ch["realm"], ch["service"], "repository:team/model:pull,push")
    r = reg.get(url, headers={"Authorization": OllamaKey.load(
        tmp_path / ".ollama" / "id_ed25519").sign(url)})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert _claims(reg, token)["access"][0]["actions"] == ["pull", "push"]
    assert reg.get("/v2/team/model/manifests/v1", headers=bearer(token)).status_code == 200
    # The same request again is a replay.
    r = reg.get(url, headers={"Authorization": key.sign(url)})
    assert r.status_code == 401 and "nonce" in r.json()["errors"][0]["message"]
    # A stale timestamp, a signature over another URL, an unknown key: refused.
    stale = token_url(ch["realm"], ch["service"], "repository:team/model:pull",
                      ts=int(time.time()) - 3600)
    r = reg.get(stale, headers={"Authorization": key.sign(stale)})
    assert r.status_code == 401 and "ts" in r.json()["errors"][0]["message"]
    fresh = token_url(ch["realm"], ch["service"], "repository:team/model:pull")
    r = reg.get(fresh, headers={"Authorization": key.sign(fresh + "x")})
    assert r.status_code == 401 and "signature" in r.json()["errors"][0]["message"]
    stranger = OllamaKey()
    fresh = token_url(ch["realm"], ch["service"], "repository:team/model:pull")
    r = reg.get(fresh, headers={"Authorization": stranger.sign(fresh)})
    assert r.status_code == 401 and "assay key add" in r.json()["errors"][0]["message"]
    # Registered twice: 409; a non-ed25519 key: 400.
    reg.auth = as_("rita")
    assert reg.post("/api/v1/keys", json={"public_key": key.public_line()}).status_code == 409
    r = reg.post("/api/v1/keys", json={"public_key": "ssh-rsa AAAAB3NzaC1yc2E rita"})
    assert r.status_code == 400


def test_audit_log_names_who_pushed_deleted_granted_and_overrode(reg):
    reg.auth = as_("wanda")
    digest, _ = push_image(reg, "team/model", "v1")
    reg.auth = as_("root")
    assert reg.put("/api/v1/namespaces/team/members/otto",
                   json={"role": "read"}).status_code == 200
    assert reg.delete("/v2/team/model/manifests/v1").status_code == 202
    reg.auth = as_("wanda")
    r = reg.get("/api/v1/audit")
    assert r.status_code == 403 and r.json()["code"] == "DENIED"
    reg.auth = as_("root")
    entries = reg.get("/api/v1/audit").json()["entries"]
    seen = [(e["actor"], e["action"], e["target"]) for e in entries]
    assert ("wanda", "push", "team/model:v1") in seen
    assert ("root", "namespace.grant", "team") in seen
    assert ("root", "delete", "team/model:v1") in seen
    assert ("root", "user.add", "wanda") not in seen  # made by the fixture, no request
    assert all(e["remote_addr"] for e in entries if e["actor"] in ("root", "wanda"))
    only = reg.get("/api/v1/audit", params={"actor": "wanda"}).json()["entries"]
    assert {e["actor"] for e in only} == {"wanda"}


def test_namespace_admins_manage_their_namespace_only(reg):
    access = reg.app.state.registry.identities
    access.grant("team", "otto", "admin")
    reg.auth = as_("otto")
    assert reg.put("/api/v1/namespaces/team", json={"anonymous_pull": True}).json()[
        "anonymous_pull"] is True
    assert reg.put("/api/v1/policies/team", json={"gate": False}).status_code == 200
    assert reg.put("/api/v1/policies/_", json={"gate": False}).status_code == 403
    assert reg.put("/api/v1/namespaces/other", json={"anonymous_pull": True}).status_code == 403
    reg.auth = as_("wanda")
    r = reg.put("/api/v1/namespaces/team/members/wanda", json={"role": "admin"})
    assert r.status_code == 403  # a writer cannot promote themself
    assert reg.get("/api/v1/me").json()["roles"] == {"team": "write", "wanda": "admin"}


def test_password_guessing_is_slowed_to_a_few_tries_a_minute(reg):
    reg.app.state.failed_logins = None
    reg.app.state.settings.auth_max_failures_per_minute = 3
    for _ in range(3):
        assert reg.get("/v2/team/x/tags/list", auth=("rita", "guess-guess")).status_code == 401
    # Now even the right password is not checked from this client for a while.
    r = reg.get("/v2/team/x/tags/list", auth=as_("rita"))
    assert r.status_code == 429 and error_code(r) == "TOOMANYREQUESTS"
    assert int(r.headers["retry-after"]) >= 1
    r = reg.get("/auth/token", params={"scope": "repository:team/x:pull"}, auth=as_("rita"))
    assert r.status_code == 429


def test_a_narrowed_token_cannot_mint_a_wider_token_or_add_a_key(reg):
    access = reg.app.state.registry.identities
    _, pull_only = access.create_token("wanda", "ci", ["pull"])
    r = reg.post("/api/v1/tokens", json={"name": "wider", "scopes": ["push", "admin"]},
                 headers=bearer(pull_only))
    assert r.status_code == 403 and "narrower token" in r.json()["detail"]
    r = reg.post("/api/v1/keys", json={"public_key": OllamaKey().public_line()},
                 headers=bearer(pull_only))
    assert r.status_code == 403
    # With the password, or a token that has the admin scope, it works.
    assert reg.post("/api/v1/tokens", json={"name": "a"}, auth=as_("wanda")).status_code == 201
    _, admin_token = access.create_token("wanda", "admin", ["admin"])
    r = reg.post("/api/v1/tokens", json={"name": "b"}, headers=bearer(admin_token))
    assert r.status_code == 201


def test_a_cached_bearer_token_still_dies_at_its_expiry(reg):
    """Verified credentials are cached (auth_cache_seconds), never past their own exp."""
    reg.app.state.settings.auth_cache_seconds = 3600
    reg.app.state.credential_cache = None
    key = reg.app.state.registry.identities.signing_key()
    access = [{"type": "repository", "name": "team/model", "actions": ["pull"]}]
    token, _ = tokens.issue(key, subject="rita", service="assay", issuer=BASE,
                            access=access, ttl=-2)  # expired, but inside the 5 s leeway
    # exp is whole seconds: the leeway leaves this token 2 to 3 s, not the 0 to 1 s a
    # ttl of -4 left it (a slow first request on PostgreSQL came after its end).
    assert reg.get("/v2/team/model/tags/list", headers=bearer(token)).status_code == 404
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp + 5 + 0.2 - time.time()))
    r = reg.get("/v2/team/model/tags/list", headers=bearer(token))
    assert r.status_code == 401


def test_audit_filters_refuse_unprintable_text(reg):
    """A NUL byte in a filter was a 500 on PostgreSQL (found by schemathesis)."""
    reg.auth = as_("root")
    r = reg.get("/api/v1/audit", params={"action": "push\x00"})
    assert r.status_code == 400 and r.json()["code"] == "UNSUPPORTED"
    assert reg.get("/api/v1/audit", params={"action": "push"}).status_code == 200


def test_basic_auth_with_a_personal_access_token_needs_the_owners_name_or_token(reg):
    """The user name sent with a token is its owner's, or ``token`` (what the assay
    client sends without ASSAY_USERNAME); any other name is refused, not ignored."""
    _, secret = reg.app.state.registry.identities.create_token("wanda", "laptop")
    reg.auth = as_("wanda")
    push_image(reg, "team/model", "v1")
    reg.auth = None
    url, scope = "/v2/team/model/manifests/v1", {"scope": "repository:team/model:pull"}
    for user in ("wanda", "token"):
        assert reg.get(url, headers=basic(user, secret)).status_code == 200
        assert reg.get("/auth/token", params=scope,
                       headers=basic(user, secret)).status_code == 200
    for user in ("rita", "root", "anyone", ""):
        r = reg.get(url, headers=basic(user, secret))
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", user
        r = reg.get("/auth/token", params=scope, headers=basic(user, secret))
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", user
    assert reg.get("/v2/team/app/tags/list", headers=basic("ci", reg.ci)).status_code == 404


def _ollama_token(reg, key: OllamaKey, scope: str) -> str:
    url = token_url(f"{BASE}/auth/token", "assay", scope)
    r = reg.get(url, headers={"Authorization": key.sign(url)})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def test_a_bearer_token_dies_with_the_token_or_key_it_was_issued_for(reg):
    reg.auth = as_("wanda")
    push_image(reg, "team/model", "v1")
    key = OllamaKey()
    key_id = reg.post("/api/v1/keys", json={"public_key": key.public_line()}).json()["id"]
    reg.auth = None
    record, pat = reg.app.state.registry.identities.create_token("wanda", "laptop")
    scope = "repository:team/model:pull"
    from_pat = _token(reg, scope, headers=basic("wanda", pat))["token"]
    from_key = _ollama_token(reg, key, scope)
    from_password = _token(reg, scope, auth=as_("wanda"))["token"]
    assert _claims(reg, from_pat)["assay_credential"] == f"token:{record['id']}"
    url = "/v2/team/model/manifests/v1"
    for token in (from_pat, from_key, from_password):
        assert reg.get(url, headers=bearer(token)).status_code == 200
    reg.auth = as_("wanda")
    assert reg.delete(f"/api/v1/tokens/{record['id']}").status_code == 200
    assert reg.delete(f"/api/v1/keys/{key_id}").status_code == 200
    reg.auth = None
    for token in (from_pat, from_key):
        r = reg.get(url, headers=bearer(token))
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    assert reg.get(url, headers=bearer(from_password)).status_code == 200


CACHE = 2.0  # auth_cache_seconds of the two replicas below


@pytest.fixture
def replicas(settings):
    """Two replicas of an auth-on registry on one database and store, each with its own
    credential cache (``CACHE`` seconds); the users of ``reg``, made an hour ago."""
    settings = settings.model_copy(update={"auth": True, "auth_cache_seconds": CACHE})
    apps = [create_app(settings.model_copy(), run_migrations=False) for _ in range(2)]
    with TestClient(apps[0], base_url=BASE) as a, TestClient(apps[1], base_url=BASE) as b:
        access = a.app.state.registry.identities
        access.add_user("root", PASSWORDS["root"], admin=True)
        for name in ("wanda", "rita", "otto"):
            access.add_user(name, PASSWORDS[name])
        with access.db.write() as conn:
            conn.execute(update(users).values(created_at=utcnow() - timedelta(hours=1)))
        yield a, b


def test_other_replicas_refuse_bearer_tokens_of_a_revoked_token_or_deleted_user(replicas):
    """The replica that revokes a token or deletes a user refuses the bearer tokens
    issued for them at once, the others within auth_cache_seconds; a deleted user's
    name taken again does not revive tokens issued before."""
    a, b = replicas
    access = a.app.state.registry.identities
    record, pat = access.create_token("wanda", "laptop")
    scope = "repository:team/model:pull"
    from_pat = _token(a, scope, headers=basic("wanda", pat))["token"]
    from_otto = _token(a, scope, auth=as_("otto"))["token"]
    claims = _claims(a, _token(a, scope, auth=as_("rita"))["token"])
    claims["iat"] -= 60  # issued a minute before rita's name is taken again below
    from_old_rita = jwt.encode(claims, access.signing_key(), algorithm="HS256")
    tokens_ = (from_pat, from_otto, from_old_rita)
    for replica in (a, b):  # both have them verified and cached
        for token in tokens_:
            assert replica.get("/v2/", headers=bearer(token)).status_code == 200
    cached_until = time.monotonic() + CACHE
    assert a.delete(f"/api/v1/tokens/{record['id']}", auth=as_("wanda")).status_code == 200
    for name in ("otto", "rita"):
        assert a.delete(f"/api/v1/users/{name}", auth=as_("root")).status_code == 200
    access.add_user("rita", "a-new-rita-password")
    for token in tokens_:
        assert a.get("/v2/", headers=bearer(token)).status_code == 401
    time.sleep(max(0.0, cached_until - time.monotonic()) + 0.1)
    for token in tokens_:
        r = b.get("/v2/", headers=bearer(token))
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    # The new rita signs in as herself.
    assert b.get("/v2/", auth=("rita", "a-new-rita-password")).status_code == 200


def test_token_endpoint_bounds_the_scopes_asked_for(reg):
    """Over the bounds: 400 with OCI error JSON, the message not echoing the request."""
    many = [f"repository:team/m{i}:pull" for i in range(tokens.MAX_SCOPES + 1)]
    long = "repository:team/" + "m" * tokens.MAX_SCOPE_LENGTH + ":pull"
    for params in ([("scope", s) for s in many], {"scope": " ".join(many)},
                   {"scope": long}):
        for auth in (as_("wanda"), None):
            r = reg.get("/auth/token", params=params, auth=auth)
            assert r.status_code == 400 and error_code(r) == "UNSUPPORTED", r.text
            assert len(r.text) < 500
    r = reg.get("/auth/token", params={"service": "s" * 10_000}, auth=as_("wanda"))
    assert r.status_code == 400 and len(r.text) < 500
    # At the bounds, a token.
    body = _token(reg, many[:-1], auth=as_("wanda"))
    assert len(_claims(reg, body["token"])["access"]) == tokens.MAX_SCOPES


def test_names_and_scopes_of_tokens_and_keys_are_bounded(reg):
    """Over the bounds: 400 problem JSON (never a 500 from the database), the message
    not echoing the request."""

    def refused(r):
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "UNSUPPORTED" and len(r.text) < 500

    reg.auth = as_("wanda")
    line = OllamaKey().public_line()
    refused(reg.post("/api/v1/tokens", json={"name": "n" * 129}))
    refused(reg.post("/api/v1/tokens", json={"name": "nul\x00byte"}))
    refused(reg.post("/api/v1/tokens", json={"name": "t", "scopes": ["pull"] * 33}))
    refused(reg.post("/api/v1/tokens", json={"name": "t", "scopes": ["pull:" + "t" * 300]}))
    refused(reg.post("/api/v1/tokens", json={"name": "t", "scopes": ["x" * 100_000]}))
    refused(reg.post("/api/v1/keys", json={"public_key": f"{line} {'c' * 256}"}))
    refused(reg.post("/api/v1/keys", json={"public_key": f"{line} nul\x00byte"}))
    refused(reg.post("/api/v1/keys", json={"public_key": "ssh-" + "r" * 100_000}))
    reg.auth = as_("root")
    refused(reg.post("/api/v1/users/ci/tokens", json={"name": "t", "scopes": ["pull"] * 33}))
    refused(reg.post("/api/v1/users", json={"name": "u" * 100_000, "robot": True}))
    refused(reg.put("/api/v1/namespaces/team/members/rita", json={"role": "r" * 100_000}))
    refused(reg.get("/api/v1/namespaces/" + "n" * 10_000))
    # A user name nobody can have is unknown: never a database error (PostgreSQL refuses
    # NUL bytes), never echoed in full.
    for method, path in (("GET", "/api/v1/users/a%00b"), ("DELETE", "/api/v1/users/" + "u" * 5000),
                         ("POST", "/api/v1/users/a%00b/tokens"),
                         ("DELETE", "/api/v1/namespaces/team/members/a%00b"),
                         ("DELETE", "/api/v1/namespaces/te%00am/members/rita")):
        r = reg.request(method, path, json={"name": "t"} if method == "POST" else None)
        assert r.status_code == 404 and len(r.text) < 500, (method, path, r.text[:200])
    reg.auth = None
    r = reg.get("/v2/", headers=basic("nul\x00name", "some-password"))
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    # At the bounds.
    reg.auth = as_("wanda")
    scopes = ["pull:" + "t" * 255] + ["push:team"] * 31
    r = reg.post("/api/v1/tokens", json={"name": "n" * 128, "scopes": scopes})
    assert r.status_code == 201, r.text
    r = reg.post("/api/v1/keys", json={"public_key": f"{line} {'c' * 255}"})
    assert r.status_code == 201, r.text


PEER = "peer.example.com:5000"


def _lookup(reg, reference: str, auth=None):
    return reg.get("/api/v1/verifications", params={"reference": reference}, auth=auth)


def test_remote_verification_records_are_for_signed_in_callers_or_a_namespace(reg):
    """Remote records (other registries' names, this network's pull errors) are hidden
    from whoever may not see them exactly as a local model is: 404 "nothing is known",
    whether or not anything is."""
    known = f"{PEER}/team/gemma@sha256:" + "ab" * 32
    reg.app.state.registry.remote.submit(parse_payload({"reference": known}), None)

    def hidden(reference: str, auth=None):
        r = _lookup(reg, reference, auth)
        assert r.status_code == 404, r.text
        assert r.json()["detail"] == f"nothing is known about {reference!r}"

    unknown = f"{PEER}/team/other@sha256:" + "cd" * 32
    for reference in (known, unknown, "team/model:v1"):
        hidden(reference)
    # Unset: any signed-in user.
    for who in ("otto", "rita", "root"):
        r = _lookup(reg, known, as_(who))
        assert r.status_code == 200 and r.json()["job"]["status"] == "queued", r.text
    # Set: whoever may pull from that namespace (and nobody else, known or not).
    reg.app.state.settings.remote_verifications_namespace = "team"
    for who in ("rita", "root"):
        assert _lookup(reg, known, as_(who)).status_code == 200
    for reference in (known, unknown):
        hidden(reference)
        hidden(reference, as_("otto"))
    # The namespace's anonymous pull opens them as it opens its models.
    reg.app.state.registry.identities.set_anonymous_pull("team", True)
    assert _lookup(reg, known).status_code == 200
