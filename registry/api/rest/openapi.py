"""The OpenAPI 3.1 document of ``/api/v1``, served at ``GET /api/v1/openapi.json``, built by
walking the route table.

Every ``/api/v1`` route's handler carries an ``Operation`` (``registry.api.rest.common``):
its request and answer models, problem statuses, summary and parameters. ``build(routes)``
turns them into paths; the schemas are the pydantic models' JSON Schemas, and the security
of each operation is read from the ``guard`` requirement that wraps its handler. There is
no second copy: a route without an ``Operation`` is an error here, and
``tests/api/test_openapi.py`` checks that every route is documented and that the answers
match (schemathesis).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, RootModel
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from registry.access.permissions import PULL
from registry.api.errors import PROBLEM_JSON
from registry.api.guard import ANYONE, PUBLIC
from registry.api.rest.common import Operation, operation
from registry.api.rest.schemas import PATH

PREFIX = "/api/v1"
METHODS = ("get", "put", "post", "delete")

_PROBLEMS = {
    400: "The request is invalid (a parameter, the name, the tag, the digest or the body).",
    401: "Missing or wrong credentials (UNAUTHORIZED; with auth on, or a webhook in "
         "without its token or signature): WWW-Authenticate says how to authenticate.",
    403: "Denied (DENIED): the caller is signed in but lacks the role or token scope this "
         "needs, or the operation is not enabled on this registry.",
    404: "No such repository, manifest or resource.",
    409: "The operation does not apply (e.g. the manifest is not a model, the name exists "
         "already, or there is no signed-in user because auth is off).",
    413: "The request body is too large.",
    429: "Too many requests (TOOMANYREQUESTS): over the rate limit or the open upload "
         "sessions per client; Retry-After says when to try again.",
}
# Headers a Problem response carries (required: the server always sends them).
_PROBLEM_HEADERS = {
    401: {"WWW-Authenticate": {
        "description": "The challenge, e.g. `Basic realm=\"assay\"`.", "required": True,
        "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait.", "required": True,
                          "schema": {"type": "string"}}},
}
PROBLEM = {
    "type": "object", "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"},
                   "code": {"type": "string",
                            "description": "The OCI error code of the same error."}},
}

# The document's default security is a signed-in caller; what anonymous callers may reach
# too (listings, pulls when anonymous pull is on) is optional, public routes have none.
SECURITY = [{"basicAuth": []}, {"bearerAuth": []}]
OPTIONAL_AUTH = [{}, *SECURITY]
_SECURITY_BY_GUARD = {PUBLIC: [], ANYONE: OPTIONAL_AUTH, ("repo", PULL): OPTIONAL_AUTH}

SECURITY_SCHEMES = {
    "basicAuth": {"type": "http", "scheme": "basic",
                  "description": "`user:password`, or `user:<personal access token>`."},
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "A personal access token (POST /api/v1/tokens)."},
}
HEADERS = {
    "Link": {"description": 'The next page: `<url>; rel="next"` (absent on the last page).',
             "schema": {"type": "string"}},
}

DESCRIPTION = (
    "Browse repositories, tags and model cards; verification, readiness-gate policies, "
    "webhooks, users, tokens, namespace roles and the audit log. Errors are RFC 9457 "
    "problem details (application/problem+json). The OCI distribution API lives under "
    "/v2/ and is not described here.\n\n"
    "Authentication (when the registry runs with auth on, ASSAY_AUTH=1): send "
    "`Authorization: Basic base64(user:password)`, `Basic base64(user:<personal access "
    "token>)`, or `Bearer <personal access token>` (create one with POST /api/v1/tokens "
    "or `assay token create`). Without valid credentials an operation that needs them "
    "answers 401 with `WWW-Authenticate: Basic realm=\"assay\"`; a signed-in caller "
    "without the role it needs gets 403 DENIED. Listings and pulls are open to anonymous "
    "callers (only what they may pull; anonymous pull per namespace or registry-wide). "
    "With auth off every operation is open and there is no signed-in user: GET "
    "/api/v1/me answers {\"name\": null, \"auth\": false} and your own tokens and keys "
    "(/api/v1/tokens, /api/v1/keys) answer 409. With a rate limit on, any operation may "
    "answer 429 TOOMANYREQUESTS with Retry-After.")

_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def handlers(routes: list[BaseRoute]) -> Iterator[tuple[str, str, Any]]:
    """``(OpenAPI path, method, handler)`` of every route under ``/api/v1`` (HEAD, which
    Starlette adds to every GET, left out)."""
    for mount in routes:
        if not (isinstance(mount, Mount) and mount.path == PREFIX):
            continue
        for route in mount.routes:
            if not isinstance(route, Route):
                raise TypeError(f"not a Route under {PREFIX}: {route!r}")
            path = PREFIX + _CONVERTER.sub(r"{\1}", route.path)
            by_method = getattr(route.endpoint, "handlers", {})
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield path, method.lower(), by_method.get(method, route.endpoint)


def duplicates(routes: list[BaseRoute]) -> list[str]:
    """Operations served by more than one route (a test keeps this empty)."""
    seen: set[tuple[str, str]] = set()
    twice = []
    for path, method, _handler in handlers(routes):
        if (path, method) in seen:
            twice.append(f"{method.upper()} {path}")
        seen.add((path, method))
    return twice


def _operation_of(path: str, method: str, handler) -> Operation:
    op = getattr(handler, "operation", None)
    if op is None:
        raise TypeError(f"{method.upper()} {path}: the handler declares no @operation")
    return op


def _parameters(path: str, op: Operation) -> list[dict]:
    params = []
    for name in re.findall(r"\{(\w+)\}", path):
        param = op.params.get(name) or PATH.get(name)
        if param is None:
            raise TypeError(f"{path}: no description of the path parameter {name!r}")
        params.append(param)
    return params + [p for p in op.params.values() if p["in"] != "path"]


def _problems(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/Problem{s}"} for s in statuses}


def _responses(path: str, op: Operation, security: list) -> dict:
    answer: dict[str, Any] = {"description": op.answer_text, "content": {
        "application/json": {"schema": _ref(op.answer)}}}
    if op.headers:
        answer["headers"] = op.headers
    if op.links:
        answer["links"] = op.links
    # Auth and rate limits are registry-wide: every operation may meet them.
    shared = (429,) if security == [] else (401, 403, 429)
    # A path parameter the router cannot match (a newline in a name: Starlette's
    # patterns stop at one) is the router's 404, whatever the operation raises itself.
    if "{" in path:
        shared = (404, *shared)
    responses = {str(op.status): answer, **_problems(*op.problems, *shared)}
    return dict(sorted(responses.items()))


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _describe(path: str, op: Operation, handler) -> dict:
    security = _SECURITY_BY_GUARD.get(getattr(handler, "requirement", None))
    doc: dict[str, Any] = {"operationId": op.id, "tags": [op.tag], "summary": op.summary}
    if op.description:
        doc["description"] = op.description
    if security is not None:
        doc["security"] = security
    params = _parameters(path, op)
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": op.body_required, "content": {
            "application/json": {"schema": _ref(op.body)}}}
    doc["responses"] = _responses(path, op, security if security is not None else SECURITY)
    return doc


def _strip_titles(node):
    """pydantic titles every schema after its class or field name: noise in a document
    whose schemas are named by their keys (a property *called* title is kept)."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def schemas(models: set[type[BaseModel]]) -> dict[str, dict]:
    """The JSON Schemas of ``models`` and of every model they refer to, by class name."""
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema([(m, "validation") for m in ordered],
                                ref_template="#/components/schemas/{model}")
    found = _strip_titles(top.get("$defs", {}))
    names = [m.__name__ for m in ordered]
    if len(set(names)) != len(names):
        raise TypeError(f"two schema models share a name: {sorted(names)}")
    return {"Problem": PROBLEM, **dict(sorted(found.items()))}


def build(routes: list[BaseRoute]) -> dict:
    paths: dict[str, dict] = {}
    models: set[type[BaseModel]] = set()
    for path, method, handler in handlers(routes):
        op = _operation_of(path, method, handler)
        paths.setdefault(path, {})[method] = _describe(path, op, handler)
        models.update(m for m in (op.answer, op.body) if m is not None)
    return {
        "openapi": "3.1.0",
        "info": {"title": "assay REST API", "version": "1", "description": DESCRIPTION},
        "security": SECURITY,
        "paths": {p: dict(sorted(paths[p].items(), key=lambda kv: METHODS.index(kv[0])))
                  for p in sorted(paths)},
        "components": {
            "schemas": schemas(models),
            "responses": {
                f"Problem{status}": {
                    "description": text,
                    **({"headers": _PROBLEM_HEADERS[status]}
                       if status in _PROBLEM_HEADERS else {}),
                    "content": {PROBLEM_JSON: {"schema": {
                        "$ref": "#/components/schemas/Problem"}}}}
                for status, text in _PROBLEMS.items()},
            "securitySchemes": SECURITY_SCHEMES,
            "headers": HEADERS,
        },
    }


class OpenAPIDocument(RootModel[dict[str, Any]]):
    """This document."""


@operation("getOpenAPI", "meta", "This document", OpenAPIDocument)
async def document(request: Request) -> JSONResponse:
    # Built once per app (a tenth of a second of schema generation), off the event loop.
    state = request.app.state
    if getattr(state, "openapi_document", None) is None:
        state.openapi_document = await run_in_threadpool(build, request.app.routes)
    return JSONResponse(state.openapi_document)
