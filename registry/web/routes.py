"""The web interface's route table (see the package docstring for what each serves).

``routes`` go before the Hub API's catch-all ``/<repo>/resolve/...``; ``repository_routes``
(a repository's own pages, ``/<repo>...``) go after every other route of the app.
"""

from __future__ import annotations

from starlette.routing import Match, Route

from registry.api.guard import ANYONE, PUBLIC
from registry.web import (
    account,
    admin,
    admin_access,
    admin_mirrors,
    admin_namespaces,
    admin_ops,
    browse,
    compare,
    model,
    models,
)
from registry.web.render import static
from registry.web.session import page

anyone, public = page(ANYONE), page(PUBLIC)
_site, _user = page(admin.NEED_SITE), page(admin.NEED_USER)
_account, _ns = page(admin.NEED_ACCOUNT), page(admin.NEED_NAMESPACE)
_A, _U, _N = "/-/admin", "/-/admin/users/{user}", "/-/admin/namespaces/{namespace}"
_W, _D = "/-/admin/webhooks/{id:int}", "/-/admin/webhooks/{id:int}/deliveries/{delivery_id:int}"

routes = [
    Route("/", anyone(browse.repositories), methods=["GET"]),
    Route("/-/sign-in", public(account.sign_in_form), methods=["GET"]),
    Route("/-/sign-in", public(account.sign_in), methods=["POST"]),
    Route("/-/sign-out", public(account.sign_out), methods=["POST"]),
    Route("/-/static/{hash}/{file}", public(static), methods=["GET"]),
    # ---- models and comparison (registry/web/models.py, compare.py)
    Route("/-/models", anyone(models.models), methods=["GET"]),
    Route("/-/compare", anyone(compare.compare), methods=["GET"]),
    # ---- administration (registry/web/admin*.py)
    Route(_A, _user(admin.index), methods=["GET"]),
    Route(_A + "/users", _site(admin_access.users_page), methods=["GET"]),
    Route(_A + "/users", _site(admin_access.add_user), methods=["POST"]),
    Route(_U, _site(admin_access.user_page), methods=["GET"]),
    Route(_U + "/admin", _site(admin_access.set_admin), methods=["POST"]),
    Route(_U + "/password", _site(admin_access.set_password), methods=["POST"]),
    Route(_U + "/remove", _site(admin_access.remove_user), methods=["POST"]),
    Route(_U + "/tokens", _site(admin_access.create_user_token), methods=["POST"]),
    Route(_U + "/tokens/{id:int}/revoke", _site(admin_access.revoke_user_token),
          methods=["POST"]),
    Route(_A + "/tokens", _user(admin_access.tokens_page), methods=["GET"]),
    Route(_A + "/tokens", _account(admin_access.create_token), methods=["POST"]),
    Route(_A + "/tokens/{id:int}/revoke", _account(admin_access.revoke_token),
          methods=["POST"]),
    Route(_A + "/namespaces", _user(admin_namespaces.namespaces_page), methods=["GET"]),
    Route(_N, _ns(admin_namespaces.namespace_page), methods=["GET"]),
    Route(_N + "/members", _ns(admin_namespaces.grant), methods=["POST"]),
    Route(_N + "/members/{user}/remove", _ns(admin_namespaces.revoke), methods=["POST"]),
    Route(_N + "/anonymous", _ns(admin_namespaces.anonymous), methods=["POST"]),
    Route(_N + "/quota", _ns(admin_namespaces.quota), methods=["POST"]),
    Route(_N + "/retention", _ns(admin_namespaces.retention), methods=["POST"]),
    Route(_N + "/policy", _ns(admin_namespaces.policy), methods=["POST"]),
    Route(_N + "/policy/reset", _ns(admin_namespaces.reset_policy), methods=["POST"]),
    Route(_N + "/profile", _ns(admin_namespaces.profile), methods=["POST"]),
    Route(_N + "/profile/reset", _ns(admin_namespaces.reset_profile), methods=["POST"]),
    Route(_A + "/webhooks", _site(admin_ops.webhooks_page), methods=["GET"]),
    Route(_A + "/webhooks", _site(admin_ops.create_webhook), methods=["POST"]),
    Route(_W, _site(admin_ops.webhook_page), methods=["GET"]),
    Route(_W + "/delete", _site(admin_ops.delete_webhook), methods=["POST"]),
    Route(_D, _site(admin_ops.delivery_page), methods=["GET"]),
    Route(_D + "/redeliver", _site(admin_ops.redeliver), methods=["POST"]),
    Route(_A + "/mirrors", _site(admin_mirrors.mirrors_page), methods=["GET"]),
    Route(_A + "/mirrors", _site(admin_mirrors.set_mirror), methods=["POST"]),
    Route(_A + "/mirrors/{namespace}/delete", _site(admin_mirrors.delete_mirror),
          methods=["POST"]),
    Route(_A + "/workers", _site(admin_ops.workers_page), methods=["GET"]),
    Route(_A + "/audit", _site(admin_ops.audit_page), methods=["GET"]),
]

class RepositoryRoute(Route):
    """A repository page's route, which never matches under the APIs' own prefixes: an
    unknown ``/v2/...`` or ``/api/...`` path gets its API's 404 (an OCI error, a problem
    document), as clients expect, not a page. (A repository whose name starts with
    ``v2/``, ``api/`` or ``auth/`` has no web page; its REST and OCI routes still work.)"""

    API_PREFIXES = ("/v2/", "/api/", "/auth/")

    def matches(self, scope):
        if scope["type"] == "http" and scope["path"].startswith(self.API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


# ---- a repository's pages (registry/web/model.py)
# The longer paths first: {name:path} would otherwise swallow "/-/tags/x". The needs are
# REST's for the same reads and changes (registry/api/rest/__init__.py).
_R = "/{name:path}/-"
_pull = page(model.NEED_PULL)
repository_routes: list[Route] = [
    RepositoryRoute(_R + "/manifests/{reference}/status", _pull(model.status),
                    methods=["GET"]),
    RepositoryRoute(_R + "/manifests/{reference}/verify",
                    page(model.NEED_PUSH)(model.verify), methods=["POST"]),
    RepositoryRoute(_R + "/manifests/{reference}/override",
                    page(model.NEED_ADMIN)(model.override), methods=["POST"]),
    RepositoryRoute(_R + "/tags/{reference}", _pull(model.model_by_tag), methods=["GET"]),
    RepositoryRoute(_R + "/manifests/{reference}", _pull(model.model_by_digest),
                    methods=["GET"]),
    RepositoryRoute("/{name:path}", _pull(model.repository), methods=["GET"]),
]
