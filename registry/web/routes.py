"""The web interface's route table (see the package docstring for what each serves).

``routes`` go before the Hub API's catch-all ``/<repo>/resolve/...``; ``repository_routes``
(a repository's own pages, ``/<repo>...``) go after every other route of the app.
"""

from __future__ import annotations

from starlette.routing import Route

from registry.api.guard import ANYONE, PUBLIC
from registry.web import account, browse
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
repository_routes: list[Route] = []
