"""Namespaces in the browser: members, anonymous pull, quota, retention, the readiness
gate and the verification profile.

    GET  /-/admin/namespaces                           those the caller administers
    GET  /-/admin/namespaces/<ns>                      everything set for one
    POST /-/admin/namespaces/<ns>/members              grant or change a role
    POST /-/admin/namespaces/<ns>/members/<user>/remove    revoke it
    POST /-/admin/namespaces/<ns>/anonymous            anonymous pull on or off
    POST /-/admin/namespaces/<ns>/quota                storage quota (site admin)
    POST /-/admin/namespaces/<ns>/retention            keep_tags, keep_ready, untagged_days,
                                                       protected tag globs
    POST /-/admin/namespaces/<ns>/policy[/reset]       the readiness gate (PUT|DELETE
                                                       /api/v1/policies/<ns>)
    POST /-/admin/namespaces/<ns>/profile[/reset]      the verification profile (PUT|DELETE
                                                       /api/v1/profiles/<ns>)

Every page and form of one namespace needs ("namespace", ADMIN), as REST's
``/api/v1/namespaces/<ns>``, ``/policies/<ns>`` and ``/profiles/<ns>`` do; the quota,
as over REST, is refused (403) to anyone but a site admin. The list needs a signed-in
caller and shows the namespaces they administer (every one to a site admin).
"""

from __future__ import annotations

import yaml
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.access.permissions import ROLES
from registry.api.guard import credential_cache
from registry.api.oci.base import service
from registry.errors import Denied, RequestInvalid
from registry.profiles import parse_profile
from registry.services.identities import check_namespace
from registry.services.quotas import human, parse_size
from registry.web import session
from registry.web.admin import (
    attempt,
    back,
    call,
    checked,
    field,
    is_site_admin,
    namespace_list,
    show,
)

NAMESPACES = "/-/admin/namespaces"


def _path(ns: str) -> str:
    return f"{NAMESPACES}/{ns}"


async def namespaces_page(request: Request) -> Response:
    """The list; ``?name=<ns>`` opens that namespace (one with nothing set yet too)."""
    wanted = request.query_params.get("name", "").strip()
    if wanted:
        return RedirectResponse(_path(check_namespace(wanted)), status_code=303)
    return show(request, "admin_namespaces.html", namespaces=await namespace_list(request))


def _read(svc, ns: str) -> dict:
    """What the namespace page shows: GET /api/v1/namespaces/<ns>, the policy and the
    profile that apply to it (GET /api/v1/policies/<ns>, /profiles/<ns>)."""
    applied = svc.profiles.applies(ns)
    return {"ns": svc.identities.namespace(ns), "policy": svc.verification.policy(ns).to_json(),
            "profile": applied.to_json(),
            "document": yaml.safe_dump(applied.profile.to_json(), sort_keys=False)}


async def namespace_page(request: Request, *, error: str | None = None, status: int = 200,
                         values: dict | None = None) -> Response:
    ns = check_namespace(request.path_params["namespace"])
    data = await call(_read, service(request), ns)
    info, policy = data["ns"], data["policy"]
    form = {"keep_tags": info["keep_tags"] or "", "keep_ready": info["keep_ready"] or "",
            "untagged_days": info["untagged_days"] or "",
            "protected_tags": " ".join(info["protected_tags"]),
            "quota": "" if info["quota_bytes"] is None else str(info["quota_bytes"]),
            "gate": policy["gate"],
            "min_generation_tps": "" if policy["min_generation_tps"] is None
            else policy["min_generation_tps"],
            "document": data["document"], "user": "", "role": "read"}
    form.update(values or {})
    return show(request, "admin_namespace.html", status=status, error=error, form=form,
                name=ns, roles=list(ROLES), quota_human=None if info["quota_bytes"] is None
                else human(info["quota_bytes"]), usage_human=human(info["usage_bytes"]),
                **data)


async def _change(request: Request, change, notice: str, values: dict | None = None,
                  *, clear_cache: bool = False) -> Response:
    """Run ``change(ns)`` (blocking) for the namespace of the path; back with ``notice``,
    or the page again with the error and ``values``."""
    ns = check_namespace(request.path_params["namespace"])
    _, failed = await attempt(request, lambda: change(ns), namespace_page, values=values)
    if failed:
        return failed
    if clear_cache:  # who may do what changed: this process must not answer from before
        credential_cache(request).clear()
    return back(_path(ns), notice)


# ---- members and access ----------------------------------------------------------------

async def grant(request: Request) -> Response:
    """PUT /api/v1/namespaces/<ns>/members/<user> {"role"}."""
    data = await session.form(request)
    user, role = field(data, "user"), field(data, "role")
    identities = service(request).identities
    return await _change(request, lambda ns: identities.grant(ns, user, role),
                         f"{user} now has the {role} role.", {"user": user, "role": role},
                         clear_cache=True)


async def revoke(request: Request) -> Response:
    """DELETE /api/v1/namespaces/<ns>/members/<user>."""
    await session.form(request)
    user = request.path_params["user"]
    identities = service(request).identities
    return await _change(request, lambda ns: identities.revoke(ns, user),
                         f"{user} no longer has a role here.", clear_cache=True)


async def anonymous(request: Request) -> Response:
    """PUT /api/v1/namespaces/<ns> {"anonymous_pull"}."""
    data = await session.form(request)
    allowed = checked(data, "anonymous_pull")
    identities = service(request).identities
    return await _change(
        request, lambda ns: identities.configure_namespace(ns, anonymous_pull=allowed),
        "Anyone may now pull from here without signing in." if allowed
        else "Only members may pull from here now.", clear_cache=True)


async def quota(request: Request) -> Response:
    """PUT /api/v1/namespaces/<ns> {"quota_bytes"}: site admins only, as over REST (a
    quota the namespace's admin could lift would limit nothing). Empty: unlimited."""
    data = await session.form(request)
    if not is_site_admin(request):
        raise Denied("only a site admin may set a namespace's storage quota")
    text = field(data, "quota")
    identities = service(request).identities

    def change(ns: str) -> None:
        try:
            value = parse_size(text) if text else None
        except ValueError as exc:
            raise RequestInvalid(str(exc)) from None
        identities.configure_namespace(ns, quota_bytes=value)

    return await _change(request, change, f"Quota set to {text}." if text
                         else "The quota is off: storage is unlimited.", {"quota": text})


def _count(data: dict, name: str) -> int | None:
    text = field(data, name)
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise RequestInvalid(f'"{name}" must be a whole number, or empty to turn it off')
    return int(text)


async def retention(request: Request) -> Response:
    """PUT /api/v1/namespaces/<ns> with the four retention settings (empty: off)."""
    data = await session.form(request)
    names = ("keep_tags", "keep_ready", "untagged_days")
    values = {k: field(data, k) for k in (*names, "protected_tags")}
    identities = service(request).identities

    def change(ns: str) -> None:
        rules = {k: _count(data, k) for k in names}
        globs = values["protected_tags"].replace(",", " ").split()
        identities.configure_namespace(ns, **rules, protected_tags=globs)

    return await _change(request, change, "Retention saved.", values)


# ---- the readiness gate and the verification profile -------------------------------------

async def policy(request: Request) -> Response:
    """PUT /api/v1/policies/<ns> {"gate", "min_generation_tps"} (empty: no floor)."""
    data = await session.form(request)
    gate, tps = checked(data, "gate"), field(data, "min_generation_tps")
    verification = service(request).verification

    def change(ns: str) -> None:
        try:
            floor = float(tps) if tps else None
        except ValueError:
            raise RequestInvalid("the speed floor must be a number of tokens per second, "
                                 "or empty for none") from None
        verification.set_policy(ns, gate, floor)

    return await _change(request, change, "Readiness gate saved.",
                         {"gate": gate, "min_generation_tps": tps})


async def reset_policy(request: Request) -> Response:
    """DELETE /api/v1/policies/<ns>: back to the default."""
    await session.form(request)
    verification = service(request).verification

    def change(ns: str) -> None:
        if not verification.delete_policy(ns):
            raise RequestInvalid(f"no policy is set on namespace {ns!r}: it already "
                                 "follows the default")

    return await _change(request, change, "The readiness gate follows the default again.")


async def profile(request: Request) -> Response:
    """PUT /api/v1/profiles/<ns> with a YAML or JSON document (empty: the built-in one)."""
    data = await session.form(request)
    document = data.get("document") if isinstance(data.get("document"), str) else ""
    profiles = service(request).profiles

    def change(ns: str) -> None:
        profiles.set(ns, parse_profile(document))

    return await _change(request, change, "Verification profile saved.",
                         {"document": document})


async def reset_profile(request: Request) -> Response:
    """DELETE /api/v1/profiles/<ns>: back to a shorter namespace's, or the default."""
    await session.form(request)
    profiles = service(request).profiles
    return await _change(request, lambda ns: profiles.delete(ns),
                         "The verification profile follows the default again.")
