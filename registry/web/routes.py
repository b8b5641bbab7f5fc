"""The web interface's route table (see the package docstring for what each serves).

``routes`` go before the Hub API's catch-all ``/<repo>/resolve/...``; ``repository_routes``
(a repository's own pages, ``/<repo>...``) go after every other route of the app.
"""

from __future__ import annotations

from starlette.routing import Route

from registry.api.guard import ANYONE, PUBLIC
from registry.web import account, browse, model
from registry.web.render import static
from registry.web.session import page

anyone, public = page(ANYONE), page(PUBLIC)

routes = [
    Route("/", anyone(browse.repositories), methods=["GET"]),
    Route("/-/sign-in", public(account.sign_in_form), methods=["GET"]),
    Route("/-/sign-in", public(account.sign_in), methods=["POST"]),
    Route("/-/sign-out", public(account.sign_out), methods=["POST"]),
    Route("/-/static/{hash}/{file}", public(static), methods=["GET"]),
    # ---- models and comparison (registry/web/models.py, compare.py)
    # ---- administration (registry/web/admin*.py)
]

# ---- a repository's pages (registry/web/model.py)
# The longer paths first: {name:path} would otherwise swallow "/-/tags/x". The needs are
# REST's for the same reads and changes (registry/api/rest/__init__.py).
_R = "/{name:path}/-"
_pull = page(model.NEED_PULL)
repository_routes: list[Route] = [
    Route(_R + "/manifests/{reference}/status", _pull(model.status), methods=["GET"]),
    Route(_R + "/manifests/{reference}/verify", page(model.NEED_PUSH)(model.verify),
          methods=["POST"]),
    Route(_R + "/manifests/{reference}/override",
          page(model.NEED_ADMIN)(model.override), methods=["POST"]),
    Route(_R + "/tags/{reference}", _pull(model.model_by_tag), methods=["GET"]),
    Route(_R + "/manifests/{reference}", _pull(model.model_by_digest), methods=["GET"]),
    Route("/{name:path}", _pull(model.repository), methods=["GET"]),
]
