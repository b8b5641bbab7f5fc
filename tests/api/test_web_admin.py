"""The administration pages (``registry/web/admin*.py``): each page shows what REST
reads, each form does what the REST call does (checked through the services or REST
afterwards) and writes the same audit entry; bad input changes nothing and says why."""

from __future__ import annotations

import html
import re

import pytest

from tests.api.test_web import CSRF, csrf_of, sign_in
from tests.support.auth_app import auth_client
from tests.support.oci import push_image

PASSWORDS = {"root": "root-password", "rita": "rita-password", "nadia": "nadia-password"}
NOTICE = re.compile(r'class="notice" role="status">([^<]*)<')
ALERT = re.compile(r'role="alert" id="form-error">([^<]*)<')


@pytest.fixture
def auth(settings):
    """Auth on: root (site admin), rita (reads team), nadia (administers team)."""
    with auth_client(settings, users=PASSWORDS,
                     roles={"team": {"rita": "read", "nadia": "admin"}}) as c:
        c.app.state.registry.identities.set_admin("root", True)
        yield c


def as_user(client, name: str):
    r = sign_in(client, name, PASSWORDS[name])
    assert r.status_code == 303, r.text
    return client


def post(client, path: str, data: dict, page: str | None = None):
    """A form POST with this browser's CSRF token, following the redirect back."""
    token = csrf_of(client, page or path)
    return client.post(path, data={**data, "csrf": token})


def notice(r) -> str:
    found = NOTICE.search(r.text)
    assert found, r.text[:2000]
    return html.unescape(found.group(1))


def alert(r) -> str:
    found = ALERT.search(r.text)
    assert found, r.text[:2000]
    return html.unescape(found.group(1))


def last_audit(client, action: str) -> dict:
    entries = client.app.state.registry.audit.entries(limit=1, action=action)
    assert entries, f"no {action} entry"
    return entries[0]


def same_entry(web: dict, rest: dict, *ignore: str) -> None:
    """The page wrote what REST writes: action, actor and detail (minus ``ignore``)."""
    assert web["action"] == rest["action"] and web["actor"] == rest["actor"]
    strip = lambda d: {k: v for k, v in d.items() if k not in ignore}  # noqa: E731
    assert strip(web["detail"]) == strip(rest["detail"]), (web, rest)


# ---- the index and who gets in -----------------------------------------------------------

def test_the_index_links_what_each_caller_may_manage(auth, client):
    root = as_user(auth, "root").get("/-/admin").text
    for link in ("/-/admin/users", "/-/admin/tokens", "/-/admin/webhooks", "/-/admin/workers",
                 "/-/admin/audit", "/-/admin/namespaces/team"):
        assert f'href="{link}"' in root, link
    auth.cookies.clear()
    nadia = as_user(auth, "nadia").get("/-/admin").text
    assert 'href="/-/admin/namespaces/team"' in nadia and 'href="/-/admin/tokens"' in nadia
    assert 'href="/-/admin/users"' not in nadia and 'href="/-/admin/audit"' not in nadia
    auth.cookies.clear()
    rita = as_user(auth, "rita").get("/-/admin").text
    assert 'href="/-/admin/namespaces/rita"' in rita
    assert 'href="/-/admin/namespaces/team"' not in rita
    # Auth off: everything is open, as over REST.
    open_ = client.get("/-/admin").text
    assert 'href="/-/admin/users"' in open_ and "Access control is off" in open_


def test_a_reader_gets_403_pages_and_anonymous_visitors_are_sent_to_sign_in(auth):
    for path in ("/-/admin", "/-/admin/users", "/-/admin/namespaces/team"):
        r = auth.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/-/sign-in?next=")
    token = csrf_of(auth, "/-/sign-in")
    r = auth.post("/-/admin/users", data={"csrf": token, "name": "x", "kind": "robot"})
    assert r.status_code == 401 and "x" not in [
        u["name"] for u in auth.app.state.registry.identities.list_users()]
    as_user(auth, "rita")
    for path in ("/-/admin/users", "/-/admin/webhooks", "/-/admin/workers", "/-/admin/audit",
                 "/-/admin/namespaces/team"):
        r = auth.get(path)
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
        assert "Not allowed" in r.text, path
    r = post(auth, "/-/admin/users", {"name": "sneaky", "kind": "robot"}, "/-/admin/tokens")
    assert r.status_code == 403
    with pytest.raises(Exception, match="no user"):
        auth.app.state.registry.identities.get_user("sneaky")


def test_forms_without_the_csrf_token_are_refused(auth):
    as_user(auth, "root")
    r = auth.post("/-/admin/users", data={"name": "bob", "kind": "robot"})
    assert r.status_code == 403 and "security token" in r.text
    r = auth.post("/-/admin/tokens", data={"name": "t"})
    assert r.status_code == 403 and "security token" in r.text
    access = auth.app.state.registry.identities
    assert "bob" not in [u["name"] for u in access.list_users()]
    assert access.list_tokens("root") == []


# ---- users and robots ----------------------------------------------------------------------

def test_users_are_listed_and_added_as_over_rest(auth):
    as_user(auth, "root")
    page = auth.get("/-/admin/users").text
    assert all(f'href="/-/admin/users/{n}"' in page for n in PASSWORDS)
    r = post(auth, "/-/admin/users", {"name": "bob", "password": "bob-password",
                                      "kind": "user", "admin": "on"})
    assert r.status_code == 200 and notice(r) == "Added site admin bob."
    access = auth.app.state.registry.identities
    assert access.get_user("bob")["admin"] is True
    web = last_audit(auth, "user.add")
    rest = auth.post("/api/v1/users", json={"name": "carol", "password": "carol-password",
                                            "admin": True}, auth=("root", "root-password"))
    assert rest.status_code == 201
    same_entry(web, last_audit(auth, "user.add"))
    assert web["actor"] == "root" and web["target"] == "bob"
    r = post(auth, "/-/admin/users", {"name": "ci", "kind": "robot"})
    assert "Added robot ci." in r.text and access.get_user("ci")["robot"] is True
    # Bad input: the page again with the message, the values kept, nothing added.
    before = access.list_users()
    r = post(auth, "/-/admin/users", {"name": "Bad Name", "password": "long-enough-1",
                                      "kind": "user"})
    assert r.status_code == 400 and "invalid user name" in alert(r)
    assert 'value="Bad Name"' in r.text
    r = post(auth, "/-/admin/users", {"name": "bob", "password": "another-one", "kind": "user"})
    assert r.status_code == 409 and "exists already" in alert(r)
    r = post(auth, "/-/admin/users", {"name": "dave", "kind": "user"})
    assert r.status_code == 400 and "needs a password" in alert(r)
    assert access.list_users() == before


def test_a_user_is_made_admin_given_a_password_and_removed_after_confirming(auth):
    access = auth.app.state.registry.identities
    access.add_user("bob", "bob-password")
    as_user(auth, "root")
    page = auth.get("/-/admin/users/bob").text
    assert "User bob" in page and "Make site admin" in page
    r = post(auth, "/-/admin/users/bob/admin", {"admin": "on"}, "/-/admin/users/bob")
    assert notice(r) == "bob is now a site admin." and access.get_user("bob")["admin"]
    assert last_audit(auth, "user.admin")["detail"] == {"admin": True}
    r = post(auth, "/-/admin/users/bob/admin", {}, "/-/admin/users/bob")
    assert not access.get_user("bob")["admin"]
    r = post(auth, "/-/admin/users/bob/password",
             {"password": "new-password-1", "confirm_password": "other-password"},
             "/-/admin/users/bob")
    assert r.status_code == 400 and "differ" in alert(r)
    assert access.by_password("bob", "bob-password") is not None
    r = post(auth, "/-/admin/users/bob/password",
             {"password": "new-password-1", "confirm_password": "new-password-1"},
             "/-/admin/users/bob")
    assert notice(r) == "Password of bob changed."
    assert access.by_password("bob", "new-password-1") is not None
    assert last_audit(auth, "user.password")["target"] == "bob"
    r = post(auth, "/-/admin/users/bob/remove", {}, "/-/admin/users/bob")
    assert r.status_code == 400 and "tick the box" in alert(r)
    assert access.get_user("bob")
    r = post(auth, "/-/admin/users/bob/remove", {"confirm": "on"}, "/-/admin/users/bob")
    assert "Removed bob" in notice(r) and 'href="/-/admin/users/bob"' not in r.text
    assert last_audit(auth, "user.remove")["target"] == "bob"
    assert auth.get("/-/admin/users/bob").status_code == 404


def test_a_site_admin_makes_and_revokes_a_robots_tokens(auth):
    access = auth.app.state.registry.identities
    access.add_user("ci", None, robot=True)
    as_user(auth, "root")
    r = post(auth, "/-/admin/users/ci/tokens", {"name": "pipeline", "scopes": ["pull"]},
             "/-/admin/users/ci")
    assert r.status_code == 201 and "shown once" in r.text
    secret = re.search(r'id="new-token" class="mono" readonly value="([^"]+)"', r.text).group(1)
    me = auth.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()
    assert me["name"] == "ci" and me["robot"] is True
    web = last_audit(auth, "token.create")
    rest = auth.post("/api/v1/users/ci/tokens", json={"name": "pipeline", "scopes": ["pull"]},
                     auth=("root", "root-password"))
    assert rest.status_code == 201
    same_entry(web, last_audit(auth, "token.create"))
    page = auth.get("/-/admin/users/ci").text
    assert secret not in page and "pipeline" in page
    token_id = access.list_tokens("ci")[0]["id"]
    r = post(auth, f"/-/admin/users/ci/tokens/{token_id}/revoke", {}, "/-/admin/users/ci")
    assert notice(r) == f"Revoked token {token_id} of ci."
    assert auth.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}
                    ).status_code == 401
    assert last_audit(auth, "token.revoke")["detail"] == {"token_id": token_id}


# ---- one's own tokens ----------------------------------------------------------------------

def test_my_token_is_shown_once_and_works_as_a_bearer_token(auth):
    as_user(auth, "rita")
    assert "No tokens yet" in auth.get("/-/admin/tokens").text
    r = post(auth, "/-/admin/tokens", {"name": "laptop", "scopes": ["pull"],
                                       "namespaces": "team", "expires_in_days": "30"})
    assert r.status_code == 201 and "Copy it now: it is shown once." in r.text
    secret = re.search(r'id="new-token" class="mono" readonly value="([^"]+)"', r.text).group(1)
    me = auth.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["name"] == "rita"
    listed = auth.get("/api/v1/tokens", headers={"Authorization": f"Bearer {secret}"}).json()
    assert listed["tokens"][0]["scopes"] == ["pull:team"]
    assert listed["tokens"][0]["expires_at"] is not None
    page = auth.get("/-/admin/tokens").text
    assert secret not in page and "laptop" in page and "pull:team" in page
    web = last_audit(auth, "token.create")
    assert web["actor"] == "rita" and web["target"] == "rita"
    rest = auth.post("/api/v1/tokens", json={"name": "laptop", "scopes": ["pull:team"]},
                     auth=("rita", "rita-password"))
    assert rest.status_code == 201
    same_entry(web, last_audit(auth, "token.create"), "expires_at")
    token_id = listed["tokens"][0]["id"]
    r = post(auth, f"/-/admin/tokens/{token_id}/revoke", {}, "/-/admin/tokens")
    assert notice(r) == f"Revoked token {token_id}." and "revoked" in r.text
    assert auth.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}
                    ).status_code == 401


def test_bad_token_forms_say_why_and_make_nothing(auth):
    as_user(auth, "rita")
    access = auth.app.state.registry.identities
    r = post(auth, "/-/admin/tokens", {"name": ""})
    assert r.status_code == 400 and "needs a name" in alert(r)
    r = post(auth, "/-/admin/tokens", {"name": "x", "expires_in_days": "soon"})
    assert r.status_code == 400 and "number of days" in alert(r) and 'value="soon"' in r.text
    r = post(auth, "/-/admin/tokens", {"name": "x", "expires_in_days": "9999"})
    assert r.status_code == 400 and "3650" in alert(r)
    r = post(auth, "/-/admin/tokens/12345/revoke", {}, "/-/admin/tokens")
    assert r.status_code == 404 and "no live token" in alert(r)
    assert access.list_tokens("rita") == []


def test_with_auth_off_there_are_no_tokens_to_make(client):
    assert "there is no signed-in user" in client.get("/-/admin/tokens").text
    r = post(client, "/-/admin/tokens", {"name": "x"}, "/-/admin/users")
    assert r.status_code == 409 and "authentication is off" in r.text


# ---- namespaces ----------------------------------------------------------------------------

def test_a_namespace_admin_manages_members_and_access(auth):
    access = auth.app.state.registry.identities
    access.add_user("wanda", "wanda-password")
    as_user(auth, "nadia")
    listing = auth.get("/-/admin/namespaces").text
    assert 'href="/-/admin/namespaces/team"' in listing
    assert 'href="/-/admin/namespaces/other"' not in listing
    assert auth.get("/-/admin/namespaces/other").status_code == 403
    page = auth.get("/-/admin/namespaces/team").text
    assert "rita" in page and "Only members" in page
    base = "/-/admin/namespaces/team"
    r = post(auth, base + "/members", {"user": "wanda", "role": "write"}, base)
    assert notice(r) == "wanda now has the write role."
    web = last_audit(auth, "namespace.grant")
    assert web["actor"] == "nadia" and web["detail"] == {"user": "wanda", "role": "write"}
    rest = auth.put("/api/v1/namespaces/team/members/wanda", json={"role": "write"},
                    auth=("nadia", "nadia-password"))
    assert rest.status_code == 200
    same_entry(web, last_audit(auth, "namespace.grant"))
    post(auth, base + "/members", {"user": "wanda", "role": "admin"}, base)
    assert {"user": "wanda", "role": "admin"} in access.namespace("team")["members"]
    r = post(auth, base + "/members", {"user": "nobody", "role": "read"}, base)
    assert r.status_code == 404 and "no user" in alert(r) and 'value="nobody"' in r.text
    r = post(auth, base + "/members", {"user": "rita", "role": "owner"}, base)
    assert r.status_code == 400 and "invalid role" in alert(r)
    r = post(auth, base + "/members/wanda/remove", {}, base)
    assert notice(r) == "wanda no longer has a role here."
    assert "wanda" not in [m["user"] for m in access.namespace("team")["members"]]
    assert last_audit(auth, "namespace.revoke")["detail"] == {"user": "wanda"}
    r = post(auth, base + "/anonymous", {"anonymous_pull": "on"}, base)
    assert "Anyone may now pull" in notice(r) and access.namespace("team")["anonymous_pull"]
    assert last_audit(auth, "namespace.anonymous_pull")["detail"] == {"allowed": True}
    post(auth, base + "/anonymous", {}, base)
    assert not access.namespace("team")["anonymous_pull"]


def test_retention_and_quota_as_over_rest(auth):
    access = auth.app.state.registry.identities
    base = "/-/admin/namespaces/team"
    as_user(auth, "nadia")
    r = post(auth, base + "/retention", {"keep_tags": "5", "keep_ready": "", "untagged_days":
                                         "30", "protected_tags": "latest, v*"}, base)
    assert notice(r) == "Retention saved."
    ns = access.namespace("team")
    assert (ns["keep_tags"], ns["keep_ready"], ns["untagged_days"]) == (5, None, 30)
    assert ns["protected_tags"] == ["latest", "v*"]
    web = last_audit(auth, "namespace.retention")
    rest = auth.put("/api/v1/namespaces/team", auth=("nadia", "nadia-password"),
                    json={"keep_tags": 5, "keep_ready": None, "untagged_days": 30,
                          "protected_tags": ["latest", "v*"]})
    assert rest.status_code == 200
    same_entry(web, last_audit(auth, "namespace.retention"))
    for bad, message in (({"keep_tags": "-1"}, "whole number"),
                         ({"untagged_days": "0"}, "from 1 to 36500"),
                         ({"protected_tags": "ok bad/glob"}, "not a tag glob")):
        r = post(auth, base + "/retention", {"keep_tags": "5", "untagged_days": "30",
                                             "protected_tags": "latest", **bad}, base)
        assert r.status_code == 400 and message in alert(r), bad
    assert access.namespace("team")["protected_tags"] == ["latest", "v*"]
    # The quota is the site admin's, as over REST.
    assert 'action="/-/admin/namespaces/team/quota"' not in auth.get(base).text
    r = post(auth, base + "/quota", {"quota": "1GiB"}, base)
    assert r.status_code == 403 and access.namespace("team")["quota_bytes"] is None
    auth.cookies.clear()
    as_user(auth, "root")
    r = post(auth, base + "/quota", {"quota": "10GiB"}, base)
    assert notice(r) == "Quota set to 10GiB." and "10.0GiB" in r.text
    assert access.namespace("team")["quota_bytes"] == 10 * 2**30
    assert last_audit(auth, "namespace.quota")["detail"] == {"quota_bytes": 10 * 2**30}
    r = post(auth, base + "/quota", {"quota": "lots"}, base)
    assert r.status_code == 400 and "invalid size" in alert(r)
    post(auth, base + "/quota", {"quota": ""}, base)
    assert access.namespace("team")["quota_bytes"] is None


def test_the_readiness_gate_and_the_verification_profile(auth):
    svc = auth.app.state.registry
    base = "/-/admin/namespaces/team"
    as_user(auth, "nadia")
    assert "The registry's default" in auth.get(base).text
    r = post(auth, base + "/policy", {"gate": "on", "min_generation_tps": "5"}, base)
    assert notice(r) == "Readiness gate saved." and "Set on team" in r.text
    policy = svc.verification.policy("team/model")
    assert (policy.namespace, policy.gate, policy.min_generation_tps) == ("team", True, 5.0)
    web = last_audit(auth, "policy.set")
    rest = auth.put("/api/v1/policies/team", json={"gate": True, "min_generation_tps": 5},
                    auth=("nadia", "nadia-password"))
    assert rest.status_code == 200
    same_entry(web, last_audit(auth, "policy.set"))
    r = post(auth, base + "/policy", {"gate": "on", "min_generation_tps": "fast"}, base)
    assert r.status_code == 400 and "tokens per second" in alert(r)
    post(auth, base + "/policy/reset", {}, base)
    assert svc.verification.policy("team/model").namespace is None
    assert last_audit(auth, "policy.delete")["target"] == "team"
    r = post(auth, base + "/policy/reset", {}, base)
    assert r.status_code == 400 and "already follows the default" in alert(r)

    document = "name: team-quick\nruns: []\nquality: {perplexity: false, prompts: []}\n"
    r = post(auth, base + "/profile", {"document": document}, base)
    assert notice(r) == "Verification profile saved." and "team-quick" in r.text
    applied = svc.profiles.applies("team/model")
    assert applied.namespace == "team" and applied.profile.name == "team-quick"
    web = last_audit(auth, "profile.set")
    rest = auth.put("/api/v1/profiles/team", content=document,
                    headers={"Content-Type": "application/yaml"},
                    auth=("nadia", "nadia-password"))
    assert rest.status_code == 200
    same_entry(web, last_audit(auth, "profile.set"))
    r = post(auth, base + "/profile", {"document": "runs: [{kv_cache: f32}]"}, base)
    assert r.status_code == 400 and "kv_cache" in alert(r)
    assert "f32" in r.text  # the document sent is kept to be fixed
    assert svc.profiles.applies("team/model").profile.name == "team-quick"
    post(auth, base + "/profile/reset", {}, base)
    assert svc.profiles.applies("team/model").namespace is None
    r = post(auth, base + "/profile/reset", {}, base)
    assert r.status_code == 404 and "no profile" in alert(r)


# ---- webhooks, workers, the audit log ------------------------------------------------------

def test_webhooks_their_delivery_log_and_redelivery(client):
    svc = client.app.state.registry
    r = post(client, "/-/admin/webhooks", {"url": "ftp://example.com/", "secret": "s"})
    assert r.status_code == 400 and "http:// or https://" in alert(r)
    r = post(client, "/-/admin/webhooks", {"url": "http://hooks.example.com/x", "secret": ""})
    assert r.status_code == 400 and '"secret" is required' in alert(r)
    assert svc.events.subscriptions() == []
    r = post(client, "/-/admin/webhooks", {"url": "http://hooks.example.com/x",
                                           "secret": "hook-secret", "events": ["push", "tag"],
                                           "repository": "team/*"})
    hook = svc.events.subscriptions()[0]
    assert (hook["url"], hook["events"], hook["repository"]) == \
        ("http://hooks.example.com/x", ["push", "tag"], "team/*")
    assert r.url.path == f"/-/admin/webhooks/{hook['id']}" and "Nothing delivered yet" in r.text
    assert "http://hooks.example.com/x" in client.get("/-/admin/webhooks").text
    push_image(client, "team/app", "v1")
    deliveries = svc.events.delivery_log(hook["id"])
    assert deliveries, "the push made no delivery"
    page = client.get(f"/-/admin/webhooks/{hook['id']}").text
    first = deliveries[0]
    assert f"deliveries/{first['id']}/redeliver" in page and first["action"] in page
    assert "team/app" in page
    one = client.get(f"/-/admin/webhooks/{hook['id']}/deliveries/{first['id']}").text
    assert first["event_id"] in one and "&#34;team/app&#34;" in one.replace("&quot;", "&#34;")
    r = post(client, f"/-/admin/webhooks/{hook['id']}/deliveries/{first['id']}/redeliver", {},
             f"/-/admin/webhooks/{hook['id']}")
    assert notice(r) == f"Delivery {first['id']} queued to be sent again."
    assert svc.events.delivery(hook["id"], first["id"])["status"] == "pending"
    r = post(client, f"/-/admin/webhooks/{hook['id']}/deliveries/999999/redeliver", {},
             "/-/admin/webhooks")
    assert r.status_code == 404
    r = post(client, f"/-/admin/webhooks/{hook['id']}/delete", {}, "/-/admin/webhooks")
    assert "deleted" in notice(r) and svc.events.subscriptions() == []


def test_workers_show_state_host_pid_and_last_sighting(client):
    workers = client.app.state.registry.workers
    assert "No worker has been seen" in client.get("/-/admin/workers").text
    gpu = {"backends": {"llama.cpp": {"version": "0.3.36", "build": "cuda"}},
           "accelerator": {"kind": "cuda", "name": "NVIDIA L4", "memory_bytes": 24 << 30},
           "os": "linux", "arch": "x86_64", "cores": 16}
    client.put("/api/v1/classes/cuda", json={"selector": {"accelerator": "cuda"}})
    workers.announce("worker@gpu-box:4242:abc", "gpu-box", 4242, capabilities=gpu,
                     labels={"site": "lab1"})
    workers.announce("worker@old-box:7:def", "old-box", 7)
    workers.stopped("worker@old-box:7:def")
    text = client.get("/-/admin/workers").text
    assert "worker@gpu-box:4242:abc" in text and "gpu-box" in text and "4242" in text
    # What each worker is, its labels and classes.
    assert "llama.cpp 0.3.36 (cuda)" in text and "cuda: NVIDIA L4 25.8 GB" in text, text
    assert "site=lab1" in text and ">cuda</td>" in text
    assert re.search(r"worker-idle\">idle<", text) and re.search(r"worker-stopped\">stopped<",
                                                                 text)
    assert "1 present, 0 busy" in text


def test_the_audit_log_is_filtered_and_paged_as_over_rest(auth):
    # Names no random token on the page (CSRF, request ids) could contain by chance.
    access = auth.app.state.registry.identities
    for name in ("bot-first", "bot-second", "bot-third"):
        access.add_user(name, None, robot=True)
    as_user(auth, "root")
    text = auth.get("/-/admin/audit", params={"action": "robot.add", "n": 2}).text
    assert "bot-third" in text and "bot-second" in text and "bot-first" not in text
    more = re.search(r'rel="next" href="([^"]+)"', text).group(1).replace("&amp;", "&")
    older = auth.get("/-/admin/audit" + more).text
    assert "bot-first" in older and "bot-third" not in older
    assert "user.add" not in auth.get("/-/admin/audit", params={"action": "robot.add"}).text
    post(auth, "/-/admin/users", {"name": "bot-fourth", "kind": "robot"})
    mine = auth.get("/-/admin/audit", params={"actor": "root"}).text
    assert "bot-fourth" in mine and "bot-first" not in mine
    bad = auth.get("/-/admin/audit", params={"n": "0"})
    assert bad.status_code == 400 and "n must be an integer from 1 to 1000" in bad.text
    assert CSRF.search(auth.get("/-/admin/audit").text)  # the page has its sign-out form
