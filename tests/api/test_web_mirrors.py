"""The mirrors page (``registry/web/admin_mirrors.py``): a site admin lists, adds, changes
and deletes mirror namespaces through ``MirrorService``, as over REST (checked through
the service and ``GET /api/v1/mirrors``), with the same audit entries; the upstream's
password never reaches a page; bad input changes nothing and says why."""

from __future__ import annotations

import pytest

from registry.web.admin_mirrors import every
from tests.api.test_web_admin import (
    PASSWORDS,
    alert,
    as_user,
    last_audit,
    notice,
    post,
    same_entry,
)
from tests.support.auth_app import auth_client

MIRRORS = "/-/admin/mirrors"
ROOT = ("root", "root-password")
SECRET = "upstream-s3cret-value"


@pytest.fixture
def auth(settings):
    """Auth on: root (site admin), rita (reads team)."""
    with auth_client(settings, users=PASSWORDS, roles={"team": {"rita": "read"}}) as c:
        c.app.state.registry.identities.set_admin("root", True)
        yield c


def _form(**changes) -> dict:
    return {"namespace": "hub", "kind": "oci", "url": "https://registry.example.com/ai",
            "username": "bot", "password": SECRET, "refresh_seconds": "900",
            "verify_first": "on", "keep_days": "30", **changes}


def test_a_site_admin_adds_a_mirror_as_over_rest_and_never_sees_its_password(auth):
    as_user(auth, "root")
    assert 'href="/-/admin/mirrors"' in auth.get("/-/admin").text
    page = auth.get(MIRRORS)
    assert page.status_code == 200 and "No mirror namespaces yet" in page.text
    r = post(auth, MIRRORS, _form())
    assert r.status_code == 200 and notice(r) == \
        "hub now mirrors https://registry.example.com/ai (oci)."
    mirrors = auth.app.state.registry.mirrors
    m = mirrors.get("hub")
    assert (m.kind, m.url, m.username, m.has_password, m.refresh_seconds, m.verify_first,
            m.keep_days) == ("oci", "https://registry.example.com/ai", "bot", True, 900,
                             True, 30)
    assert mirrors.credentials("hub") == ("bot", SECRET)
    listed = auth.get("/api/v1/mirrors", auth=ROOT).json()["mirrors"]
    assert [(x["namespace"], x["password_set"]) for x in listed] == [("hub", True)]
    for text in (r.text, auth.get(MIRRORS).text, auth.get(MIRRORS + "?edit=hub").text,
                 auth.get("/-/admin/audit").text):
        assert SECRET not in text
    assert "15m" in r.text and "https://registry.example.com/ai" in r.text
    web = last_audit(auth, "mirror.set")
    assert web["target"] == "hub" and web["detail"]["password_set"] is True
    rest = auth.put("/api/v1/mirrors/hub2", auth=ROOT, json={
        "kind": "oci", "url": "https://registry.example.com/ai", "username": "bot",
        "password": SECRET, "refresh_seconds": 900, "verify_first": True, "keep_days": 30})
    assert rest.status_code == 200
    same_entry(web, last_audit(auth, "mirror.set"))


def test_an_empty_password_keeps_the_stored_one_and_the_form_can_remove_it(auth):
    as_user(auth, "root")
    post(auth, MIRRORS, _form())
    edit = auth.get(MIRRORS + "?edit=hub").text
    assert 'value="https://registry.example.com/ai"' in edit and 'value="bot"' in edit
    r = post(auth, MIRRORS, _form(password="", refresh_seconds="0", verify_first="",
                                  keep_days=""))
    assert r.status_code == 200
    mirrors = auth.app.state.registry.mirrors
    m = mirrors.get("hub")
    assert (m.refresh_seconds, m.verify_first, m.keep_days) == (0, False, None)
    assert mirrors.credentials("hub") == ("bot", SECRET) and "every pull" in r.text
    post(auth, MIRRORS, _form(password="", remove_password="on"))
    assert mirrors.get("hub").has_password is False
    # ollama: the URL may be left out (Ollama's own registry).
    post(auth, MIRRORS, {"namespace": "ollama", "kind": "ollama", "url": "",
                         "refresh_seconds": "3600"})
    assert mirrors.get("ollama").url == "https://registry.ollama.ai"


@pytest.mark.parametrize("changes, says", [
    ({"kind": "svn"}, "kind must be one of ollama, oci, hf"),
    ({"url": "ftp://example.com/x"}, "must be http:// or https://"),
    ({"namespace": "team/sub"}, "a mirror is a whole namespace"),
    ({"refresh_seconds": "soon"}, '"refresh_seconds" must be a whole number'),
    ({"keep_days": "0"}, "keep_days must be between 1 and 36500"),
    ({"username": "", "kind": "oci"}, "a password needs a username"),
])
def test_bad_input_is_the_form_again_with_the_error_and_nothing_stored(auth, changes, says):
    as_user(auth, "root")
    r = post(auth, MIRRORS, _form(**changes))
    assert r.status_code == 400 and says in alert(r)
    assert SECRET not in r.text  # the refused password is not sent back
    sent = _form(**changes)["namespace"]
    assert f'name="namespace" required maxlength="255" value="{sent}"' in r.text
    assert auth.app.state.registry.mirrors.list() == []
    assert auth.app.state.registry.audit.entries(action="mirror.set") == []


def test_delete_stops_mirroring_as_over_rest(auth):
    as_user(auth, "root")
    post(auth, MIRRORS, _form())
    r = post(auth, MIRRORS + "/hub/delete", {}, MIRRORS)
    assert r.status_code == 200 and "hub is no longer a mirror" in notice(r)
    assert auth.get("/api/v1/mirrors", auth=ROOT).json() == {"mirrors": []}
    web = last_audit(auth, "mirror.delete")
    assert web["target"] == "hub"
    auth.put("/api/v1/mirrors/hub2", auth=ROOT, json={"kind": "ollama"})
    assert auth.delete("/api/v1/mirrors/hub2", auth=ROOT).status_code == 200
    same_entry(web, last_audit(auth, "mirror.delete"))
    assert post(auth, MIRRORS + "/hub/delete", {}, MIRRORS).status_code == 404
    assert auth.get(MIRRORS + "?edit=nothing").status_code == 404


def test_readers_get_403_anonymous_visitors_sign_in_and_forms_need_the_token(auth):
    r = auth.get(MIRRORS, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/-/sign-in?next=")
    as_user(auth, "rita")
    r = auth.get(MIRRORS)
    assert r.status_code == 403 and "Not allowed" in r.text
    assert 'href="/-/admin/mirrors"' not in auth.get("/-/admin").text
    r = post(auth, MIRRORS, _form(), "/-/admin/tokens")
    assert r.status_code == 403
    auth.cookies.clear()
    as_user(auth, "root")
    r = auth.post(MIRRORS, data=_form())
    assert r.status_code == 403 and "security token" in r.text
    auth.app.state.registry.mirrors.set("hub", kind="ollama")
    assert auth.post(MIRRORS + "/hub/delete", data={}).status_code == 403
    assert [m.namespace for m in auth.app.state.registry.mirrors.list()] == ["hub"]


def test_refresh_times_read_as_people_say_them():
    assert [every(s) for s in (0, 45, 900, 3600, 5400, 86400 + 3 * 3600 + 7)] == \
        ["every pull", "45s", "15m", "1h", "1h30m", "1d3h"]
