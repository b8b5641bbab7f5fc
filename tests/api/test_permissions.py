"""The permission matrix: every route of the app, every kind of caller, on both
stacks, with auth on; and every route open to anonymous callers with auth off.

Callers (``CALLERS``): ``anonymous`` (no credentials), ``reader`` (read in ``team``),
``writer`` (write in ``team``), ``ns_admin`` (admin in ``team``), ``site_admin``,
``robot`` (write in ``team``, its personal access token as a Basic password),
``outsider`` (no role in ``team``; admin of its own namespace ``otto``) and ``scoped``
(the writer's personal access token limited to ``pull``, sent as a Bearer token). A
second namespace ``other`` belongs to ``olga``, who is none of the callers.

The expectations follow from the documented rules (``registry.access.permissions`` and
``registry.api.guard``), not from what the server answers:

    reader = pull; writer = pull + push; namespace admin = + delete and the namespace's
    policy/members; site admin = everything; outsider = its own namespace only; robot =
    writer without a personal namespace; a pull-scoped token = its owner's pulls only;
    anonymous = 401 with a challenge, except public endpoints (the OpenAPI document, the
    token endpoint, webhooks in) and listings (200, filtered; but ``GET /v2/`` is 401 so
    clients log in; ``/api/v1/verifications`` hides what the caller cannot pull, and
    another registry's models from anonymous callers: 404).

Outcomes: ``ok`` = anything but 401/403 (the request got past access control; the
handler may still refuse for its own reasons, e.g. 404 once another caller deleted the
target) and not a 5xx; ``401`` = refused with a challenge (``Bearer realm=...`` on /v2/,
``Basic realm="assay"`` on /api/); ``403`` = DENIED in the OCI error or problem JSON; a
number other than 401/403 = exactly that status.

Every (method, route) of ``app.routes`` must have a row (``test_every_route_has_a_row``):
a route added later without one fails. A GET row stands for HEAD too (Starlette serves
HEAD with the GET handler). The set-up is built once per stack (module scope); password
checks go through the credential cache (argon2 costs ~0.3 s here; the callers' roles do
not change during the module, so the cache changes no answer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from starlette.routing import Match, Mount, Route
from starlette.testclient import TestClient

from registry.app import create_app
from registry.db import migrate
from registry.services.remote import parse_payload
from registry.settings import Settings
from tests.support.model_artifacts import push_safetensors
from tests.support.oci import push_blob, push_image, sha256
from tests.support.ollama_keys import OllamaKey
from tests.support.stacks import STACKS

# Slow: argon2-hashed callers of every kind, every route times every caller.
pytestmark = pytest.mark.slow

BASE = "http://registry.test"
HOOK_SECRET = "permission-matrix-hook-secret"
PASSWORDS = {name: f"{name}-password" for name in
             ("root", "rita", "wanda", "nadia", "otto", "olga")}
CALLERS = ("anonymous", "reader", "writer", "ns_admin", "site_admin", "robot", "outsider",
           "scoped")
# Who each caller is (the scoped caller is the writer, through a pull-only token).
USER_OF = {"anonymous": None, "reader": "rita", "writer": "wanda", "ns_admin": "nadia",
           "site_admin": "root", "robot": "ci", "outsider": "otto", "scoped": "wanda"}


# ---- the matrix -----------------------------------------------------------------------

def outcomes(line: str) -> dict[str, str | int]:
    """``"401 ok 403 ..."``, one word per caller in ``CALLERS`` order."""
    words = line.split()
    assert len(words) == len(CALLERS), line
    return {c: (w if w == "ok" else int(w)) for c, w in zip(CALLERS, words, strict=True)}


#                   anon reader writer ns_adm site robot outsdr scoped
PUBLIC = outcomes("  ok   ok     ok     ok     ok   ok    ok     ok")
LISTING = outcomes(" 200  200    200    200    200  200   200    200")
SIGNED_IN = outcomes("401 ok     ok     ok     ok   ok    ok     ok")
TOKEN = SIGNED_IN
# Making or revoking tokens and keys needs the password (or an admin-scoped token): the
# robot's and the scoped caller's tokens are pull/push only.
ACCOUNT = outcomes("  401 ok     ok     ok     ok   403   ok     403")
PULL_TEAM = outcomes("401 ok     ok     ok     ok   ok    403    ok")
PUSH_TEAM = outcomes("401 403    ok     ok     ok   ok    403    403")
DELETE_TEAM = outcomes("401 403  403    ok     ok   403   403    403")
ADMIN_TEAM = DELETE_TEAM  # the namespace admin role carries both delete and admin
SITE = outcomes("    401  403    403    403    ok   403   403    403")
OTHER_NS = SITE  # olga's namespace: only the site admin gets in
OWN_OTTO = outcomes("401  403    403    403    ok   403   ok     403")
OWN_WANDA = outcomes("401 403    ok     403    ok   403   403    403")  # token: pull only
ROBOT_NS = SITE  # a robot has no namespace of its own
# GET /api/v1/verifications is open, but a local model the caller cannot pull is unknown.
LOOKUP_TEAM = outcomes("404 200  200    200    200  200   404    200")
LOOKUP_OTHER = outcomes("404 404 404    404    200  404   404    404")
# Another registry's model (remote_verifications_namespace unset): anyone signed in.
LOOKUP_REMOTE = outcomes("404 200 200   200    200  200   200    200")
REMOTE_REF = "peer.example.com:5000/team/gemma@sha256:" + "ab" * 32

Body = Callable[[dict], dict]  # the placeholders -> request keyword arguments


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # the route's full path template, as in app.routes
    path: str  # the request, with {placeholders} (see ``populate``)
    expect: dict[str, str | int]
    body: Body | None = None
    xfail: str | None = None  # the exact mismatch, while the server has it

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def _json(doc: dict) -> Body:
    def body(ctx: dict) -> dict:
        return {"json": json.loads(json.dumps(doc).replace("{who}", ctx["who"]))}
    return body


def _manifest(ctx: dict) -> dict:
    return {"content": ctx["manifest"], "headers": {"Content-Type": ctx["manifest_type"]}}


def _hook(ctx: dict) -> dict:
    raw = json.dumps({"reference": "team/model:v1"}).encode()
    sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return {"content": raw, "headers": {"Content-Type": "application/json",
                                        "X-Assay-Signature": sig}}


def _new_key(ctx: dict) -> dict:
    return {"json": {"public_key": OllamaKey().public_line() + f" {ctx['who']}@matrix"}}


def _chunk(ctx: dict) -> dict:
    return {"content": b"chunk", "headers": {"Content-Type": "application/octet-stream"}}


def _final(ctx: dict) -> dict:
    return {"content": b"final", "headers": {"Content-Type": "application/octet-stream"}}


def _ndjson(*lines: dict) -> Body:
    def body(ctx: dict) -> dict:
        return {"content": b"".join(json.dumps(line).encode() + b"\n" for line in lines),
                "headers": {"Content-Type": "application/x-ndjson"}}
    return body


LFS_OID = hashlib.sha256(b"lfs").hexdigest()


def _lfs_object(ctx: dict) -> dict:
    return {"content": b"lfs", "headers": {"Content-Type": "application/octet-stream"}}


V2 = "/v2/{name:path}"
U = V2 + "/blobs/uploads"
A = "/api/v1"
R = A + "/repositories/{name:path}"
WHOLE = A + "/repositories/{name:repository}"
TM = "/v2/team/model"
TR = A + "/repositories/team/model"
HM = "/api/models/{name:path}"
HT = "/api/models/team/model"
HUB_RESOLVE = "/{name:path}/resolve/{revision}/{path:path}"
LFS = "/{name:path}.git/info/lfs"

ROWS = [
    # ---- OCI distribution ---------------------------------------------------------------
    Row("GET", "/v2/", "/v2/", SIGNED_IN),  # anonymous: 401, so clients log in
    Row("GET", "/v2/_catalog", "/v2/_catalog", LISTING),
    Row("GET", V2 + "/manifests/{reference}", TM + "/manifests/v1", PULL_TEAM),
    Row("GET", V2 + "/manifests/{reference}", TM + "/manifests/{digest}", PULL_TEAM),
    Row("GET", V2 + "/manifests/{reference}", "/v2/other/model/manifests/v1", OTHER_NS),
    Row("PUT", V2 + "/manifests/{reference}", TM + "/manifests/again-{who}", PUSH_TEAM,
        _manifest),
    Row("PUT", V2 + "/manifests/{reference}", "/v2/other/model/manifests/again-{who}",
        OTHER_NS, _manifest),
    Row("DELETE", V2 + "/manifests/{reference}", TM + "/manifests/{doomed_manifest}",
        DELETE_TEAM),
    Row("DELETE", V2 + "/manifests/{reference}", "/v2/otto/mine/manifests/nosuchtag",
        OWN_OTTO),
    Row("POST", U + "/", TM + "/blobs/uploads/", PUSH_TEAM),
    Row("POST", U + "/", "/v2/other/model/blobs/uploads/", OTHER_NS),
    Row("POST", U + "/", "/v2/otto/mine/blobs/uploads/", OWN_OTTO),
    Row("POST", U + "/", "/v2/wanda/own/blobs/uploads/", OWN_WANDA),
    Row("POST", U, TM + "/blobs/uploads", PUSH_TEAM),
    Row("PATCH", U + "/{session}", TM + "/blobs/uploads/{session_patch}", PUSH_TEAM, _chunk),
    Row("PUT", U + "/{session}", TM + "/blobs/uploads/{session_put}?digest={final_digest}",
        PUSH_TEAM, _final),
    Row("GET", U + "/{session}", TM + "/blobs/uploads/{session_get}", PUSH_TEAM),
    Row("DELETE", U + "/{session}", TM + "/blobs/uploads/{session_delete}", PUSH_TEAM),
    Row("GET", V2 + "/blobs/{digest}", TM + "/blobs/{layer}", PULL_TEAM),
    Row("GET", V2 + "/blobs/{digest}", "/v2/other/model/blobs/{layer}", OTHER_NS),
    Row("DELETE", V2 + "/blobs/{digest}", TM + "/blobs/{doomed_blob}", DELETE_TEAM),
    Row("GET", V2 + "/tags/list", TM + "/tags/list", PULL_TEAM),
    Row("GET", V2 + "/tags/list", "/v2/other/model/tags/list", OTHER_NS),
    Row("GET", V2 + "/tags/list", "/v2/otto/mine/tags/list", OWN_OTTO),
    Row("GET", V2 + "/tags/list", "/v2/ci/own/tags/list", ROBOT_NS),
    Row("GET", V2 + "/referrers/{digest}", TM + "/referrers/{digest}", PULL_TEAM),
    # ---- Docker token auth --------------------------------------------------------------
    # Anyone signed in gets a token (cut down to what they may do); an anonymous token is
    # refused unless it would do all that was asked (nobody may pull team anonymously).
    Row("GET", "/auth/token", "/auth/token?service=assay&scope=repository:team/model:pull",
        TOKEN),
    # ---- probes (registry/api/health.py) ------------------------------------------------
    Row("GET", "/healthz", "/healthz", PUBLIC),
    Row("GET", "/readyz", "/readyz", PUBLIC),
    Row("GET", "/metrics", "/metrics", PUBLIC),
    # ---- REST: storage, policies, profiles ----------------------------------------------
    Row("GET", A + "/storage", A + "/storage", SITE),
    Row("GET", A + "/policies", A + "/policies", SIGNED_IN),
    Row("GET", A + "/policies/{namespace:path}", A + "/policies/team", SIGNED_IN),
    Row("PUT", A + "/policies/{namespace:path}", A + "/policies/team", ADMIN_TEAM,
        _json({"gate": False})),
    Row("PUT", A + "/policies/{namespace:path}", A + "/policies/team/sub", ADMIN_TEAM,
        _json({"gate": False})),
    Row("PUT", A + "/policies/{namespace:path}", A + "/policies/other", OTHER_NS,
        _json({"gate": False})),
    Row("PUT", A + "/policies/{namespace:path}", A + "/policies/otto", OWN_OTTO,
        _json({"gate": False})),
    Row("PUT", A + "/policies/{namespace:path}", A + "/policies/_", SITE,
        _json({"gate": False})),
    Row("DELETE", A + "/policies/{namespace:path}", A + "/policies/team", ADMIN_TEAM),
    Row("DELETE", A + "/policies/{namespace:path}", A + "/policies/_", SITE),
    Row("GET", A + "/profiles", A + "/profiles", SIGNED_IN),
    Row("GET", A + "/profiles/{namespace:path}", A + "/profiles/team", SIGNED_IN),
    Row("PUT", A + "/profiles/{namespace:path}", A + "/profiles/team", ADMIN_TEAM,
        _json({"name": "matrix"})),
    Row("PUT", A + "/profiles/{namespace:path}", A + "/profiles/other", OTHER_NS,
        _json({"name": "matrix"})),
    Row("PUT", A + "/profiles/{namespace:path}", A + "/profiles/otto", OWN_OTTO,
        _json({"name": "matrix"})),
    Row("PUT", A + "/profiles/{namespace:path}", A + "/profiles/_", SITE,
        _json({"name": "matrix"})),
    Row("DELETE", A + "/profiles/{namespace:path}", A + "/profiles/team", ADMIN_TEAM),
    Row("DELETE", A + "/profiles/{namespace:path}", A + "/profiles/_", SITE),
    # ---- REST: outgoing webhooks --------------------------------------------------------
    Row("POST", A + "/webhooks", A + "/webhooks", SITE,
        _json({"url": "http://127.0.0.1:9/{who}", "secret": "matrix-secret-0123"})),
    Row("GET", A + "/webhooks", A + "/webhooks", SITE),
    Row("GET", A + "/webhooks/{id:int}", A + "/webhooks/{webhook}", SITE),
    Row("DELETE", A + "/webhooks/{id:int}", A + "/webhooks/{doomed_webhook}", SITE),
    # ---- REST: hardware classes -------------------------------------------------------
    Row("GET", A + "/classes", A + "/classes", SIGNED_IN),
    Row("GET", A + "/classes/{class_name}", A + "/classes/gpu", SIGNED_IN),
    Row("PUT", A + "/classes/{class_name}", A + "/classes/gpu", SITE,
        body=_json({"selector": {"labels": {"by": "{who}"}}})),
    Row("DELETE", A + "/classes/{class_name}", A + "/classes/doomed-class", SITE),
    # ---- REST: mirror namespaces ------------------------------------------------------
    Row("GET", A + "/mirrors", A + "/mirrors", SITE),
    Row("GET", A + "/mirrors/{namespace}", A + "/mirrors/mirrored", SITE),
    Row("PUT", A + "/mirrors/{namespace}", A + "/mirrors/mirrored", SITE,
        body=_json({"kind": "oci", "url": "http://127.0.0.1:9/{who}"})),
    Row("DELETE", A + "/mirrors/{namespace}", A + "/mirrors/doomed-mirror", SITE),
    Row("GET", A + "/webhooks/{id:int}/deliveries", A + "/webhooks/{webhook}/deliveries",
        SITE),
    Row("GET", A + "/webhooks/{id:int}/deliveries/{delivery_id:int}",
        A + "/webhooks/{webhook}/deliveries/{delivery}", SITE),
    Row("POST", A + "/webhooks/{id:int}/deliveries/{delivery_id:int}/redeliver",
        A + "/webhooks/{webhook}/deliveries/{delivery}/redeliver", SITE),
    # ---- REST: validation on request ----------------------------------------------------
    Row("POST", A + "/hooks/validate", A + "/hooks/validate", PUBLIC, _hook),
    Row("GET", A + "/verifications", A + "/verifications?reference=team/model:v1",
        LOOKUP_TEAM),
    Row("GET", A + "/verifications", A + "/verifications?reference=other/model:v1",
        LOOKUP_OTHER),
    Row("GET", A + "/verifications", A + f"/verifications?reference={REMOTE_REF}",
        LOOKUP_REMOTE),
    Row("GET", A + "/workers", A + "/workers", SITE),
    # ---- REST: identities, roles, audit -------------------------------------------------
    Row("GET", A + "/me", A + "/me", SIGNED_IN),
    Row("GET", A + "/users", A + "/users", SITE),
    Row("POST", A + "/users", A + "/users", SITE,
        _json({"name": "new-{who}", "robot": True})),
    Row("GET", A + "/users/{user}", A + "/users/rita", SITE),
    Row("DELETE", A + "/users/{user}", A + "/users/victim-{who}", SITE),
    Row("POST", A + "/users/{user}/tokens", A + "/users/ci/tokens", SITE,
        _json({"name": "by-{who}"})),
    Row("GET", A + "/tokens", A + "/tokens", SIGNED_IN),
    Row("POST", A + "/tokens", A + "/tokens", ACCOUNT, _json({"name": "new-{who}"})),
    Row("DELETE", A + "/tokens/{id:int}", A + "/tokens/{token}", ACCOUNT),
    Row("GET", A + "/keys", A + "/keys", SIGNED_IN),
    Row("POST", A + "/keys", A + "/keys", ACCOUNT, _new_key),
    Row("DELETE", A + "/keys/{id:int}", A + "/keys/{key}", ACCOUNT),
    Row("GET", A + "/namespaces/{namespace}", A + "/namespaces/team", ADMIN_TEAM),
    Row("GET", A + "/namespaces/{namespace}", A + "/namespaces/other", OTHER_NS),
    Row("GET", A + "/namespaces/{namespace}", A + "/namespaces/otto", OWN_OTTO),
    Row("GET", A + "/namespaces/{namespace}", A + "/namespaces/_", SITE),
    Row("PUT", A + "/namespaces/{namespace}", A + "/namespaces/team", ADMIN_TEAM,
        _json({"anonymous_pull": False})),
    Row("PUT", A + "/namespaces/{namespace}", A + "/namespaces/other", OTHER_NS,
        _json({"anonymous_pull": False})),
    Row("PUT", A + "/namespaces/{namespace}", A + "/namespaces/team", ADMIN_TEAM,
        _json({"keep_tags": 10, "untagged_days": 30})),
    # A namespace admin may not lift their own quota (everyone administers their own).
    Row("PUT", A + "/namespaces/{namespace}", A + "/namespaces/team", SITE,
        _json({"quota_bytes": 10**12})),
    Row("PUT", A + "/namespaces/{namespace}", A + "/namespaces/otto", SITE,
        _json({"quota_bytes": None})),
    Row("PUT", A + "/namespaces/{namespace}/members/{user}",
        A + "/namespaces/team/members/victim-{who}", ADMIN_TEAM, _json({"role": "read"})),
    Row("PUT", A + "/namespaces/{namespace}/members/{user}",
        A + "/namespaces/other/members/victim-{who}", OTHER_NS, _json({"role": "read"})),
    Row("DELETE", A + "/namespaces/{namespace}/members/{user}",
        A + "/namespaces/team/members/member-{who}", ADMIN_TEAM),
    Row("GET", A + "/audit", A + "/audit", SITE),
    # ---- REST: manifests, verification requests, overrides ------------------------------
    Row("POST", R + "/tags/{reference}/verify", TR + "/tags/v1/verify", PUSH_TEAM),
    Row("POST", R + "/tags/{reference}/verify", A + "/repositories/other/model/tags/v1/verify",
        OTHER_NS),
    Row("POST", R + "/manifests/{reference}/verify", TR + "/manifests/{digest}/verify",
        PUSH_TEAM),
    Row("GET", R + "/manifests/{reference}/verifications",
        TR + "/manifests/{digest}/verifications", PULL_TEAM),
    Row("POST", R + "/manifests/{reference}/override", TR + "/manifests/{digest}/override",
        ADMIN_TEAM, _json({"reason": "permission matrix"})),
    Row("POST", R + "/manifests/{reference}/adopt", TR + "/manifests/{digest}/adopt",
        ADMIN_TEAM, _json({"referrer": "sha256:" + "0" * 64})),
    Row("POST", R + "/push-check", TR + "/push-check", PUSH_TEAM, _json({"blobs": []})),
    Row("POST", R + "/push-check", A + "/repositories/other/model/push-check", OTHER_NS,
        _json({"blobs": []})),
    Row("GET", R + "/tags/{reference}", TR + "/tags/v1", PULL_TEAM),
    Row("GET", R + "/tags/{reference}", A + "/repositories/other/model/tags/v1", OTHER_NS),
    Row("GET", R + "/manifests/{reference}", TR + "/manifests/{digest}", PULL_TEAM),
    # ---- REST: browsing -----------------------------------------------------------------
    Row("GET", A + "/openapi.json", A + "/openapi.json", PUBLIC),
    Row("GET", A + "/models", A + "/models", LISTING),
    Row("GET", A + "/repositories", A + "/repositories", LISTING),
    Row("GET", R + "/tags", TR + "/tags", PULL_TEAM),
    Row("GET", R + "/tags", A + "/repositories/other/model/tags", OTHER_NS),
    Row("DELETE", WHOLE, A + "/repositories/team/gone-{who}", DELETE_TEAM),
    Row("DELETE", WHOLE, A + "/repositories/other/gone-{who}", OTHER_NS),
    Row("DELETE", WHOLE, A + "/repositories/otto/gone-{who}", OWN_OTTO),
    # ---- the Hugging Face Hub API (registry/api/hf) -------------------------------------
    Row("GET", "/api/whoami-v2", "/api/whoami-v2", SIGNED_IN),
    Row("POST", "/api/validate-yaml", "/api/validate-yaml", SIGNED_IN,
        _json({"content": "---\nlicense: mit\n---\n# A card\n"})),
    Row("GET", HM + "/xet-write-token/{revision}", HT + "/xet-write-token/main", PUSH_TEAM),
    Row("GET", HM + "/xet-read-token/{revision}", HT + "/xet-read-token/main", PULL_TEAM),
    Row("GET", HM, HT, PULL_TEAM),
    Row("GET", HM, "/api/models/other/model", OTHER_NS),
    Row("GET", HM + "/revision/{revision}", HT + "/revision/v1", PULL_TEAM),
    Row("GET", HM + "/revision/{revision}", "/api/models/other/model/revision/v1", OTHER_NS),
    Row("GET", HM + "/tree/{revision}", HT + "/tree/v1", PULL_TEAM),
    Row("GET", HM + "/tree/{revision}/{path:path}", HT + "/tree/v1/sub/dir", PULL_TEAM),
    Row("POST", HM + "/paths-info/{revision}", HT + "/paths-info/v1", PULL_TEAM,
        _json({"paths": ["config.json"]})),
    Row("GET", HM + "/refs", HT + "/refs", PULL_TEAM),
    Row("GET", HM + "/commits/{revision}", HT + "/commits/v1", PULL_TEAM),
    Row("GET", HUB_RESOLVE, "/team/model/resolve/v1/config.json", PULL_TEAM),
    Row("GET", HUB_RESOLVE, "/other/model/resolve/v1/config.json", OTHER_NS),
    Row("POST", "/api/repos/create", "/api/repos/create", PUSH_TEAM,
        _json({"name": "made-{who}", "organization": "team", "type": "model"})),
    Row("POST", "/api/repos/create", "/api/repos/create", OTHER_NS,
        _json({"name": "made-{who}", "organization": "other", "type": "model"})),
    Row("DELETE", "/api/repos/delete", "/api/repos/delete", DELETE_TEAM,
        _json({"name": "gone-{who}", "organization": "team", "type": "model"})),
    Row("POST", HM + "/preupload/{revision}", HT + "/preupload/main", PUSH_TEAM,
        _json({"files": [{"path": "a.txt", "sample": "", "size": 0}]})),
    Row("POST", HM + "/commit/{revision}", HT + "/commit/matrix-{who}", PUSH_TEAM,
        _ndjson({"key": "header", "value": {"summary": "matrix"}})),
    Row("POST", HM + "/commit/{revision}", "/api/models/other/model/commit/matrix-{who}",
        OTHER_NS, _ndjson({"key": "header", "value": {"summary": "matrix"}})),
    Row("POST", HM + "/branch/{branch}", HT + "/branch/b-{who}", PUSH_TEAM,
        _json({"startingPoint": "v1"})),
    Row("DELETE", HM + "/branch/{branch}", HT + "/branch/nosuch-{who}", DELETE_TEAM),
    Row("POST", HM + "/tag/{revision}", HT + "/tag/v1", PUSH_TEAM, _json({"tag": "t-{who}"})),
    Row("DELETE", HM + "/tag/{revision}", HT + "/tag/nosuch-{who}", DELETE_TEAM),
    Row("POST", LFS + "/objects/batch", "/team/model.git/info/lfs/objects/batch", PUSH_TEAM,
        _json({"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
               "objects": [{"oid": LFS_OID, "size": 3}]})),
    Row("POST", LFS + "/objects/batch", "/other/model.git/info/lfs/objects/batch", OTHER_NS,
        _json({"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
               "objects": [{"oid": LFS_OID, "size": 3}]})),
    Row("PUT", LFS + "/objects/{oid}", "/team/model.git/info/lfs/objects/" + LFS_OID,
        PUSH_TEAM, _lfs_object),
    Row("POST", LFS + "/verify", "/team/model.git/info/lfs/verify", PUSH_TEAM,
        _json({"oid": LFS_OID, "size": 3})),
]


def _with_head(rows: list[Row]) -> list[Row]:
    """Every GET row, and the same request as HEAD (same handler, same guard)."""
    out = []
    for row in rows:
        out.append(row)
        if row.method == "GET":
            out.append(Row("HEAD", row.route, row.path, row.expect, None, row.xfail))
    return out


MATRIX = _with_head(ROWS)


def _params(rows: list[Row]) -> list:
    return [pytest.param(row, id=row.id, marks=[pytest.mark.xfail(strict=True,
                                                                  reason=row.xfail)]
                         if row.xfail else []) for row in rows]


# ---- the app's routes -----------------------------------------------------------------

def app_routes(app) -> Iterator[tuple[str, str, Callable]]:
    """``(method, full path template, handler)`` for every route, recursing into Mounts;
    a ``route()``-built route gives its handlers per method (``endpoint.handlers``)."""

    def walk(routes, prefix: str):
        for r in routes:
            if isinstance(r, Mount):
                yield from walk(r.routes, prefix + r.path)
            elif isinstance(r, Route):
                handlers = getattr(r.endpoint, "handlers", None)
                for method in sorted(r.methods):
                    yield method, prefix + r.path, (handlers or {}).get(method, r.endpoint)
            else:
                raise AssertionError(f"a route of an unknown kind: {r!r}")

    yield from walk(app.routes, "")


def matched_route(app, method: str, path: str) -> str | None:
    """The full template of the route the app serves ``method path`` with (first full
    match, as Starlette's router picks it)."""
    scope = {"type": "http", "method": method, "path": urlsplit(path).path, "root_path": ""}

    def find(routes, scope, prefix):
        for r in routes:
            match, child = r.matches(scope)
            if match != Match.FULL:
                continue
            if isinstance(r, Mount):
                return find(r.routes, {**scope, **child}, prefix + r.path)
            return prefix + r.path
        return None

    return find(app.routes, scope, "")


SUBSCRIBER = "127.0.0.1:9"


@pytest.fixture(scope="module")
def bare_app():
    """The app without its lifespan: enough to read its routes."""
    return create_app(Settings(), run_migrations=False)


def test_every_route_has_a_row(bare_app):
    # The web interface's pages sign in with a session cookie, not credentials in a
    # header: tests/api/test_web_permissions.py is their matrix.
    routes = [r for r in app_routes(bare_app) if not getattr(r[2], "web", False)]
    keys = [(m, p) for m, p, _ in routes]
    assert len(keys) == len(set(keys)), "a (method, path) served by two routes"
    covered = {(row.method, row.route) for row in MATRIX}
    missing = sorted(set(keys) - covered)
    assert not missing, ("routes without a row in the permission matrix (add one to ROWS "
                         "in tests/api/test_permissions.py): " + ", ".join(
                             f"{m} {p}" for m, p in missing))
    stale = sorted(covered - set(keys))
    assert not stale, f"rows for routes the app no longer has: {stale}"
    unguarded = [f"{m} {p}" for m, p, h in routes if not hasattr(h, "requirement")]
    assert not unguarded, f"handlers not wrapped by guard(): {unguarded}"


def test_every_row_reaches_the_route_it_names(bare_app):
    """A row's concrete path must be served by the route it claims ({name:path} is
    greedy: a wrong path would test another route's guard)."""
    wrong = []
    for row in MATRIX:
        path = row.path.format_map(_Sample())
        got = matched_route(bare_app, row.method, path)
        if got != row.route:
            wrong.append(f"{row.id}: served by {got}, the row says {row.route}")
    assert not wrong, "\n".join(wrong)


class _Sample(dict):
    """Placeholder values of the right shape, for route matching without a stack."""

    def __missing__(self, key: str) -> str:
        if key in ("digest", "doomed_manifest", "doomed_blob", "layer", "final_digest"):
            return "sha256:" + "0" * 64
        if key in ("webhook", "doomed_webhook", "delivery", "token", "key"):
            return "1"
        return "x" + key.replace("_", "")


# ---- the stack, with users, roles and data --------------------------------------------

def _basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


@dataclass
class Stack:
    client: TestClient
    headers: dict[str, dict]  # caller -> Authorization header (none for anonymous)
    ids: dict[str, object]  # placeholders shared by every caller
    own: dict[str, dict] = field(default_factory=dict)  # caller -> its own placeholders

    def ctx(self, caller: str) -> dict:
        return {**self.ids, "who": caller.replace("_", "-"), **self.own.get(caller, {})}

    def send(self, row: Row, caller: str, *, anonymous: bool = False):
        ctx = self.ctx(caller)
        kwargs = row.body(ctx) if row.body else {}
        headers = {**kwargs.pop("headers", {}),
                   **({} if anonymous else self.headers.get(caller, {}))}
        return self.client.request(row.method, row.path.format_map(ctx), headers=headers,
                                   follow_redirects=False, **kwargs)


def populate(client: TestClient, *, auth: bool) -> Stack:
    """Users, roles, tokens, keys, models, upload sessions, webhooks and a delivery."""
    access = client.app.state.registry.identities
    access.add_user("root", PASSWORDS["root"], admin=True)
    for name in ("rita", "wanda", "nadia", "otto", "olga"):
        access.add_user(name, PASSWORDS[name])
    access.add_user("ci", None, robot=True)
    for user, role in (("rita", "read"), ("wanda", "write"), ("nadia", "admin"),
                       ("ci", "write")):
        access.grant("team", user, role)
    access.grant("other", "olga", "admin")
    _, robot_pat = access.create_token("ci", "deploy")
    _, pull_pat = access.create_token("wanda", "pull only", ["pull"])
    headers = {caller: _basic(user, PASSWORDS[user]) for caller, user in USER_OF.items()
               if user in PASSWORDS}
    headers["robot"] = _basic("ci", robot_pat)
    headers["scoped"] = {"Authorization": f"Bearer {pull_pat}"}
    headers["anonymous"] = {}

    def as_(user: str | None) -> None:
        client.auth = (user, PASSWORDS[user]) if auth and user else None

    # A delivery needs a subscription before the pushes.
    as_("root")
    r = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                              "secret": "matrix-secret-0123"})
    assert r.status_code == 201, r.text
    webhook = r.json()["id"]
    r = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/doomed",
                                              "secret": "matrix-secret-0123"})
    assert r.status_code == 201, r.text
    doomed_webhook = r.json()["id"]
    for cls in ("gpu", "doomed-class"):
        r = client.put(f"/api/v1/classes/{cls}", json={"selector": {"accelerator": "any"}})
        assert r.status_code == 200, r.text
    for ns in ("mirrored", "doomed-mirror"):
        r = client.put(f"/api/v1/mirrors/{ns}", json={"kind": "oci", "url": "http://127.0.0.1:9"})
        assert r.status_code == 200, r.text

    as_("wanda")
    digest = push_safetensors(client, "team/model", "v1")
    manifest = client.get(f"/v2/team/model/manifests/{digest}")
    assert manifest.status_code == 200, manifest.text
    layer = json.loads(manifest.content)["layers"][0]["digest"]
    doomed_manifest, _ = push_image(client, "team/model", "doomed")
    doomed_blob = push_blob(client, "team/model", b"a blob nothing refers to")
    sessions = {}
    for use in ("patch", "put", "get", "delete"):
        r = client.post("/v2/team/model/blobs/uploads/")
        assert r.status_code == 202, r.text
        sessions[f"session_{use}"] = r.headers["Docker-Upload-UUID"]
    as_("olga")
    push_safetensors(client, "other/model", "v1")
    client.app.state.registry.remote.submit(parse_payload({"reference": REMOTE_REF}), None)
    as_("otto")
    push_image(client, "otto/mine", "v1")
    as_("root")
    r = client.get(f"/api/v1/webhooks/{webhook}/deliveries")
    assert r.status_code == 200 and r.json()["deliveries"], r.text
    delivery = r.json()["deliveries"][-1]["id"]
    as_(None)

    own: dict[str, dict] = {}
    for caller, user in USER_OF.items():
        who = caller.replace("_", "-")
        access.add_user(f"victim-{who}", None, robot=True)
        access.add_user(f"member-{who}", None, robot=True)
        access.grant("team", f"member-{who}", "read")
        holder = user or "root"  # anonymous deletes someone's: it is refused anyway
        record, _ = access.create_token(holder, f"throwaway {who}")
        key = access.add_key(holder, OllamaKey().public_line() + f" {who}@matrix")
        own[caller] = {"token": record["id"], "key": key["id"]}

    ids = {"digest": digest, "layer": layer, "doomed_manifest": doomed_manifest,
           "doomed_blob": doomed_blob, "final_digest": sha256(b"final"),
           "webhook": webhook, "doomed_webhook": doomed_webhook, "delivery": delivery,
           "manifest": manifest.content,
           "manifest_type": manifest.headers["content-type"], **sessions}
    return Stack(client, headers, ids, own)


def stack_settings(stack: str, request, tmp_path) -> Settings:
    """Like ``tests/api/conftest.py``'s ``settings``, in a database of this module's own
    (module scope: another module's ``settings`` must not truncate it under us)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    common = {"data_dir": data_dir, "gc_grace_seconds": 0, "gate": False,
              "hook_secret": HOOK_SECRET}
    if stack == "sqlite-fs":
        shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "assay.db")
        return Settings(fsync=False, **common)
    url = request.getfixturevalue("postgres_server").create_database("assay_permissions")
    migrate(url)
    s3 = request.getfixturevalue("s3_server")
    return Settings(database_url=url, storage="s3", s3_bucket="assay-api",
                    s3_prefix=f"{uuid.uuid4().hex}/", s3_endpoint_url=s3.endpoint_url,
                    s3_access_key_id=s3.access_key, s3_secret_access_key=s3.secret_key,
                    s3_region=s3.region, **common)


@pytest.fixture(scope="module", params=STACKS)
def stack(request, tmp_path_factory) -> Iterator[Stack]:
    settings = stack_settings(request.param, request, tmp_path_factory.mktemp("perm"))
    # The subscribers are a closed loopback port, which webhooks reach only if allowed.
    settings = settings.model_copy(update={"auth": True, "auth_cache_seconds": 3600,
                                           "outbound_allow": SUBSCRIBER})
    app = create_app(settings, run_migrations=False)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        yield populate(client, auth=True)


# ---- checking an answer ---------------------------------------------------------------

def _error_code(r) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    if not r.request.url.path.startswith("/api/"):  # OCI error JSON (/v2/, /auth/token)
        errors = body.get("errors") or [{}]
        return errors[0].get("code")
    return body.get("code")


def mismatch(row: Row, caller: str, r, expected: str | int) -> str | None:
    """Why ``r`` is not ``expected`` for ``caller``, or None."""
    status, head = r.status_code, row.method == "HEAD"
    got = f"got {status} {r.text[:160]!r}"
    if expected == "ok":
        if status in (401, 403):
            return f"expected to get past access control, {got}"
        if status >= 500:
            return f"got past access control but crashed: {got}"
        return None
    if status != expected:
        return f"expected {expected}, {got}"
    path = r.request.url.path
    if _hub_route(row.route):
        return hub_mismatch(row, r, expected)
    if expected == 401:
        challenge = r.headers.get("www-authenticate", "")
        # The REST API and the token endpoint itself take Basic credentials.
        if path.startswith("/api/") or path == "/auth/token":
            if challenge != 'Basic realm="assay"':
                return f"401 without the Basic challenge: {challenge!r}"
        elif not challenge.startswith(f'Bearer realm="{BASE}/auth/token"'):
            return f"401 without a Bearer challenge: {challenge!r}"
        if not head and _error_code(r) != "UNAUTHORIZED":
            return f"401 without code UNAUTHORIZED: {r.text[:160]!r}"
    if expected == 403 and not head and _error_code(r) != "DENIED":
        return f"403 without code DENIED: {r.text[:160]!r}"
    return None


def _hub_route(route: str) -> bool:
    return route.startswith(("/api/models/", "/api/repos/", "/api/whoami", "/api/validate",
                             LFS)) \
        or route == HUB_RESOLVE


def hub_mismatch(row: Row, r, expected: str | int) -> str | None:
    """The Hub API's refusals: ``{"error": message}`` with ``X-Error-Message``; a 401 also
    ``X-Error-Code: RepoNotFound`` (huggingface_hub's "not found, or sign in")."""
    if r.status_code != expected or expected not in (401, 403):
        return None
    if not r.headers.get("x-error-message"):
        return f"{expected} without X-Error-Message"
    if row.method != "HEAD" and not (r.json() or {}).get("error"):
        return f"{expected} without the Hub's error body: {r.text[:160]!r}"
    if expected == 401 and r.headers.get("x-error-code") != "RepoNotFound":
        return f"401 without X-Error-Code RepoNotFound: {dict(r.headers)}"
    return None


# ---- the tests ------------------------------------------------------------------------

@pytest.mark.parametrize("row", _params(MATRIX))
def test_permission_matrix(stack, row):
    problems = []
    for caller in CALLERS:
        r = stack.send(row, caller)
        why = mismatch(row, caller, r, row.expect[caller])
        if why:
            problems.append(f"{caller} ({USER_OF[caller]}): {why}")
    assert not problems, f"{row.id}:\n  " + "\n  ".join(problems)


def _catalog(stack: Stack, caller: str) -> set[str]:
    r = stack.client.get("/v2/_catalog", headers=stack.headers[caller])
    assert r.status_code == 200, r.text
    return set(r.json()["repositories"])


def _browse(stack: Stack, caller: str, what: str) -> set[str]:
    r = stack.client.get(f"/api/v1/{what}", headers=stack.headers[caller])
    assert r.status_code == 200, r.text
    key = "name" if what == "repositories" else "repository"
    return {item[key] for item in r.json()[what]}


def test_listings_show_each_caller_only_what_it_may_pull(stack):
    """Catalog, repositories and models, filtered per caller: ``team/*`` for the team,
    ``otto/*`` for the outsider, ``other/*`` for nobody but the site admin."""
    problems = []
    team = {"reader", "writer", "ns_admin", "robot", "scoped"}
    for caller in CALLERS:
        listings = {"catalog": _catalog(stack, caller),
                    "repositories": _browse(stack, caller, "repositories"),
                    "models": _browse(stack, caller, "models")}
        for what, names in listings.items():
            spaces = {n.split("/", 1)[0] for n in names}
            if caller == "site_admin":
                must = {"team/model", "other/model"} | ({"otto/mine"} if what != "models"
                                                        else set())
                allowed = None
            elif caller in team:
                must, allowed = {"team/model"}, {"team", USER_OF[caller]}
            elif caller == "outsider":
                must = {"otto/mine"} if what != "models" else set()  # an image, no model
                allowed = {"otto"}
            else:  # anonymous: nothing is open to anonymous pull here
                must, allowed = set(), set()
            if not must <= names:
                problems.append(f"{caller} {what}: misses {sorted(must - names)}")
            if allowed is not None and not spaces <= allowed:
                problems.append(f"{caller} {what}: shows {sorted(names)}, namespaces "
                                f"{sorted(spaces - allowed)} are not theirs")
    assert not problems, "\n".join(problems)


def test_the_other_namespace_is_invisible_and_denied_to_the_team(stack):
    """``other`` (olga's) from the team's side: not listed, not pullable, not pushable,
    not administrable, and its models unknown to the verification lookup."""
    requests = [("GET", "/v2/other/model/manifests/v1", 403),
                ("GET", "/v2/other/model/tags/list", 403),
                ("POST", "/v2/other/model/blobs/uploads/", 403),
                ("DELETE", "/v2/other/model/manifests/v1", 403),
                ("GET", "/api/v1/repositories/other/model/tags", 403),
                ("GET", "/api/v1/repositories/other/model/tags/v1", 403),
                ("PUT", "/api/v1/namespaces/other/members/rita", 403),
                ("GET", "/api/v1/verifications?reference=other/model:v1", 404)]
    problems = []
    for caller in ("reader", "writer", "ns_admin", "robot", "scoped"):
        h = stack.headers[caller]
        seen = _catalog(stack, caller) | _browse(stack, caller, "repositories") | \
            _browse(stack, caller, "models")
        if any(n.startswith("other/") for n in seen):
            problems.append(f"{caller} lists {sorted(seen)}")
        for method, path, status in requests:
            kw = {"json": {"role": "read"}} if method == "PUT" else {}
            r = stack.client.request(method, path, headers=h, **kw)
            if r.status_code != status:
                problems.append(f"{caller} {method} {path}: expected {status}, "
                                f"got {r.status_code} {r.text[:120]!r}")
    # olga, who owns it, still has it (the requests above changed nothing).
    olga = _basic("olga", PASSWORDS["olga"])
    r = stack.client.get("/v2/other/model/manifests/v1", headers=olga)
    if r.status_code != 200:
        problems.append(f"olga GET her manifest: {r.status_code}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def open_stack(settings) -> Iterator[Stack]:
    """The default: auth off (``make run``), same data as the matrix."""
    settings = settings.model_copy(update={"hook_secret": HOOK_SECRET,
                                           "outbound_allow": SUBSCRIBER})
    assert settings.auth is False
    app = create_app(settings, run_migrations=False)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        yield populate(client, auth=False)


def test_with_auth_off_every_route_is_open_to_anonymous_callers(open_stack):
    problems = []
    for row in MATRIX:
        r = open_stack.send(row, "anonymous", anonymous=True)
        if r.status_code in (401, 403) or r.status_code >= 500:
            problems.append(f"{row.id}: {r.status_code} {r.text[:160]!r}")
    assert not problems, "auth is off, yet:\n" + "\n".join(problems)
