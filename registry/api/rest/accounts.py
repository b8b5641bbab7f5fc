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
                                     "untagged_days"?}   (null clears the last three;
                                                       quota_bytes: site admin only)
    PUT    /api/v1/namespaces/<ns>/members/<user>  {"role": "read"|"write"|"admin"}
    DELETE /api/v1/namespaces/<ns>/members/<user>
    GET    /api/v1/audit?actor=&action=&before=<id>&n=  (site admin) newest first

With auth off there is no signed-in user: ``/me``, ``/tokens`` and ``/keys`` answer 409.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.guard import caller, credential_cache
from registry.api.oci.base import service
from registry.api.rest.manifests import json_body
from registry.errors import Conflict, Denied, RequestInvalid
from registry.services.identities import check_namespace


def _me(request: Request) -> str:
    identity = caller(request)
    if identity is None:
        raise Conflict("authentication is off on this registry: there is no signed-in user")
    return identity.name  # the guard (USER) let no anonymous caller in


def _field(body: dict, name: str, kind, default=None, required=False, nullable=False):
    """``body[name]`` checked against ``kind``; absent means ``default``, and so does
    null where the field is ``nullable`` (else null is refused like any wrong type)."""
    if name not in body or (body[name] is None and nullable):
        if default is None and not required:
            return None
        value = default
    else:
        value = body[name]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise RequestInvalid(f'"{name}" must be {getattr(kind, "__name__", kind)}')
    return value


async def me(request: Request) -> JSONResponse:
    identity = caller(request)
    if identity is None:
        return JSONResponse({"name": None, "auth": False})
    return JSONResponse({"name": identity.name, "auth": True, "admin": identity.is_admin,
                         "robot": identity.is_robot, "via": identity.via,
                         "roles": identity.roles})


async def list_users(request: Request) -> JSONResponse:
    return JSONResponse({"users": await run_in_threadpool(service(request).access.list_users)})


async def create_user(request: Request) -> JSONResponse:
    body = await json_body(request)
    name = _field(body, "name", str, required=True)
    password = _field(body, "password", str, nullable=True)
    admin = _field(body, "admin", bool, False)
    robot = _field(body, "robot", bool, False)
    user = await run_in_threadpool(service(request).access.add_user, name, password,
                                   admin=admin, robot=robot)
    return JSONResponse(user, status_code=201)


async def get_user(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(service(request).access.get_user,
                                                request.path_params["user"]))


async def delete_user(request: Request) -> JSONResponse:
    name = request.path_params["user"]
    await run_in_threadpool(service(request).access.remove_user, name)
    credential_cache(request).clear()
    return JSONResponse({"deleted": name})


async def _create_token(request: Request, user: str) -> JSONResponse:
    body = await json_body(request)
    name = _field(body, "name", str, required=True)
    scopes = _field(body, "scopes", list, nullable=True)
    days = _field(body, "expires_in_days", (int, float), nullable=True)
    if scopes is not None and not all(isinstance(s, str) for s in scopes):
        raise RequestInvalid('"scopes" must be a list of strings')
    record, secret = await run_in_threadpool(service(request).access.create_token, user,
                                             name, scopes, days)
    return JSONResponse({**record, "token": secret}, status_code=201)


async def create_user_token(request: Request) -> JSONResponse:
    return await _create_token(request, request.path_params["user"])


async def list_tokens(request: Request) -> JSONResponse:
    return JSONResponse({"tokens": await run_in_threadpool(
        service(request).access.list_tokens, _me(request))})


async def create_token(request: Request) -> JSONResponse:
    return await _create_token(request, _me(request))


async def revoke_token(request: Request) -> JSONResponse:
    await run_in_threadpool(service(request).access.revoke_token, _me(request),
                            request.path_params["id"])
    credential_cache(request).clear()  # revoked here: refused here at once
    return JSONResponse({"revoked": request.path_params["id"]})


async def list_keys(request: Request) -> JSONResponse:
    return JSONResponse({"keys": await run_in_threadpool(service(request).access.list_keys,
                                                         _me(request))})


async def add_key(request: Request) -> JSONResponse:
    body = await json_body(request)
    key = _field(body, "public_key", str, required=True)
    added = await run_in_threadpool(service(request).access.add_key, _me(request), key)
    return JSONResponse(added, status_code=201)


async def remove_key(request: Request) -> JSONResponse:
    await run_in_threadpool(service(request).access.remove_key, _me(request),
                            request.path_params["id"])
    credential_cache(request).clear()  # bearer tokens issued with it die here at once
    return JSONResponse({"deleted": request.path_params["id"]})


def _decimal(value: str) -> bool:
    return value.isascii() and value.isdigit()  # isdigit alone takes "²"


async def get_namespace(request: Request) -> JSONResponse:
    ns = check_namespace(request.path_params["namespace"])
    return JSONResponse(await run_in_threadpool(service(request).access.namespace, ns))


_NAMESPACE_SETTINGS = ("anonymous_pull", "quota_bytes", "keep_tags", "untagged_days")


async def put_namespace(request: Request) -> JSONResponse:
    """Any of the settings present in the body change (null clears quota and retention);
    absent ones stay. All are checked before any is written."""
    body = await json_body(request)
    changes = {k: body[k] for k in _NAMESPACE_SETTINGS if k in body}
    unknown = sorted(set(body) - set(_NAMESPACE_SETTINGS))
    if unknown:
        raise RequestInvalid(f"unknown field(s): {', '.join(unknown)[:200]}")
    ns = check_namespace(request.path_params["namespace"])
    identity = caller(request)
    if "quota_bytes" in changes and identity is not None and not identity.site_admin():
        # Everyone administers their personal namespace: a quota they could lift
        # themselves would limit nothing.
        raise Denied("only a site admin may set a namespace's storage quota")
    access = service(request).access
    await run_in_threadpool(lambda: access.configure_namespace(ns, **changes))
    if "anonymous_pull" in changes:
        credential_cache(request).clear()
    return JSONResponse(await run_in_threadpool(access.namespace, ns))


async def put_member(request: Request) -> JSONResponse:
    body = await json_body(request)
    role = _field(body, "role", str, required=True)
    ns, user = request.path_params["namespace"], request.path_params["user"]
    access = service(request).access
    await run_in_threadpool(access.grant, ns, user, role)
    credential_cache(request).clear()
    return JSONResponse(await run_in_threadpool(access.namespace, ns))


async def delete_member(request: Request) -> JSONResponse:
    ns, user = request.path_params["namespace"], request.path_params["user"]
    access = service(request).access
    await run_in_threadpool(access.revoke, ns, user)
    credential_cache(request).clear()
    return JSONResponse(await run_in_threadpool(access.namespace, ns))


async def audit(request: Request) -> JSONResponse:
    q = request.query_params
    n, before = q.get("n", "100"), q.get("before")
    if not _decimal(n) or not 1 <= int(n) <= 1000:
        raise RequestInvalid("n must be an integer from 1 to 1000")
    if before is not None and not (_decimal(before) and int(before) < 2**63):
        raise RequestInvalid("before must be an entry id")
    for name in ("actor", "action"):
        value = q.get(name, "")
        if len(value) > 64 or not value.isprintable():  # PostgreSQL refuses NUL bytes
            raise RequestInvalid(f"{name} is at most 64 printable characters")
    entries = await run_in_threadpool(
        lambda: service(request).audit.entries(
            limit=int(n), before=int(before) if before else None,
            actor=q.get("actor") or None, action=q.get("action") or None))
    return JSONResponse({"entries": entries})
