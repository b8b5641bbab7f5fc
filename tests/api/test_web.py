"""The web interface's foundation over HTTP: sessions, CSRF, assets, error pages, the
home page's listing and what anonymous visitors see (``registry/web``)."""

from __future__ import annotations

import re

import pytest

from registry.web import render, session
from tests.support.auth_app import auth_client
from tests.support.oci import push_image

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(client, path: str = "/-/sign-in") -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return CSRF.search(r.text).group(1)


def sign_in(client, name: str, password: str, next_: str = "/"):
    token = csrf_of(client)
    return client.post("/-/sign-in", data={"csrf": token, "name": name, "password": password,
                                           "next": next_}, follow_redirects=False)


@pytest.fixture
def auth(settings):
    with auth_client(settings, users={"alice": "alice-password", "root": "root-password"},
                     roles={"team": {"alice": "read"}}) as c:
        c.app.state.registry.identities.set_admin("root", True)
        c.auth = ("root", "root-password")
        push_image(c, "team/app", "v1")
        push_image(c, "other/app", "v1")
        c.auth = None
        yield c


def test_pages_carry_security_headers_and_hashed_assets(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert re.fullmatch(r"app;dur=[0-9]+\.[0-9]", r.headers["server-timing"])
    css = re.search(r'href="(/-/static/[0-9a-f]{16}/app\.css)"', r.text).group(1)
    asset = client.get(css)
    assert asset.status_code == 200 and asset.headers["cache-control"] == render.IMMUTABLE
    assert asset.content == render.assets()["app.css"][1]
    assert client.get("/-/static/0000000000000000/app.css").status_code == 404
    assert client.get("/-/static/x/../app.css").status_code == 404


def test_home_lists_searches_and_pages_repositories(client):
    for name in ("team/alpha", "team/beta", "misc/gamma"):
        push_image(client, name, "v1")
    text = client.get("/").text
    assert all(f'href="/{n}"' in text for n in ("team/alpha", "team/beta", "misc/gamma"))
    found = client.get("/", params={"q": "BET"}).text
    assert "team/beta" in found and "team/alpha" not in found
    first = client.get("/", params={"n": 2, "sort": "-name"}).text
    assert first.index("team/beta") < first.index("team/alpha")
    more = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "misc/gamma" in client.get("/" + more).text
    bad = client.get("/", params={"sort": "colour"})
    assert bad.status_code == 400 and "sort must be one of" in bad.text
    assert bad.headers["content-type"].startswith("text/html")


def test_anonymous_visitors_see_only_what_anonymous_pull_allows(auth):
    text = auth.get("/").text
    assert "team/app" not in text and "Sign in</a> to see more" in text
    ns = auth.app.state.registry.identities
    ns.set_anonymous_pull("other", True)
    text = auth.get("/").text
    assert "other/app" in text and "team/app" not in text


def test_sign_in_out_and_what_a_session_sees(auth):
    wrong = sign_in(auth, "alice", "nope")
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    r = sign_in(auth, "alice", "alice-password", "/?q=app")
    assert r.status_code == 303 and r.headers["location"] == "/?q=app"
    cookie = r.cookies.get(session.COOKIE) or auth.cookies.get(session.COOKIE)
    assert cookie and "httponly" in r.headers["set-cookie"].lower()
    home = auth.get("/").text
    assert "Signed in as <strong>alice</strong>" in home
    assert "team/app" in home and "other/app" not in home
    out = auth.post("/-/sign-out", data={"csrf": csrf_of(auth, "/")}, follow_redirects=False)
    assert out.status_code == 303
    auth.cookies.delete(session.COOKIE)
    assert "team/app" not in auth.get("/").text


def test_a_sign_in_only_goes_to_this_registry(auth):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil", "javascript:x"):
        r = sign_in(auth, "alice", "alice-password", target)
        assert r.headers["location"] == "/", target


def test_forms_without_the_csrf_token_or_from_another_site_are_refused(auth):
    r = auth.post("/-/sign-in", data={"name": "alice", "password": "alice-password"})
    assert r.status_code == 403 and "security token" in r.text
    token = csrf_of(auth)
    r = auth.post("/-/sign-in", data={"csrf": token, "name": "alice", "password": "alice-password"},
                  headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.text
    assert session.COOKIE not in auth.cookies


def test_a_forged_or_foreign_session_is_anonymous(auth):
    key = auth.app.state.registry.identities.signing_key()
    auth.cookies.set(session.COOKIE, session.issue("not-the-signing-key-of-this-registry", "root"))
    assert "Signed in as" not in auth.get("/").text
    auth.cookies.set(session.COOKIE, session.issue(key, "root", now=0))  # long expired
    assert "Signed in as" not in auth.get("/").text
    auth.cookies.set(session.COOKIE, session.issue(key, "root"))
    assert "Signed in as <strong>root</strong>" in auth.get("/").text
    # A session is no bearer token on the APIs.
    r = auth.get("/api/v1/me", headers={"Authorization": f"Bearer {auth.cookies[session.COOKIE]}"})
    assert r.status_code == 401
    auth.app.state.registry.identities.remove_user("root")
    assert "Signed in as" not in auth.get("/").text
