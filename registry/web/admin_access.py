"""Users, robots and tokens in the browser (``registry.api.rest.accounts`` over REST).

    GET  /-/admin/users                              every user and robot; add one
    POST /-/admin/users                              add a user or robot (POST /api/v1/users)
    GET  /-/admin/users/<user>                       one user: roles, tokens, changes
    POST /-/admin/users/<user>/admin                 make or unmake a site admin
    POST /-/admin/users/<user>/password              set a person's password
    POST /-/admin/users/<user>/remove                remove (a ticked confirmation needed)
    POST /-/admin/users/<user>/tokens                a token for them (POST .../tokens)
    POST /-/admin/users/<user>/tokens/<id>/revoke    revoke one of theirs
    GET  /-/admin/tokens                             the caller's own tokens
    POST /-/admin/tokens                             a new one, its secret shown once
    POST /-/admin/tokens/<id>/revoke                 revoke one

Users are the site admin's (SITE_ADMIN, as REST's /users); one's own tokens need a
signed-in caller to list (USER) and a password session to change (ACCOUNT, as REST's
/tokens). Making a site admin, setting a password and revoking another user's token
have no REST route: they call the services ``assay user admin``, ``assay user passwd``
and ``assay robot token rm`` call, under SITE_ADMIN.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from registry.access.permissions import ACTIONS
from registry.api.guard import credential_cache
from registry.api.oci.base import service
from registry.errors import Conflict, RequestInvalid
from registry.web import session
from registry.web.admin import Page, attempt, back, call, checked, field, fields, show, who

USERS = "/-/admin/users"
TOKENS = "/-/admin/tokens"
AUTH_OFF = "authentication is off on this registry: there is no signed-in user"


def _user_path(name: str) -> str:
    return f"{USERS}/{name}"


# ---- users and robots ----------------------------------------------------------------------

async def users_page(request: Request, *, error: str | None = None, status: int = 200,
                     values: dict | None = None) -> Response:
    users = await call(service(request).identities.list_users)
    return show(request, "admin_users.html", status=status, error=error,
                values=values or {}, users=[u for u in users if not u["robot"]],
                robots=[u for u in users if u["robot"]])


async def add_user(request: Request) -> Response:
    """POST /api/v1/users: a person with a password, or a robot (tokens only)."""
    data = await session.form(request)
    name, password = field(data, "name"), field(data, "password", strip=False) or None
    robot = field(data, "kind") == "robot"
    identities = service(request).identities
    added, failed = await attempt(
        request, lambda: identities.add_user(name, password, admin=checked(data, "admin"),
                                             robot=robot),
        users_page, values={"name": name, "kind": "robot" if robot else "user",
                            "admin": checked(data, "admin")})
    if failed:
        return failed
    kind = "robot" if robot else ("site admin" if added["admin"] else "user")
    return back(_user_path(name) if robot else USERS, f"Added {kind} {name}.")


async def user_page(request: Request, *, error: str | None = None, status: int = 200,
                    values: dict | None = None, new_token: dict | None = None) -> Response:
    """GET /api/v1/users/<user>, with their tokens (never the secrets)."""
    identities = service(request).identities
    name = request.path_params["user"]
    user = await call(identities.get_user, name)
    tokens = await call(identities.list_tokens, name)
    return show(request, "admin_user.html", status=status, error=error, values=values or {},
                user=user, tokens=tokens, new_token=new_token, actions=ACTIONS)


async def set_admin(request: Request) -> Response:
    data = await session.form(request)
    name, admin = request.path_params["user"], checked(data, "admin")
    identities = service(request).identities
    _, failed = await attempt(request, lambda: identities.set_admin(name, admin), user_page)
    if failed:
        return failed
    credential_cache(request).clear()  # a cached identity carries the old flag
    return back(_user_path(name),
                f"{name} is {'now' if admin else 'no longer'} a site admin.")


async def set_password(request: Request) -> Response:
    data = await session.form(request)
    name = request.path_params["user"]
    password = field(data, "password", strip=False)
    again = field(data, "confirm_password", strip=False)
    identities = service(request).identities

    def change() -> None:
        if password != again:
            raise RequestInvalid("the two passwords differ: type the same one twice")
        identities.set_password(name, password)

    _, failed = await attempt(request, change, user_page)
    if failed:
        return failed
    credential_cache(request).clear()  # the old password must stop working here at once
    return back(_user_path(name), f"Password of {name} changed.")


async def remove_user(request: Request) -> Response:
    """DELETE /api/v1/users/<user>, once the confirmation box is ticked."""
    data = await session.form(request)
    name = request.path_params["user"]
    identities = service(request).identities

    def change() -> None:
        if not checked(data, "confirm"):
            raise RequestInvalid(f"tick the box to confirm that {name} goes, with their "
                                 "tokens, keys and roles")
        identities.remove_user(name)

    _, failed = await attempt(request, change, user_page)
    if failed:
        return failed
    credential_cache(request).clear()
    return back(USERS, f"Removed {name}, their tokens, keys and roles.")


# ---- tokens --------------------------------------------------------------------------------

def token_request(data: dict) -> tuple[str, list[str] | None, float | None]:
    """A token form's name, scopes (the actions ticked, each limited to the namespace
    glob if one is given; none ticked: the default, pull and push) and expiry in days
    (empty: never). Raises RequestInvalid for an expiry that is not a number."""
    name = field(data, "name")
    glob = field(data, "namespaces")
    actions = [a for a in fields(data, "scopes") if a in ACTIONS]
    if glob and not actions:
        raise RequestInvalid("tick the actions the namespaces limit")
    scopes = [f"{a}:{glob}" if glob else a for a in actions] or None
    days = field(data, "expires_in_days")
    if not days:
        return name, scopes, None
    try:
        value = float(days)
    except ValueError:
        raise RequestInvalid(f"the expiry must be a number of days, not {days[:20]!r}") \
            from None
    return name, scopes, value


def _token_values(data: dict) -> dict:
    return {"name": field(data, "name"), "namespaces": field(data, "namespaces"),
            "scopes": fields(data, "scopes"), "expires_in_days": field(data, "expires_in_days")}


async def _create_token(request: Request, owner: Callable[[], str], page: Page) -> Response:
    """A token for ``owner()`` from the POSTed form, as the same service call REST makes:
    ``page`` again (201) with its secret shown this once, or with the refusal and the
    form as it was sent. ``owner`` runs with the change, so its refusal is shown too."""
    data = await session.form(request)
    identities = service(request).identities
    made, failed = await attempt(
        request, lambda: identities.create_token(owner(), *token_request(data)), page,
        values=_token_values(data))
    if failed:
        return failed
    record, secret = made
    return await page(request, status=201, new_token={**record, "token": secret})


async def create_user_token(request: Request) -> Response:
    """POST /api/v1/users/<user>/tokens: the page again, with the secret this once."""
    name = request.path_params["user"]
    return await _create_token(request, lambda: name, user_page)


async def revoke_user_token(request: Request) -> Response:
    await session.form(request)
    name, token_id = request.path_params["user"], request.path_params["id"]
    identities = service(request).identities
    _, failed = await attempt(request, lambda: identities.revoke_token(name, token_id),
                              user_page)
    if failed:
        return failed
    credential_cache(request).clear()  # revoked here: refused here at once
    return back(_user_path(name), f"Revoked token {token_id} of {name}.")


def _me(request: Request) -> str:
    identity = who(request)
    if identity is None:
        raise Conflict(AUTH_OFF)
    return identity.name


async def tokens_page(request: Request, *, error: str | None = None, status: int = 200,
                      values: dict | None = None, new_token: dict | None = None) -> Response:
    """GET /api/v1/tokens: the caller's tokens (with auth off there is no caller)."""
    identity = who(request)
    tokens = [] if identity is None else \
        await call(service(request).identities.list_tokens, identity.name)
    return show(request, "admin_tokens.html", status=status, error=error, values=values or {},
                tokens=tokens, new_token=new_token, actions=ACTIONS,
                can_change=identity is not None)


async def create_token(request: Request) -> Response:
    """POST /api/v1/tokens: the page again, with the secret this once."""
    return await _create_token(request, lambda: _me(request), tokens_page)


async def revoke_token(request: Request) -> Response:
    """DELETE /api/v1/tokens/<id>."""
    await session.form(request)
    token_id = request.path_params["id"]
    identities = service(request).identities
    _, failed = await attempt(
        request, lambda: identities.revoke_token(_me(request), token_id), tokens_page)
    if failed:
        return failed
    credential_cache(request).clear()
    return back(TOKENS, f"Revoked token {token_id}.")
