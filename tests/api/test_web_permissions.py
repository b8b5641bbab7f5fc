"""The web interface's permission matrix: every page route, every kind of browsing
caller, signed in with a session cookie, on both stacks with auth on.

A page checks what the REST route reading or changing the same thing checks
(``registry.web.session.page`` calls ``registry.api.guard.check``), so the expectations
are the REST matrix's (``tests/api/test_permissions.py``) for those callers who can sign
in with a password: robots and narrowed tokens cannot sign in to the web interface.

Outcomes: ``ok`` = the page answered (not 401/403, not sent to sign in, not a 5xx);
``in`` = an anonymous visitor is sent to sign in (303 to ``/-/sign-in?next=...``);
``401``/``403`` = refused with that status and an HTML page saying why. POST rows send
the caller's CSRF token, so the refusal tested is the permission, not the form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from registry.app import create_app
from tests.api.test_permissions import app_routes, matched_route
from tests.support.auth_app import auth_client
from tests.support.oci import push_image

pytestmark = pytest.mark.slow

CALLERS = ("anonymous", "reader", "writer", "ns_admin", "site_admin", "outsider")
USER_OF = {"reader": "rita", "writer": "wanda", "ns_admin": "nadia", "site_admin": "root",
           "outsider": "otto"}
PASSWORD = "password-of-{}"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Row:
    method: str
    route: str       # the route's template, as app.routes has it
    path: str        # a concrete path it serves
    expect: str      # one outcome per caller, in CALLERS order
    form: dict | None = None
    # Makes a throwaway object for the row, once per caller (a user, a webhook ...):
    # (client, caller) -> values of the {placeholders} in path and form besides {who}
    # (the caller). Rows that change what other rows rely on work on such objects.
    setup: Callable[..., dict[str, str]] | None = None

    def outcomes(self) -> dict[str, str]:
        words = self.expect.split()
        assert len(words) == len(CALLERS), self
        return dict(zip(CALLERS, words, strict=True))


EVERYONE = "ok ok ok ok ok ok"
# A page about team/... : pull in team (outsiders are signed in, so 403, not sent to sign in).
PULL_TEAM = "in ok ok ok ok 403"
NO_DIGEST = "sha256:" + "0" * 64


# ---- throwaway objects for the administration rows (Row.setup) ----------------------------

def _robot(client, who: str, prefix: str) -> dict:
    client.app.state.registry.identities.add_user(f"{prefix}-{who}", None, robot=True)
    return {}


def _person(client, who: str) -> dict:
    client.app.state.registry.identities.add_user(f"pw-{who}", "first-password")
    return {}


def _robot_token(client, who: str) -> dict:
    access = client.app.state.registry.identities
    access.add_user(f"tok-{who}", None, robot=True)
    record, _ = access.create_token(f"tok-{who}", "throwaway")
    return {"token": record["id"]}


def _own_token(client, who: str) -> dict:
    if who == "anonymous":
        return {"token": 1}
    record, _ = client.app.state.registry.identities.create_token(USER_OF[who], f"web-{who}")
    return {"token": record["id"]}


def _member(client, who: str) -> dict:
    access = client.app.state.registry.identities
    access.add_user(f"member-{who}", None, robot=True)
    access.grant("team", f"member-{who}", "read")
    return {}


def _webhook(client, who: str) -> dict:
    hook = client.app.state.registry.events.create(
        f"http://hooks.example.com/{who}", "matrix-secret", None, f"matrix/{who}")
    return {"hook": hook["id"]}


def _delivery(client, who: str) -> dict:
    svc = client.app.state.registry
    made = _webhook(client, who)
    with svc.db.write() as conn:
        svc.events.emit(conn, "push", f"matrix/{who}", {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": NO_ADMIN_DIGEST, "size": 1, "tag": "v1"})
    return {**made, "delivery": svc.events.delivery_log(made["hook"], 1)[0]["id"]}


def _mirror(client, who: str) -> dict:
    client.app.state.registry.mirrors.set(f"mirror-{who}", kind="ollama")
    return {}


NO_ADMIN_DIGEST = "sha256:" + "1" * 64
SIGNED_IN = "in ok ok ok ok ok"
SIGNED_IN_POST = "401 ok ok ok ok ok"
SITE_GET, SITE_POST = "in 403 403 403 ok 403", "401 403 403 403 ok 403"
TEAM_ADMIN_GET, TEAM_ADMIN_POST = "in 403 403 ok ok 403", "401 403 403 ok ok 403"
# otto's namespace: the outsider (its admin) and the site admin; not team's admin.
OTTO_ADMIN_GET, OTTO_ADMIN_POST = "in 403 403 403 ok ok", "401 403 403 403 ok ok"
AU, AN, AW = "/-/admin/users", "/-/admin/namespaces", "/-/admin/webhooks"

ROWS = [
    Row("GET", "/", "/", EVERYONE),
    Row("GET", "/-/sign-in", "/-/sign-in", EVERYONE),
    Row("POST", "/-/sign-in", "/-/sign-in", EVERYONE,
        {"name": "rita", "password": PASSWORD.format("rita")}),
    Row("POST", "/-/sign-out", "/-/sign-out", EVERYONE, {}),
    Row("GET", "/-/static/{hash}/{file}", "/-/static/0/app.css", "404 404 404 404 404 404"),
    # Models and comparison (registry/web/models.py, compare.py): open to everyone, the
    # content filtered by what each may pull (tests/api/test_web_models.py, _compare.py).
    Row("GET", "/-/models", "/-/models", EVERYONE),
    Row("GET", "/-/compare", "/-/compare", EVERYONE),
    # A repository's pages (registry/web/model.py). NO_DIGEST is in no repository: who
    # may pass gets the 404 of the handler that ran.
    Row("GET", "/{name:path}", "/team/model", PULL_TEAM),
    Row("GET", "/{name:path}/-/tags/{reference}", "/team/model/-/tags/v1", PULL_TEAM),
    Row("GET", "/{name:path}/-/manifests/{reference}", "/team/model/-/manifests/" + NO_DIGEST,
        "in 404 404 404 404 403"),
    Row("GET", "/{name:path}/-/manifests/{reference}/status",
        "/team/model/-/manifests/" + NO_DIGEST + "/status", "in 404 404 404 404 403"),
    Row("POST", "/{name:path}/-/manifests/{reference}/verify",
        "/team/model/-/manifests/" + NO_DIGEST + "/verify", "401 403 404 404 404 403", {}),
    Row("POST", "/{name:path}/-/manifests/{reference}/override",
        "/team/model/-/manifests/" + NO_DIGEST + "/override", "401 403 403 404 404 403",
        {"reason": "needed now"}),
    # Administration (registry/web/admin*.py).
    Row("GET", "/-/admin", "/-/admin", SIGNED_IN),
    Row("GET", AU, AU, SITE_GET),
    Row("POST", AU, AU, SITE_POST, {"name": "new-{who}", "kind": "robot"}),
    Row("GET", AU + "/{user}", AU + "/rita", SITE_GET),
    Row("POST", AU + "/{user}/admin", AU + "/adm-{who}/admin", SITE_POST, {"admin": "on"},
        lambda c, who: _robot(c, who, "adm")),
    Row("POST", AU + "/{user}/password", AU + "/pw-{who}/password", SITE_POST,
        {"password": "second-password", "confirm_password": "second-password"}, _person),
    Row("POST", AU + "/{user}/remove", AU + "/victim-{who}/remove", SITE_POST,
        {"confirm": "on"}, lambda c, who: _robot(c, who, "victim")),
    Row("POST", AU + "/{user}/tokens", AU + "/ci-{who}/tokens", SITE_POST,
        {"name": "by-{who}"}, lambda c, who: _robot(c, who, "ci")),
    Row("POST", AU + "/{user}/tokens/{id:int}/revoke", AU + "/tok-{who}/tokens/{token}/revoke",
        SITE_POST, {}, _robot_token),
    Row("GET", "/-/admin/tokens", "/-/admin/tokens", SIGNED_IN),
    Row("POST", "/-/admin/tokens", "/-/admin/tokens", SIGNED_IN_POST, {"name": "new-{who}"}),
    Row("POST", "/-/admin/tokens/{id:int}/revoke", "/-/admin/tokens/{token}/revoke",
        SIGNED_IN_POST, {}, _own_token),
    Row("GET", AN, AN, SIGNED_IN),
    Row("GET", AN + "/{namespace}", AN + "/team", TEAM_ADMIN_GET),
    Row("GET", AN + "/{namespace}", AN + "/otto", OTTO_ADMIN_GET),
    Row("POST", AN + "/{namespace}/members", AN + "/team/members", TEAM_ADMIN_POST,
        {"user": "rita", "role": "read"}),
    Row("POST", AN + "/{namespace}/members", AN + "/otto/members", OTTO_ADMIN_POST,
        {"user": "otto", "role": "admin"}),
    Row("POST", AN + "/{namespace}/members/{user}/remove",
        AN + "/team/members/member-{who}/remove", TEAM_ADMIN_POST, {}, _member),
    Row("POST", AN + "/{namespace}/anonymous", AN + "/team/anonymous", TEAM_ADMIN_POST, {}),
    # The quota is the site admin's even in a namespace one administers (as over REST).
    Row("POST", AN + "/{namespace}/quota", AN + "/team/quota", SITE_POST, {"quota": ""}),
    Row("POST", AN + "/{namespace}/retention", AN + "/team/retention", TEAM_ADMIN_POST,
        {"keep_tags": "", "keep_ready": "", "untagged_days": "", "protected_tags": "latest"}),
    # The gate and profile rows change otto's (team's gate decides what the pages serve).
    Row("POST", AN + "/{namespace}/policy", AN + "/otto/policy", OTTO_ADMIN_POST,
        {"gate": "on", "min_generation_tps": "1"}),
    Row("POST", AN + "/{namespace}/policy/reset", AN + "/otto/policy/reset", OTTO_ADMIN_POST,
        {}),
    Row("POST", AN + "/{namespace}/profile", AN + "/otto/profile", OTTO_ADMIN_POST,
        {"document": "name: matrix-{who}"}),
    Row("POST", AN + "/{namespace}/profile/reset", AN + "/otto/profile/reset",
        OTTO_ADMIN_POST, {}),
    Row("GET", AW, AW, SITE_GET),
    Row("POST", AW, AW, SITE_POST, {"url": "http://hooks.example.com/{who}", "secret": "s"}),
    Row("GET", AW + "/{id:int}", AW + "/{hook}", SITE_GET, setup=_webhook),
    Row("POST", AW + "/{id:int}/delete", AW + "/{hook}/delete", SITE_POST, {}, _webhook),
    Row("GET", AW + "/{id:int}/deliveries/{delivery_id:int}",
        AW + "/{hook}/deliveries/{delivery}", SITE_GET, setup=_delivery),
    Row("POST", AW + "/{id:int}/deliveries/{delivery_id:int}/redeliver",
        AW + "/{hook}/deliveries/{delivery}/redeliver", SITE_POST, {}, _delivery),
    Row("GET", "/-/admin/mirrors", "/-/admin/mirrors", SITE_GET),
    Row("POST", "/-/admin/mirrors", "/-/admin/mirrors", SITE_POST,
        {"namespace": "mirror-by-{who}", "kind": "ollama", "refresh_seconds": "3600"}),
    Row("POST", "/-/admin/mirrors/{namespace}/delete", "/-/admin/mirrors/mirror-{who}/delete",
        SITE_POST, {}, _mirror),
    Row("GET", "/-/admin/workers", "/-/admin/workers", SITE_GET),
    Row("GET", "/-/admin/audit", "/-/admin/audit", SITE_GET),
]


def test_every_page_route_has_a_row():
    app = create_app(run_migrations=False)
    pages = {(m, p) for m, p, h in app_routes(app) if getattr(h, "web", False)}
    pages -= {("HEAD", p) for m, p in pages}
    covered = {(r.method, r.route) for r in ROWS}
    assert not pages - covered, f"page routes without a row: {sorted(pages - covered)}"
    assert not covered - pages, f"rows for routes the app no longer has: {covered - pages}"
    wrong = [r for r in ROWS
             if matched_route(app, r.method, re.sub(r"\{\w+\}", "1", r.path)) != r.route]
    assert not wrong, f"rows whose path another route serves: {wrong}"


def _sign_in(client, user: str) -> None:
    token = CSRF.search(client.get("/-/sign-in").text).group(1)
    r = client.post("/-/sign-in", data={"csrf": token, "name": user,
                                        "password": PASSWORD.format(user)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def _fill(text, values: dict):
    """``text`` with its ``{placeholders}`` replaced (lists: each item)."""
    if isinstance(text, list):
        return [_fill(t, values) for t in text]
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _outcome(r) -> str:
    if r.status_code == 303 and r.headers["location"].startswith("/-/sign-in?next="):
        return "in"
    if r.status_code in (401, 403):
        assert r.headers["content-type"].startswith("text/html"), r.text[:200]
    if r.status_code in (401, 403, 404):
        return str(r.status_code)
    assert r.status_code < 500, r.text[:500]
    return "ok"


def test_each_caller_sees_and_does_what_rest_allows(settings):
    users = {name: PASSWORD.format(name) for name in USER_OF.values()}
    roles = {"team": {"rita": "read", "wanda": "write", "nadia": "admin"},
             "otto": {"otto": "admin"}}
    with auth_client(settings, users=users, roles=roles) as client:
        access = client.app.state.registry.identities
        access.set_admin("root", True)
        client.auth = ("root", users["root"])
        push_image(client, "team/model", "v1")
        client.auth = None
        failures = []
        for caller in CALLERS:
            client.cookies.clear()
            if caller != "anonymous":
                _sign_in(client, USER_OF[caller])
            for row in ROWS:
                values = {"who": caller, **(row.setup(client, caller) if row.setup else {})}
                data = None
                if row.form is not None:
                    token = CSRF.search(client.get("/-/sign-in").text).group(1)
                    data = {k: _fill(v, values) for k, v in row.form.items()}
                    data["csrf"] = token
                r = client.request(row.method, _fill(row.path, values), data=data,
                                   follow_redirects=False)
                got, want = _outcome(r), row.outcomes()[caller]
                if got != want:
                    failures.append(f"{caller} {row.method} {row.path}: {got}, want {want}")
                if row.path in ("/-/sign-in", "/-/sign-out"):  # back to being the caller
                    client.cookies.clear()
                    if caller != "anonymous":
                        _sign_in(client, USER_OF[caller])
        assert not failures, "\n".join(failures)
