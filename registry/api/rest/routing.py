"""One route per path with several methods.

Starlette matches routes in order, and a path served by several ``Route``s answers a
wrong method with the *first* route's ``Allow`` header (``OPTIONS /api/v1/policies/x``
said ``GET, HEAD`` although PUT and DELETE exist). ``route(path, GET=f, PUT=g)`` is one
``Route`` whose endpoint dispatches on the method, so ``Allow`` lists them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


def route(path: str, **handlers: Handler) -> Route:
    by_method = dict(handlers)
    if "GET" in by_method:
        by_method.setdefault("HEAD", by_method["GET"])

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method](request)

    dispatch.__name__ = "_".join(h.__name__ for h in handlers.values())
    dispatch.handlers = by_method  # per method (the permission-matrix test reads them)
    return Route(path, dispatch, methods=list(by_method))
