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

    def outcomes(self) -> dict[str, str]:
        words = self.expect.split()
        assert len(words) == len(CALLERS), self
        return dict(zip(CALLERS, words, strict=True))


EVERYONE = "ok ok ok ok ok ok"
# A page about team/... : pull in team (outsiders are signed in, so 403, not sent to sign in).
PULL_TEAM = "in ok ok ok ok 403"
NO_DIGEST = "sha256:" + "0" * 64

ROWS = [
    Row("GET", "/", "/", EVERYONE),
    Row("GET", "/-/sign-in", "/-/sign-in", EVERYONE),
    Row("POST", "/-/sign-in", "/-/sign-in", EVERYONE,
        {"name": "rita", "password": PASSWORD.format("rita")}),
    Row("POST", "/-/sign-out", "/-/sign-out", EVERYONE, {}),
    Row("GET", "/-/static/{hash}/{file}", "/-/static/0/app.css", "404 404 404 404 404 404"),
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
]


def test_every_page_route_has_a_row():
    app = create_app(run_migrations=False)
    pages = {(m, p) for m, p, h in app_routes(app) if getattr(h, "web", False)}
    pages -= {("HEAD", p) for m, p in pages}
    covered = {(r.method, r.route) for r in ROWS}
    assert not pages - covered, f"page routes without a row: {sorted(pages - covered)}"
    assert not covered - pages, f"rows for routes the app no longer has: {covered - pages}"
    wrong = [r for r in ROWS if matched_route(app, r.method, r.path) != r.route]
    assert not wrong, f"rows whose path another route serves: {wrong}"


def _sign_in(client, user: str) -> None:
    token = CSRF.search(client.get("/-/sign-in").text).group(1)
    r = client.post("/-/sign-in", data={"csrf": token, "name": user,
                                        "password": PASSWORD.format(user)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


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
                data = None
                if row.form is not None:
                    token = CSRF.search(client.get("/-/sign-in").text).group(1)
                    data = {**row.form, "csrf": token}
                r = client.request(row.method, row.path, data=data, follow_redirects=False)
                got, want = _outcome(r), row.outcomes()[caller]
                if got != want:
                    failures.append(f"{caller} {row.method} {row.path}: {got}, want {want}")
                if row.path in ("/-/sign-in", "/-/sign-out"):  # back to being the caller
                    client.cookies.clear()
                    if caller != "anonymous":
                        _sign_in(client, USER_OF[caller])
        assert not failures, "\n".join(failures)
