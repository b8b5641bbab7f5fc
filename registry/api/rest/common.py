"""What every REST resource shares: the ``Operation`` each handler declares, reading and
validating JSON bodies, and integer path ids.

A handler is decorated with ``@operation(...)``: its OpenAPI operation id, summary, the
pydantic model of its request body (``body``) and of its answer (``answer``), and the
problem statuses it raises. ``registry.api.rest.openapi`` builds the document by walking
the route table and reading these, so what a handler validates and what the document says
come from the same model. The security requirement is not declared here: the document reads
it from the ``guard`` that wraps the handler.

Invariants: a body that is not a JSON object is ``RequestInvalid`` ("... not JSON ...");
one that fails its model is ``RequestInvalid`` with one line naming the first bad field;
nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from registry import jsontext
from registry.api.oci.base import read_limited
from registry.digests import check_name
from registry.errors import BodyTooLarge, RequestInvalid

MAX_JSON_BODY = 1024 * 1024
Model = TypeVar("Model", bound=BaseModel)
H = TypeVar("H", bound=Callable)


@dataclass(frozen=True)
class Operation:
    """One documented operation. ``params`` maps a path parameter's name to its OpenAPI
    parameter object where the route's own (``registry.api.rest.schemas.PATH``) does not
    fit, and lists query parameters under their names too."""

    id: str
    tag: str
    summary: str
    answer: type[BaseModel]
    status: int = 200
    answer_text: str = "OK"
    problems: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    description: str | None = None
    params: dict[str, dict] = field(default_factory=dict)
    headers: dict[str, Any] | None = None
    links: dict[str, Any] | None = None


def operation(id: str, tag: str, summary: str, answer: type[BaseModel], **more
              ) -> Callable[[H], H]:
    """Mark a handler with its ``Operation`` (kept by ``guard``, which wraps it)."""
    op = Operation(id, tag, summary, answer, **more)

    def mark(handler: H) -> H:
        handler.operation = op
        return handler

    return mark


def _too_large(_declared: int | None) -> BodyTooLarge:
    return BodyTooLarge(f"a JSON request body may be at most {MAX_JSON_BODY} bytes")


async def json_body(request: Request) -> dict:
    """The request's JSON object (``{}`` when empty), read up to ``MAX_JSON_BODY`` and
    parsed by ``registry.jsontext.loads``; anything else is ``RequestInvalid``."""
    raw = await read_limited(request, MAX_JSON_BODY, _too_large)
    try:
        body = jsontext.loads(raw or b"{}")
    except ValueError as exc:
        raise RequestInvalid(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestInvalid("the request body must be a JSON object")
    return body


async def read_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON object validated by ``model`` (``json_body``, then pydantic)."""
    return validate(model, await json_body(request))


def validate(model: type[Model], body: dict) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestInvalid(problem_line(model, exc)) from None


def problem_line(model: type[BaseModel], exc: ValidationError) -> str:
    """One line for the first error: unknown fields are listed together (with the fields
    the body may have); any other error names its field and says what it must be."""
    errors = exc.errors(include_url=False)
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return (f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; the body may "
                f"have {', '.join(sorted(model.model_fields))}")
    # Bodies are flat: a location is the field and list indices. The other parts name a
    # union's members (int | float), which fail one after the other: the last is the most
    # general ("a valid number" rather than "a valid integer").
    def where(error) -> str:
        loc = error["loc"]
        return ".".join(str(p) for p in loc[:1] + tuple(p for p in loc[1:] if isinstance(p, int)))

    first = where(errors[0])
    last = [e for e in errors if where(e) == first][-1]
    message = f'"{first or "the body"}": {last["msg"]}'
    if last["type"] == "literal_error":  # one of a few names: say which one was sent
        message += f", not {repr(last['input'])[:80]}"
    return message


def path_id(request: Request, key: str = "id") -> int:
    return int(request.path_params[key])


def namespace_param(request: Request) -> str:
    """The ``namespace`` path parameter of a per-namespace setting: ``_`` is "" (every
    repository); anything else must be a repository name (400 NAME_INVALID otherwise)."""
    ns = request.path_params["namespace"].strip("/")
    if ns == "_":
        return ""
    return check_name(ns) if ns else ns
