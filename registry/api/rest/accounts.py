"""Users, tokens, Ollama keys, namespace roles and the audit log over REST.

    GET    /api/v1/me                                  who am I: name, admin, roles
    GET    /api/v1/users                               (site admin) every user and robot
    POST   /api/v1/users        {"name", "password"?, "admin"?, "robot"?}
    GET    /api/v1/users/<name>                        (site admin) one user and their roles
    DELETE /api/v1/users/<name>                        (site admin)
    POST   /api/v1/users/<name>/tokens                 (site admin) a token for a robot
    GET    /api/v1/tokens                              my tokens (never their secrets)
    POST   /api/v1/tokens       {"name", "scopes"?, "expires_in_days"?}  -> {"token", ...}
    DELETE /api/v1/tokens/<id>                         revoke
    GET    /api/v1/keys                                my Ollama public keys
    POST   /api/v1/keys         {"public_key": "ssh-ed25519 AAAA... comment"}
    DELETE /api/v1/keys/<id>
    GET    /api/v1/namespaces/<ns>                     (namespace admin) members, switch,
                                                       quota and usage, retention
    PUT    /api/v1/namespaces/<ns>  {"anonymous_pull"?, "quota_bytes"?, "keep_tags"?,
                                     "keep_ready"?, "untagged_days"?, "protected_tags"?}
                                                       (null clears a number;
                                                       quota_bytes: site admin only)
    PUT    /api/v1/namespaces/<ns>/members/<user>  {"role": "read"|"write"|"admin"}
    DELETE /api/v1/namespaces/<ns>/members/<user>
    GET    /api/v1/audit?actor=&action=&before=<id>&n=  (site admin) newest first

With auth off there is no signed-in user: ``/me``, ``/tokens`` and ``/keys`` answer 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.guard import caller, credential_cache
from registry.api.oci.base import service
from registry.api.rest.common import operation, read_body
from registry.api.rest.schemas import (
    COMPONENT_PATTERN,
    MAX_INT64,
    MAX_USER_NAME,
    SCOPE_PATTERN,
    Answer,
    Body,
    Role,
    absent,
    integer_id,
    path_param,
    query_param,
)
from registry.digests import MAX_NAME_LENGTH
from registry.errors import Conflict, Denied, RequestInvalid
from registry.services.identities import (
    MAX_PROTECTED_TAGS,
    MAX_TOKEN_NAME_LENGTH,
    TAG_GLOB_RE,
    check_namespace,
)
from registry.services.quotas import MAX_QUOTA


def doc(**constraints) -> dict:
    """Constraints the service checks (with its own messages): documented, not re-checked."""
    return {"json_schema_extra": constraints}


# ---- request bodies --------------------------------------------------------------------------

class UserRequest(Body):
    """A person needs a password; a robot must have none."""

    name: str = Field(description="Also the user's personal namespace.",
                      **doc(pattern=COMPONENT_PATTERN, maxLength=MAX_USER_NAME))
    password: str | None = Field(None, **doc(minLength=8))
    admin: bool = Field(False, description="A site admin.")
    robot: bool = False


class TokenRequest(Body):
    name: str = Field(**doc(minLength=1, maxLength=MAX_TOKEN_NAME_LENGTH))
    scopes: list[Annotated[str, Field(**doc(pattern=SCOPE_PATTERN))]] | None = Field(
        None, description="Actions (pull, push, delete, admin), each optionally limited to a "
                          "namespace glob ('push:team'); absent, null or [] means pull and "
                          "push. A token never allows more than its owner may do.")
    expires_in_days: int | float | None = Field(
        None, description="Absent or null: never expires.",
        **doc(exclusiveMinimum=0, maximum=3650))


class KeyRequest(Body):
    public_key: str = Field(
        description="An Ollama public key, `ssh-ed25519 AAAA... [comment]` (the contents of "
                    "~/.ollama/id_ed25519.pub).", **doc(minLength=1))


def _at_most_globs(schema: dict) -> None:
    schema.pop("default", None)  # absent: unchanged (null is refused)
    schema["maxItems"] = MAX_PROTECTED_TAGS


class NamespaceRequest(Body):
    """Fields present change, absent ones stay; null clears quota_bytes, keep_tags,
    keep_ready or untagged_days."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    anonymous_pull: bool = absent()
    quota_bytes: Annotated[int, Field(ge=0, le=MAX_QUOTA)] | None = absent()
    keep_tags: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = absent()
    keep_ready: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = absent()
    untagged_days: Annotated[int, Field(ge=1, le=36500)] | None = absent()
    protected_tags: list[Annotated[str, Field(**doc(pattern=f"^{TAG_GLOB_RE.pattern}$"))]] = \
        Field(None, description="Tag globs retention never deletes; replaces the list "
                                "([] protects none).", json_schema_extra=_at_most_globs)


class MemberRequest(Body):
    role: Role


# ---- answers ---------------------------------------------------------------------------------

class Me(Answer):
    """With auth off: {"name": null, "auth": false} and nothing else."""

    name: str | None
    auth: bool = Field(description="Whether the registry runs with authentication on.")
    admin: bool = absent("A site admin.")
    robot: bool = absent()
    via: Literal["password", "token", "bearer", "key"] = absent(
        "How the caller authenticated.")
    roles: dict[str, Role] = absent("Namespace -> role (the personal namespace included).")


class User(Answer):
    name: str
    admin: bool
    robot: bool = Field(description="Robots have no password: tokens only.")
    created_at: datetime
    disabled: bool


class UserDetail(User):
    roles: dict[str, Role] = Field(description="Namespace -> role (a person is admin of the "
                                               "namespace named after them).")


class UserList(Answer):
    users: list[User]


class UserDeleted(Answer):
    deleted: str


class Token(Answer):
    """A personal access token (never its secret)."""

    id: int
    name: str
    prefix: str = Field(description="Its first characters, to tell tokens apart.")
    scopes: list[str]
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class NewToken(Token):
    """A personal access token and, this once, its secret."""

    token: str = Field(description="The secret: shown this once. Use it as a Bearer token or "
                                   "as the password of Basic.")


class TokenList(Answer):
    tokens: list[Token]


class TokenRevoked(Answer):
    revoked: int


class KeyAdded(Answer):
    id: int
    fingerprint: str = Field(description="SHA256:...")
    comment: str | None


class Key(KeyAdded):
    created_at: datetime


class KeyList(Answer):
    keys: list[Key]


class KeyDeleted(Answer):
    deleted: int


class Member(Answer):
    user: str
    role: Role


class Namespace(Answer):
    name: str
    anonymous_pull: bool = Field(description="Anyone may pull from it without signing in.")
    quota_bytes: Annotated[int, Field(ge=0)] | None = Field(
        description="Storage quota in bytes; null: unlimited. A push of a blob that would "
                    "take usage_bytes past it is refused (403 DENIED).")
    usage_bytes: int = Field(ge=0, description="Total size of the distinct blobs linked to "
                                               "the namespace's repositories.")
    keep_tags: Annotated[int, Field(ge=1)] | None = Field(
        description="Retention: keep the newest N tags of each repository; null: this "
                    "rule is off.")
    keep_ready: Annotated[int, Field(ge=1)] | None = Field(
        description="Retention: keep the newest N ready tags of each repository (tags "
                    "still being verified are kept too; failed ones do not count); null: "
                    "this rule is off. With keep_tags, a tag either rule keeps stays; with "
                    "neither, no tag is deleted.")
    untagged_days: Annotated[int, Field(ge=1)] | None = Field(
        description="Retention: delete untagged manifests older than D days; null: keep "
                    "them.")
    protected_tags: list[str] = Field(
        description="Retention never deletes tags matching these globs (fnmatch, case "
                    "sensitive), and they do not count in keep_tags or keep_ready. "
                    'Default ["latest"].')
    members: list[Member]


class AuditEntry(Answer):
    id: int
    at: datetime
    actor: str | None = Field(description="null: anonymous (auth off) or the system.")
    remote_addr: str | None
    action: str = Field(description="e.g. user.add, token.create, namespace.grant.")
    target: str
    detail: dict[str, Any]


class AuditPage(Answer):
    entries: list[AuditEntry]


# ---- parameters ------------------------------------------------------------------------------

NAMESPACE = path_param("namespace", {"type": "string", "pattern": COMPONENT_PATTERN,
                                     "maxLength": MAX_NAME_LENGTH},
                       "A namespace: a repository name's first segment.", "team")
TOKEN_ID, KEY_ID = integer_id("id", "Token id."), integer_id("id", "Key id.")
AUDIT_QUERY = {
    "n": query_param("n", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                     "Page size."),
    "before": query_param("before", {"type": "integer", "minimum": 0, "maximum": MAX_INT64},
                          "Entries older than this id."),
    "actor": query_param("actor", {"type": "string", "maxLength": 64},
                         "Only this user's entries."),
    "action": query_param("action", {"type": "string", "maxLength": 64},
                          "Only this action (e.g. token.create)."),
}
OWN = "Yours: the signed-in caller's. With auth off there is no signed-in user: 409."
GET_USER_LINK = {"getUser": {"operationId": "getUser",
                             "parameters": {"user": "$response.body#/name"}}}


def _me(request: Request) -> str:
    identity = caller(request)
    if identity is None:
        raise Conflict("authentication is off on this registry: there is no signed-in user")
    return identity.name  # the guard (USER) let no anonymous caller in


@operation("getMe", "access", "Who am I: name, site admin, how signed in, roles per namespace",
           Me, description='With auth off: 200 {"name": null, "auth": false}.')
async def me(request: Request) -> JSONResponse:
    identity = caller(request)
    if identity is None:
        return JSONResponse({"name": None, "auth": False})
    return JSONResponse({"name": identity.name, "auth": True, "admin": identity.is_admin,
                         "robot": identity.is_robot, "via": identity.via,
                         "roles": identity.roles})


@operation("listUsers", "access", "Every user and robot (site admin)", UserList)
async def list_users(request: Request) -> JSONResponse:
    return JSONResponse({"users": await run_in_threadpool(service(request).identities.list_users)})


@operation("createUser", "access",
           "Add a user (with a password) or a robot (tokens only; site admin)", User,
           status=201, answer_text="Created", body=UserRequest, links=GET_USER_LINK,
           problems=(400, 409, 413))
async def create_user(request: Request) -> JSONResponse:
    body = await read_body(request, UserRequest)
    user = await run_in_threadpool(service(request).identities.add_user, body.name, body.password,
                                   admin=body.admin, robot=body.robot)
    return JSONResponse(user, status_code=201)


@operation("getUser", "access", "One user and their roles (site admin)", UserDetail,
           problems=(404,))
async def get_user(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(service(request).identities.get_user,
                                                request.path_params["user"]))


@operation("deleteUser", "access",
           "Remove a user or robot, their tokens, keys and roles (site admin)", UserDeleted,
           problems=(404,))
async def delete_user(request: Request) -> JSONResponse:
    name = request.path_params["user"]
    await run_in_threadpool(service(request).identities.remove_user, name)
    credential_cache(request).clear()
    return JSONResponse({"deleted": name})


async def _create_token(request: Request, user: str) -> JSONResponse:
    body = await read_body(request, TokenRequest)
    record, secret = await run_in_threadpool(service(request).identities.create_token, user,
                                             body.name, body.scopes, body.expires_in_days)
    return JSONResponse({**record, "token": secret}, status_code=201)


@operation("createUserToken", "access",
           "A personal access token for a user or robot (site admin)", NewToken,
           description="The secret is in the answer only.", status=201, answer_text="Created",
           body=TokenRequest, problems=(400, 404, 413))
async def create_user_token(request: Request) -> JSONResponse:
    return await _create_token(request, request.path_params["user"])


@operation("listTokens", "access", "Your personal access tokens (never their secrets)",
           TokenList, description=OWN, problems=(409,))
async def list_tokens(request: Request) -> JSONResponse:
    return JSONResponse({"tokens": await run_in_threadpool(
        service(request).identities.list_tokens, _me(request))})


@operation("createToken", "access", "A new personal access token for yourself", NewToken,
           description="The secret is in the answer only. " + OWN, status=201,
           answer_text="Created", body=TokenRequest, problems=(400, 409, 413))
async def create_token(request: Request) -> JSONResponse:
    return await _create_token(request, _me(request))


@operation("revokeToken", "access", "Revoke one of your tokens", TokenRevoked,
           description=OWN, params={"id": TOKEN_ID}, problems=(404, 409))
async def revoke_token(request: Request) -> JSONResponse:
    await run_in_threadpool(service(request).identities.revoke_token, _me(request),
                            request.path_params["id"])
    credential_cache(request).clear()  # revoked here: refused here at once
    return JSONResponse({"revoked": request.path_params["id"]})


@operation("listKeys", "access", "Your Ollama public keys", KeyList, description=OWN,
           problems=(409,))
async def list_keys(request: Request) -> JSONResponse:
    return JSONResponse({"keys": await run_in_threadpool(service(request).identities.list_keys,
                                                         _me(request))})


@operation("addKey", "access",
           "Register an Ollama public key (ollama push/pull sign in with it)", KeyAdded,
           description=OWN, status=201, answer_text="Created", body=KeyRequest,
           problems=(400, 409, 413))
async def add_key(request: Request) -> JSONResponse:
    body = await read_body(request, KeyRequest)
    added = await run_in_threadpool(service(request).identities.add_key, _me(request),
                                    body.public_key)
    return JSONResponse(added, status_code=201)


@operation("removeKey", "access", "Remove one of your keys", KeyDeleted,
           description=OWN, params={"id": KEY_ID}, problems=(404, 409))
async def remove_key(request: Request) -> JSONResponse:
    await run_in_threadpool(service(request).identities.remove_key, _me(request),
                            request.path_params["id"])
    credential_cache(request).clear()  # bearer tokens issued with it die here at once
    return JSONResponse({"deleted": request.path_params["id"]})


def _decimal(value: str) -> bool:
    return value.isascii() and value.isdigit()  # isdigit alone takes "²"


@operation("getNamespace", "access",
           "A namespace's members, anonymous-pull switch, quota and usage, retention "
           "(namespace admin)", Namespace, params={"namespace": NAMESPACE},
           problems=(400, 404))
async def get_namespace(request: Request) -> JSONResponse:
    ns = check_namespace(request.path_params["namespace"])
    return JSONResponse(await run_in_threadpool(service(request).identities.namespace, ns))


@operation("putNamespace", "access",
           "Set a namespace's anonymous-pull switch, storage quota or retention "
           "(namespace admin; the quota: site admin)", Namespace, body=NamespaceRequest,
           params={"namespace": NAMESPACE}, problems=(400, 404, 413))
async def put_namespace(request: Request) -> JSONResponse:
    """Any of the settings present in the body change (null clears quota and retention);
    absent ones stay. All are checked before any is written."""
    body = await read_body(request, NamespaceRequest)
    changes = body.model_dump(include=body.model_fields_set)
    ns = check_namespace(request.path_params["namespace"])
    identity = caller(request)
    if "quota_bytes" in changes and identity is not None and not identity.site_admin():
        # Everyone administers their personal namespace: a quota they could lift
        # themselves would limit nothing.
        raise Denied("only a site admin may set a namespace's storage quota")
    access = service(request).identities
    await run_in_threadpool(lambda: access.configure_namespace(ns, **changes))
    if "anonymous_pull" in changes:
        credential_cache(request).clear()
    return JSONResponse(await run_in_threadpool(access.namespace, ns))


@operation("putMember", "access", "Give a user a role in a namespace (namespace admin)",
           Namespace, description="read: pull; write: pull and push; admin: also delete, "
           "the namespace's policy, overrides and members.", body=MemberRequest,
           params={"namespace": NAMESPACE}, problems=(400, 404, 413))
async def put_member(request: Request) -> JSONResponse:
    role = (await read_body(request, MemberRequest)).role
    ns, user = request.path_params["namespace"], request.path_params["user"]
    access = service(request).identities
    await run_in_threadpool(access.grant, ns, user, role)
    credential_cache(request).clear()
    return JSONResponse(await run_in_threadpool(access.namespace, ns))


@operation("deleteMember", "access",
           "Take a user's role in a namespace away (namespace admin)", Namespace,
           params={"namespace": NAMESPACE}, problems=(404,))
async def delete_member(request: Request) -> JSONResponse:
    ns, user = request.path_params["namespace"], request.path_params["user"]
    access = service(request).identities
    await run_in_threadpool(access.revoke, ns, user)
    credential_cache(request).clear()
    return JSONResponse(await run_in_threadpool(access.namespace, ns))


@operation("listAudit", "access", "The audit log, newest first (site admin)", AuditPage,
           description="Pushes and deletes; user, token, key and namespace-role changes; "
           "policy changes and gate overrides. Page with before=<the last entry's id>.",
           params=AUDIT_QUERY, problems=(400,))
async def audit(request: Request) -> JSONResponse:
    query = audit_query(request.query_params)
    entries = await run_in_threadpool(lambda: service(request).audit.entries(**query))
    return JSONResponse({"entries": entries})


def audit_query(q) -> dict:
    """The audit log's query parameters (``AUDIT_QUERY``) as ``AuditService.entries``
    arguments; RequestInvalid naming the first bad one."""
    n, before = q.get("n", "100"), q.get("before")
    if not _decimal(n) or not 1 <= int(n) <= 1000:
        raise RequestInvalid("n must be an integer from 1 to 1000")
    if before is not None and not (_decimal(before) and int(before) < 2**63):
        raise RequestInvalid("before must be an entry id")
    for name in ("actor", "action"):
        value = q.get(name, "")
        if len(value) > 64 or not value.isprintable():  # PostgreSQL refuses NUL bytes
            raise RequestInvalid(f"{name} is at most 64 printable characters")
    return {"limit": int(n), "before": int(before) if before else None,
            "actor": q.get("actor") or None, "action": q.get("action") or None}
