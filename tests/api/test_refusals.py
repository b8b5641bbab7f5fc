"""Refusals over HTTP with access control on: every 401/403 names the namespace, the
action, the role it needs and whether the user, the token or an anonymous caller lacks it,
on ``/v2/`` (in the body, and in ``X-Error-Message`` where a HEAD has none), after Docker
token auth (the token remembers what it was not granted), at the token endpoint and on
``/api/``. The texts themselves are ``registry.access.refusals`` (``tests/unit/
test_refusals.py``)."""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest

from tests.support.auth_app import auth_client
from tests.support.oci import error_code, sha256

# Slow: access control on, every password check is a deliberately costly argon2 hash.
pytestmark = pytest.mark.slow

PASSWORDS = {"wanda": "wanda-password", "rita": "rita-password"}


@pytest.fixture
def reg(settings):
    """wanda (write in team), rita (read in team); nobody has a role in ``other``."""
    with auth_client(settings, users=PASSWORDS,
                     roles={"team": {"wanda": "write", "rita": "read"}}) as client:
        yield client


def as_(name: str) -> tuple[str, str]:
    return name, PASSWORDS[name]


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _token(reg, scope: str, **how) -> str:
    r = reg.get("/auth/token", params={"service": "assay", "scope": scope}, **how)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def _message(r) -> str:
    """The refusal's text from its body (OCI error or problem JSON), checked against the
    ``X-Error-Message`` header that carries it for bodyless answers."""
    body = r.json()
    text = body["detail"] if "detail" in body and "errors" not in body else \
        body["errors"][0]["message"]
    assert unquote(r.headers["x-error-message"]) == text
    return text


def test_refusals_say_who_lacks_which_role_or_scope(reg):
    """User lacks the role, token lacks the scope, anonymous, the wrong namespace: every
    refusal names the namespace, the action, the role needed and who lacks it, on /v2/,
    in a HEAD's header, after Docker token auth, and on /api/."""
    access = reg.app.state.registry.identities
    _, pull_only = access.create_token("wanda", "ci", ["pull"])
    _, team_only = access.create_token("wanda", "team-only", ["pull", "push:team"])
    blob = f"/v2/other/gemma3/blobs/{sha256(b'x')}"
    # The user has no role in the namespace (Basic), and as a HEAD, which has no body.
    r = reg.post("/v2/other/gemma3/blobs/uploads/", auth=as_("wanda"))
    assert r.status_code == 403 and error_code(r) == "DENIED"
    no_role = ("wanda has no write role in namespace other (pushing other/gemma3 needs "
               "write); a namespace admin can grant it: assay namespace grant other wanda "
               "write")
    assert _message(r) == no_role
    assert r.json()["errors"][0]["detail"]["lacking"] == "user"
    r = reg.head(blob, auth=as_("wanda"))
    assert r.status_code == 403 and r.content == b""
    assert unquote(r.headers["x-error-message"]) == (
        "wanda has no read role in namespace other (pulling other/gemma3 needs read); a "
        "namespace admin can grant it: assay namespace grant other wanda read")
    # Docker token auth: the token asked for pull,push was granted nothing; the HEAD that
    # starts the push is refused as the push it is.
    token = _token(reg, "repository:other/gemma3:pull,push", auth=as_("wanda"))
    r = reg.head(blob, headers=bearer(token))
    assert r.status_code == 403 and unquote(r.headers["x-error-message"]) == no_role
    # The role is too low; the same after the token endpoint granted only pull.
    too_low = ("rita has no write role in namespace team (pushing team/gemma3 needs write; "
               "rita has read); a namespace admin can grant it: assay namespace grant team "
               "rita write")
    assert _message(reg.post("/v2/team/gemma3/blobs/uploads/", auth=as_("rita"))) == too_low
    token = _token(reg, "repository:team/gemma3:pull,push", auth=as_("rita"))
    assert _message(reg.post("/v2/team/gemma3/blobs/uploads/", headers=bearer(token))) == \
        too_low
    # The user may, the token may not: as Basic, as Bearer, and through the token endpoint.
    narrow = ("the token 'ci' (scope: pull) may not push team/gemma3; wanda has write there: "
              "use a token with the push (or push:team) scope")
    token = _token(reg, "repository:team/gemma3:pull,push",
                   headers=basic("token", pull_only))
    for h in (basic("wanda", pull_only), bearer(pull_only), bearer(token)):
        r = reg.post("/v2/team/gemma3/blobs/uploads/", headers=h)
        assert r.status_code == 403 and _message(r) == narrow
        assert r.json()["errors"][0]["detail"]["lacking"] == "token"
    # A token limited to another namespace.
    r = reg.post("/v2/wanda/own/blobs/uploads/", headers=bearer(team_only))
    assert _message(r) == ("the token 'team-only' (scopes: pull, push:team) may not push "
                           "wanda/own; wanda has admin there: use a token with the push (or "
                           "push:wanda) scope")
    # Anonymous: 401 with the challenge, on /v2/ and at the token endpoint.
    r = reg.post("/v2/team/gemma3/blobs/uploads/")
    assert r.status_code == 401 and _message(r) == (
        "anonymous callers may not push team/gemma3: pushing team/gemma3 needs the write "
        "role in namespace team; sign in as a user who has it")
    r = reg.get("/auth/token", params={"scope": "repository:team/gemma3:pull,push"})
    assert r.status_code == 401 and _message(r) == (
        "authentication required: anonymous callers may not pull or push team/gemma3: "
        "pushing team/gemma3 needs the write role in namespace team; sign in as a user who "
        "has it")
    # REST: problem JSON with the same text.
    r = reg.post("/api/v1/repositories/team/gemma3/tags/v1/verify", auth=as_("rita"))
    assert r.status_code == 403 and r.json()["code"] == "DENIED"
    assert _message(r).startswith("rita has no write role in namespace team")
    r = reg.put("/api/v1/namespaces/other/members/rita", json={"role": "read"},
                auth=as_("wanda"))
    assert _message(r) == ("wanda has no admin role in namespace other (administering "
                           "namespace other needs admin); a namespace admin can grant it: "
                           "assay namespace grant other wanda admin")
    assert _message(reg.get("/api/v1/users", auth=as_("wanda"))) == (
        "wanda is not a site admin (GET /api/v1/users needs one); a site admin can make "
        "them one: assay user admin wanda")
