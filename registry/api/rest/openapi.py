"""The OpenAPI 3.1 document of ``/api/v1``, served at ``GET /api/v1/openapi.json``.

The document is built from one section per REST module (``SECTIONS``): each is a
function returning ``{path: {method: operation}}``, merged at build time over the shared
``COMPONENTS`` (schemas, parameters, responses). To document a new endpoint, write its
section (here, or as a function in the endpoint's own module) and add it to
``SECTIONS``; ``tests/api/test_openapi.py`` fails for any ``/api/v1`` route that is not
documented, and validates the document and the answers against it (schemathesis).

Helpers for sections: ``ref("Schema")``, ``ok(schema)``, ``problems(400, 404)``,
``json_body(schema)``, ``NAME`` / ``TAG`` / ``DIGEST`` path parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.errors import PROBLEM_JSON
from registry.services.browse import (
    DEFAULT_PAGE,
    FORMATS,
    MAX_PAGE,
    REPOSITORY_SORTS,
    STATUSES,
    TAG_SORTS,
)

Section = Callable[[], dict[str, dict[str, Any]]]

# registry.services.events.ACTIONS (not imported: the document needs no service module).
ACTIONS = ("push", "delete", "tag", "verification.started", "verification.succeeded",
           "verification.failed")

# The OCI distribution grammar (registry.digests): lowercase path components.
NAME_PATTERN = (r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
                r"(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
# A user name, and a namespace in /api/v1/namespaces: one such component
# (registry.services.identities).
COMPONENT_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$"
USER_PATTERN = COMPONENT_PATTERN
SCOPE_PATTERN = r"^(?:pull|push|delete|admin)(?::[\s\S]+)?$"
TAG_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"
DIGEST_PATTERN = r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"
EXAMPLE_DIGEST = "sha256:" + "0" * 64


# ---- helpers for sections ------------------------------------------------------------------

def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def ok(schema: dict, description: str = "OK", status: int = 200,
       headers: dict | None = None, links: dict | None = None) -> dict:
    response: dict = {"description": description,
                      "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    if links:
        response["links"] = links
    return {str(status): response}


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


def problems(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/Problem{s}"} for s in statuses}


def json_body(schema: dict, required: bool = False) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


# Security requirements. The document's default (``SECURITY``) is a signed-in caller;
# operations open to anonymous callers too (listings, pulls when anonymous pull is on)
# say ``security: OPTIONAL_AUTH``, public ones ``security: PUBLIC`` (no 401/403 added).
SECURITY = [{"basicAuth": []}, {"bearerAuth": []}]
OPTIONAL_AUTH = [{}, *SECURITY]
PUBLIC: list = []


def _path(name: str, schema: dict, description: str, example: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema, "example": example}


NAME = _path("name", {"type": "string", "pattern": NAME_PATTERN, "maxLength": 255},
             "Repository name; it may contain '/' (e.g. team/gemma3).", "library/tiny")
TAG = _path("reference", {"type": "string", "pattern": TAG_PATTERN}, "A tag.", "latest")
DIGEST = _path("reference", {"type": "string", "pattern": DIGEST_PATTERN},
               "A manifest digest.", EXAMPLE_DIGEST)


def _query(name: str, schema: dict, description: str, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


def _list_query(name: str, items: dict, description: str) -> dict:
    return _query(name, {"type": "array", "items": items, "minItems": 1}, description
                  + " Comma-separated: any of the values matches.", style="form",
                  explode=False)


# ---- shared components -------------------------------------------------------------------

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_NUMBER = {"type": "number"}
_TIME = {"type": "string", "format": "date-time"}
_STATUS = {"type": "string", "enum": list(STATUSES)}
_ROLE = {"type": "string", "enum": ["read", "write", "admin"]}
_VIA = ("password", "token", "bearer", "key")

SCHEMAS: dict[str, dict] = {
    "Problem": {
        "type": "object", "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {"type": _STRING, "title": _STRING, "status": _INT, "detail": _STRING,
                       "code": {"type": "string",
                                "description": "The OCI error code of the same error."}},
    },
    "Repository": {
        "type": "object",
        "required": ["name", "tag_count", "manifest_count", "model_count", "size", "created",
                     "updated", "href"],
        "properties": {
            "name": _STRING, "tag_count": _INT, "manifest_count": _INT,
            "model_count": {"type": "integer", "description": "Manifests that are models."},
            "size": {"type": "integer",
                     "description": "Bytes of every blob its manifests refer to, once."},
            "created": _TIME,
            "updated": {**_TIME, "description": "Its newest tag move or manifest push."},
            "href": {"type": "string", "description": "Its tags."},
        },
    },
    "RepositoryPage": {
        "type": "object", "required": ["repositories", "next"],
        "properties": {"repositories": {"type": "array", "items": ref("Repository")},
                       "next": nullable({"type": "string",
                                         "description": "The next page (as in Link)."})},
    },
    "TagRow": {
        "type": "object",
        "description": "A tag, the manifest it points at now, its model card's columns and "
                       "its latest verification's figures (null: unknown or not a model).",
        "required": ["repository", "tag", "digest", "mediaType", "artifactType", "status",
                     "size", "updated", "format", "architecture", "parameter_count",
                     "quantization", "context_length", "verdict", "backend", "tokens_per_s",
                     "peak_rss_bytes", "verified_at", "href"],
        "properties": {
            "repository": _STRING, "tag": _STRING, "digest": _STRING, "mediaType": _STRING,
            "artifactType": nullable(_STRING), "status": nullable(_STATUS),
            "size": {"type": "integer", "description": "Bytes of the manifest's blobs."},
            "updated": {**_TIME, "description": "When the tag last moved."},
            "format": nullable({"type": "string", "enum": list(FORMATS)}),
            "architecture": nullable(_STRING), "parameter_count": nullable(_INT),
            "quantization": nullable(_STRING), "context_length": nullable(_INT),
            "verdict": nullable({"type": "string", "enum": ["passed", "failed"]}),
            "backend": nullable(_STRING),
            "tokens_per_s": nullable({"type": "number",
                                      "description": "Generation tokens/s."}),
            "peak_rss_bytes": nullable(_INT), "verified_at": nullable(_TIME),
            "href": {"type": "string", "description": "Its full model card."},
        },
    },
    "TagPage": {
        "type": "object", "required": ["repository", "tags", "next"],
        "properties": {"repository": _STRING,
                       "tags": {"type": "array", "items": ref("TagRow")},
                       "next": nullable(_STRING)},
    },
    "ModelPage": {
        "type": "object", "required": ["models", "next"],
        "properties": {"models": {"type": "array", "items": ref("TagRow")},
                       "next": nullable(_STRING)},
    },
    "ModelCard": {
        "type": "object", "required": ["format"],
        "properties": {
            "format": {"type": "string", "enum": list(FORMATS)},
            "architecture": nullable(_STRING), "parameter_count": nullable(_INT),
            "parameter_label": nullable(_STRING), "quantization": nullable(_STRING),
            "context_length": nullable(_INT), "embedding_length": nullable(_INT),
            "chat_template": nullable({"type": "boolean"}),
            "tokenizer_model": nullable(_STRING),
            "dtypes": nullable({"type": "array", "items": _STRING}),
            "quantization_bits": nullable(_INT), "quantization_group_size": nullable(_INT),
            "error": nullable({"type": "string",
                               "description": "Why the weights could not be read."}),
        },
    },
    "Verification": {
        "type": "object",
        "required": ["id", "verdict", "reason", "backend", "backend_version", "hardware",
                     "figures", "network_isolated", "sandbox", "log_tail", "referrer",
                     "worker", "started_at", "finished_at"],
        "properties": {
            "id": _INT, "verdict": {"type": "string", "enum": ["passed", "failed"]},
            "reason": nullable(_STRING), "backend": nullable(_STRING),
            "backend_version": nullable(_STRING), "hardware": nullable({"type": "object"}),
            "figures": {"type": "object", "properties": {
                "load_s": nullable(_NUMBER), "prompt_tokens": nullable(_INT),
                "prompt_tps": nullable(_NUMBER), "generation_tps": nullable(_NUMBER),
                "ttft_s": nullable(_NUMBER), "tokens_generated": nullable(_INT),
                "peak_rss_bytes": nullable(_INT), "output": nullable(_STRING),
                "output_sha256": nullable(_STRING), "wall_s": nullable(_NUMBER)}},
            "network_isolated": nullable({
                "type": "boolean",
                "description": "Whether the model ran without network access (a network "
                               "namespace of its own); null: recorded before this was."}),
            "sandbox": nullable({
                "type": "string",
                "description": "How the model was isolated, or why it could not be "
                               "(\"not isolated: ...\"); null: recorded before this was."}),
            "log_tail": nullable({
                "type": "string",
                "description": "The end of the backend's log (about 4 KiB): errors, warnings "
                               "and the load summary, without per-tensor detail."}),
            "referrer": nullable({"type": "string",
                                  "description": "Digest of the OCI artifact carrying it."}),
            "worker": nullable(_STRING), "started_at": nullable(_TIME),
            "finished_at": nullable(_TIME),
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "status", "attempts", "max_attempts", "last_error", "worker"],
        "properties": {"id": _INT,
                       "status": {"type": "string",
                                  "enum": ["queued", "running", "done", "failed"]},
                       "attempts": _INT, "max_attempts": _INT,
                       "last_error": nullable(_STRING), "worker": nullable(_STRING)},
    },
    "Override": {
        "type": "object", "required": ["by", "reason", "at"],
        "properties": {"by": _STRING, "reason": _STRING, "at": nullable(_TIME)},
    },
    "ManifestDetail": {
        "type": "object",
        "description": "One manifest, its sizes, model card, status and verification.",
        "required": ["repository", "digest", "mediaType", "artifactType", "size", "model",
                     "status", "reason", "status_changed_at", "override", "verification",
                     "job"],
        "properties": {
            "repository": _STRING,
            "tag": {"type": "string", "description": "Only when asked by tag."},
            "digest": _STRING, "mediaType": _STRING, "artifactType": nullable(_STRING),
            "size": {"type": "object", "required": ["logical", "unique"],
                     "properties": {"logical": _INT, "unique": {
                         "type": "integer",
                         "description": "Bytes no other manifest refers to."}}},
            "model": nullable(ref("ModelCard")),
            "status": nullable(_STATUS), "reason": nullable(_STRING),
            "status_changed_at": nullable(_TIME),
            "override": nullable(ref("Override")),
            "verification": nullable(ref("Verification")),
            "job": nullable(ref("Job")),
            "served": nullable({"type": "string",
                                "description": "By tag only: the digest a pull gets now "
                                               "(null: nothing passes the gate)."}),
        },
    },
    "VerificationList": {
        "type": "object", "required": ["verifications"],
        "properties": {"verifications": {"type": "array", "items": ref("Verification")}},
    },
    "VerifyAccepted": {
        "type": "object", "required": ["job", "digest"],
        "properties": {"job": _INT, "digest": _STRING},
    },
    "OverrideRequest": {
        "type": "object", "required": ["reason"],
        "properties": {"reason": {"type": "string", "minLength": 1, "pattern": r"\S"},
                       "by": {"type": "string", "minLength": 1, "pattern": r"\S",
                              "default": "admin"}},
    },
    "OverrideResult": {
        "type": "object", "required": ["digest", "by", "reason"],
        "properties": {"digest": _STRING, "by": _STRING, "reason": _STRING},
    },
    "Policy": {
        "type": "object", "required": ["namespace", "gate", "min_generation_tps"],
        "properties": {"namespace": nullable({"type": "string",
                                              "description": "null: the defaults."}),
                       "gate": {"type": "boolean"},
                       "min_generation_tps": nullable(_NUMBER)},
    },
    "PolicyRequest": {
        "type": "object",
        "properties": {"gate": {"type": "boolean", "default": True},
                       "min_generation_tps": nullable({"type": "number", "minimum": 0})},
    },
    "PolicyList": {
        "type": "object", "required": ["policies", "default"],
        "properties": {"policies": {"type": "array", "items": ref("Policy")},
                       "default": ref("Policy")},
    },
    "PolicyDeleted": {
        "type": "object", "required": ["deleted"], "properties": {"deleted": _STRING},
    },
    "WebhookRequest": {
        "type": "object", "required": ["url", "secret"], "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "maxLength": 2048, "pattern": "^https?://[^\\s/]+",
                    "description": "Where events are POSTed (http:// or https://)."},
            "secret": {"type": "string", "minLength": 1, "maxLength": 255,
                       "description": "Key of the X-Assay-Signature HMAC-SHA256."},
            "events": nullable({"type": "array",
                                "items": {"type": "string", "enum": list(ACTIONS)},
                                "description": "Actions to send; absent, null or [] means "
                                               "all."}),
            "repository": nullable({"type": "string", "maxLength": 255,
                                    "description": "fnmatch glob over repository names."}),
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "events", "repository", "active", "secret", "created_at",
                     "deliveries"],
        "properties": {
            "id": _INT, "url": _STRING,
            "events": {"type": "array", "items": {"type": "string", "enum": list(ACTIONS)}},
            "repository": nullable(_STRING), "active": {"type": "boolean"},
            "secret": {"type": "string", "description": "Masked."},
            "created_at": nullable(_TIME),
            "deliveries": {"type": "object", "description": "Counts by delivery status.",
                           "additionalProperties": _INT},
        },
    },
    "WebhookList": {
        "type": "object", "required": ["webhooks"],
        "properties": {"webhooks": {"type": "array", "items": ref("Webhook")}},
    },
    "WebhookDeleted": {
        "type": "object", "required": ["deleted"], "properties": {"deleted": _INT},
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "webhook", "event_id", "action", "status", "attempts",
                     "last_status_code", "last_error", "last_attempt_at", "delivered_at",
                     "created_at", "target"],
        "properties": {
            "id": _INT, "webhook": _INT, "event_id": _STRING, "action": _STRING,
            "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": _INT, "last_status_code": nullable(_INT),
            "last_error": nullable(_STRING), "last_attempt_at": nullable(_TIME),
            "delivered_at": nullable(_TIME), "created_at": nullable(_TIME),
            "target": nullable({"type": "object"}),
            "body": {"type": "string", "description": "The exact JSON sent (one delivery)."},
            "job": {"type": "integer", "description": "The delivery job (redeliver)."},
        },
    },
    "DeliveryList": {
        "type": "object", "required": ["deliveries"],
        "properties": {"deliveries": {"type": "array", "items": ref("Delivery")}},
    },
    "ValidateResult": {
        "type": "object", "required": ["format", "queued", "ignored"],
        "properties": {
            "format": {"type": "string", "description": "How the body was read."},
            "queued": {"type": "array", "items": {"type": "object"}},
            "ignored": {"type": "array", "items": {"type": "object"}},
        },
    },
    "ReferenceVerifications": {
        "type": "object",
        "required": ["reference", "location", "repository", "digest", "status",
                     "verifications"],
        "properties": {
            "reference": _STRING, "location": {"type": "string", "enum": ["local", "remote"]},
            "registry": _STRING, "repository": _STRING, "tag": nullable(_STRING),
            "digest": _STRING, "status": nullable(_STRING), "reason": nullable(_STRING),
            "job": nullable(ref("Job")),
            "verifications": {"type": "array", "items": ref("Verification")},
        },
    },
    "StorageSummary": {
        "type": "object",
        "required": ["logical_bytes", "stored_bytes", "blobs", "manifests"],
        "properties": {
            "logical_bytes": {"type": "integer",
                              "description": "Every manifest's blobs, once per manifest."},
            "stored_bytes": {"type": "integer", "description": "Every stored blob, once."},
            "blobs": _INT, "manifests": _INT},
    },
    # ---- access control (registry.api.rest.accounts, registry.services.identities) -----------
    "Me": {
        "type": "object", "required": ["name", "auth"],
        "description": "With auth off: {\"name\": null, \"auth\": false} and nothing else.",
        "properties": {
            "name": nullable(_STRING),
            "auth": {"type": "boolean", "description": "Whether the registry runs with "
                                                       "authentication on."},
            "admin": {"type": "boolean", "description": "A site admin."},
            "robot": {"type": "boolean"},
            "via": {"type": "string", "enum": list(_VIA),
                    "description": "How the caller authenticated."},
            "roles": {"type": "object", "description": "Namespace -> role (the personal "
                                                       "namespace included).",
                      "additionalProperties": _ROLE},
        },
    },
    "User": {
        "type": "object", "required": ["name", "admin", "robot", "created_at", "disabled"],
        "properties": {"name": _STRING, "admin": {"type": "boolean"},
                       "robot": {"type": "boolean",
                                 "description": "Robots have no password: tokens only."},
                       "created_at": _TIME, "disabled": {"type": "boolean"}},
    },
    "UserDetail": {
        "type": "object",
        "required": ["name", "admin", "robot", "created_at", "disabled", "roles"],
        "properties": {"name": _STRING, "admin": {"type": "boolean"},
                       "robot": {"type": "boolean"}, "created_at": _TIME,
                       "disabled": {"type": "boolean"},
                       "roles": {"type": "object",
                                 "description": "Namespace -> role (a person is admin of "
                                                "the namespace named after them).",
                                 "additionalProperties": _ROLE}},
    },
    "UserList": {
        "type": "object", "required": ["users"],
        "properties": {"users": {"type": "array", "items": ref("User")}},
    },
    "UserRequest": {
        "type": "object", "required": ["name"],
        "description": "A person needs a password; a robot must have none.",
        "properties": {
            "name": {"type": "string", "pattern": USER_PATTERN, "maxLength": 64,
                     "description": "Also the user's personal namespace."},
            "password": nullable({"type": "string", "minLength": 8}),
            "admin": {"type": "boolean", "default": False,
                      "description": "A site admin."},
            "robot": {"type": "boolean", "default": False},
        },
    },
    "UserDeleted": {
        "type": "object", "required": ["deleted"], "properties": {"deleted": _STRING},
    },
    "Token": {
        "type": "object", "description": "A personal access token (never its secret).",
        "required": ["id", "name", "prefix", "scopes", "expires_at", "created_at",
                     "last_used_at", "revoked"],
        "properties": {
            "id": _INT, "name": _STRING,
            "prefix": {"type": "string", "description": "Its first characters, to tell "
                                                        "tokens apart."},
            "scopes": {"type": "array", "items": _STRING},
            "expires_at": nullable(_TIME), "created_at": _TIME,
            "last_used_at": nullable(_TIME), "revoked": {"type": "boolean"},
        },
    },
    "NewToken": {
        "type": "object",
        "required": ["id", "name", "prefix", "scopes", "expires_at", "created_at",
                     "last_used_at", "revoked", "token"],
        "properties": {
            "id": _INT, "name": _STRING, "prefix": _STRING,
            "scopes": {"type": "array", "items": _STRING},
            "expires_at": nullable(_TIME), "created_at": _TIME,
            "last_used_at": nullable(_TIME), "revoked": {"type": "boolean"},
            "token": {"type": "string", "description": "The secret: shown this once. Use "
                                                       "it as a Bearer token or as the "
                                                       "password of Basic."},
        },
    },
    "TokenList": {
        "type": "object", "required": ["tokens"],
        "properties": {"tokens": {"type": "array", "items": ref("Token")}},
    },
    "TokenRequest": {
        "type": "object", "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 128},
            "scopes": nullable({
                "type": "array",
                "items": {"type": "string", "pattern": SCOPE_PATTERN},
                "description": "Actions (pull, push, delete, admin), each optionally "
                               "limited to a namespace glob ('push:team'); absent, null or "
                               "[] means pull and push. A token never allows more than its "
                               "owner may do."}),
            "expires_in_days": nullable({"type": "number", "exclusiveMinimum": 0,
                                         "maximum": 3650,
                                         "description": "Absent or null: never expires."}),
        },
    },
    "TokenRevoked": {
        "type": "object", "required": ["revoked"], "properties": {"revoked": _INT},
    },
    "Key": {
        "type": "object", "required": ["id", "fingerprint", "comment", "created_at"],
        "properties": {"id": _INT,
                       "fingerprint": {"type": "string", "description": "SHA256:..."},
                       "comment": nullable(_STRING), "created_at": _TIME},
    },
    "KeyAdded": {
        "type": "object", "required": ["id", "fingerprint", "comment"],
        "properties": {"id": _INT, "fingerprint": _STRING, "comment": nullable(_STRING)},
    },
    "KeyList": {
        "type": "object", "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": ref("Key")}},
    },
    "KeyRequest": {
        "type": "object", "required": ["public_key"],
        "properties": {"public_key": {
            "type": "string", "minLength": 1,
            "description": "An Ollama public key, `ssh-ed25519 AAAA... [comment]` (the "
                           "contents of ~/.ollama/id_ed25519.pub)."}},
    },
    "KeyDeleted": {
        "type": "object", "required": ["deleted"], "properties": {"deleted": _INT},
    },
    "Namespace": {
        "type": "object", "required": ["name", "anonymous_pull", "quota_bytes", "usage_bytes",
                     "keep_tags", "untagged_days", "members"],
        "properties": {
            "name": _STRING,
            "anonymous_pull": {"type": "boolean",
                               "description": "Anyone may pull from it without signing "
                                              "in."},
            "quota_bytes": nullable({
                "type": "integer", "minimum": 0,
                "description": "Storage quota in bytes; null: unlimited. A push of a blob "
                               "that would take usage_bytes past it is refused (403 "
                               "DENIED)."}),
            "usage_bytes": {"type": "integer", "minimum": 0,
                            "description": "Total size of the distinct blobs linked to "
                                           "the namespace's repositories."},
            "keep_tags": nullable({
                "type": "integer", "minimum": 1,
                "description": "Retention: keep the newest N tags of each repository; "
                               "null: keep all."}),
            "untagged_days": nullable({
                "type": "integer", "minimum": 1,
                "description": "Retention: delete untagged manifests older than D days; "
                               "null: keep them."}),
            "members": {"type": "array", "items": {
                "type": "object", "required": ["user", "role"],
                "properties": {"user": _STRING, "role": _ROLE}}},
        },
    },
    "NamespaceRequest": {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "description": "Fields present change, absent ones stay; null clears quota_bytes, "
                       "keep_tags or untagged_days.",
        "properties": {
            "anonymous_pull": {"type": "boolean"},
            "quota_bytes": nullable({"type": "integer", "minimum": 0,
                                     "maximum": 2**63 - 1}),
            "keep_tags": nullable({"type": "integer", "minimum": 1, "maximum": 2**31 - 1}),
            "untagged_days": nullable({"type": "integer", "minimum": 1, "maximum": 36500}),
        },
    },
    "MemberRequest": {
        "type": "object", "required": ["role"], "properties": {"role": _ROLE},
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "actor", "remote_addr", "action", "target", "detail"],
        "properties": {
            "id": _INT, "at": _TIME,
            "actor": nullable({"type": "string", "description": "null: anonymous (auth "
                                                               "off) or the system."}),
            "remote_addr": nullable(_STRING),
            "action": {"type": "string", "description": "e.g. user.add, token.create, "
                                                       "namespace.grant."},
            "target": _STRING, "detail": {"type": "object"},
        },
    },
    "AuditPage": {
        "type": "object", "required": ["entries"],
        "properties": {"entries": {"type": "array", "items": ref("AuditEntry")}},
    },
}

COMPONENTS: dict[str, Any] = {
    "schemas": SCHEMAS,
    "responses": {
        f"Problem{status}": {"description": text,
                             **({"headers": _PROBLEM_HEADERS[status]}
                                if status in _PROBLEM_HEADERS else {}),
                             "content": {PROBLEM_JSON: {"schema": ref("Problem")}}}
        for status, text in _PROBLEMS.items()
    },
    "securitySchemes": {
        "basicAuth": {"type": "http", "scheme": "basic",
                      "description": "`user:password`, or `user:<personal access token>`."},
        "bearerAuth": {"type": "http", "scheme": "bearer",
                       "description": "A personal access token (POST /api/v1/tokens)."},
    },
    "headers": {
        "Link": {"description": 'The next page: `<url>; rel="next"` (absent on the last page).',
                 "schema": {"type": "string"}},
    },
}


# ---- sections ---------------------------------------------------------------------------

def _paging_params(sorts: tuple[str, ...]) -> list[dict]:
    return [
        _query("n", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                     "default": DEFAULT_PAGE}, "Page size."),
        _query("cursor", {"type": "string", "maxLength": 4096},
               "Opaque; from the previous page's Link header (keep the same sort)."),
        _query("sort", {"type": "string",
                        "enum": [*sorts, *(f"-{s}" for s in sorts)], "default": sorts[0]},
               "Sort key; a leading '-' sorts descending. Unknown values sort last."),
    ]


_TEXT = {"type": "string", "maxLength": 255, "pattern": r"^[^\x00-\x1f]*$"}
_ITEM = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^,\x00-\x1f]+$"}


def _tag_filters(q: str) -> list[dict]:
    return [
        _list_query("status", _STATUS, "Model status of the tagged manifest."),
        _list_query("format", {"type": "string", "enum": list(FORMATS)}, "Weights format."),
        _list_query("backend", _ITEM,
                    "Backend of the latest verification (llama.cpp, mlx); any case."),
        _list_query("architecture", _ITEM, "Model architecture (e.g. llama); any case."),
        _list_query("quantization", _ITEM, "Quantization (e.g. Q4_K_M); any case."),
        _query("min_tokens_per_s", {"type": "number", "minimum": 0},
               "Latest verification generated at least this many tokens/s."),
        _query("max_memory_mb", {"type": "number", "minimum": 0},
               "Latest verification's peak resident memory is at most this many MiB."),
        _query("q", _TEXT, q),
    ]


def _link() -> dict:
    return {"Link": {"$ref": "#/components/headers/Link"}}


def _links(name: str, targets: dict[str, str | None]) -> dict:
    """OpenAPI links from a listing's first row to the operations about it."""
    links = {}
    for operation, reference in targets.items():
        params = {"name": f"$response.body#{name}"}
        if reference is not None:
            params["reference"] = f"$response.body#{reference}"
        links[operation] = {"operationId": operation, "parameters": params}
    return links


def browse_paths() -> dict:
    """``registry.api.rest.browse``."""
    tag_sorts = _paging_params(TAG_SORTS)
    return {
        "/api/v1/repositories": {"get": {
            "operationId": "listRepositories", "tags": ["browse"],
            "security": OPTIONAL_AUTH,
            "summary": "Repositories, searchable by name",
            "parameters": [
                _query("q", _TEXT, "Substring of the name (any case)."),
                _query("prefix", _TEXT, "The name starts with this (e.g. 'team/')."),
                *_paging_params(REPOSITORY_SORTS)],
            "responses": {**ok(ref("RepositoryPage"), headers=_link(), links=_links(
                "/repositories/0/name", {"listTags": None})), **problems(400)},
        }},
        "/api/v1/repositories/{name}/tags": {"get": {
            "operationId": "listTags", "tags": ["browse"],
            "security": OPTIONAL_AUTH,
            "summary": "Tags of a repository with their model card and latest figures",
            "parameters": [NAME, *_tag_filters("Substring of the tag (any case)."),
                           *tag_sorts],
            "responses": {**ok(ref("TagPage"), headers=_link(), links=_links(
                "/repository", {"getTag": "/tags/0/tag", "getManifest": "/tags/0/digest",
                                "listManifestVerifications": "/tags/0/digest",
                                "verifyManifest": "/tags/0/digest",
                                "overrideManifest": "/tags/0/digest"})),
                          **problems(400, 404)},
        }},
        "/api/v1/models": {"get": {
            "operationId": "listModels", "tags": ["browse"],
            "security": OPTIONAL_AUTH,
            "summary": "Tagged models in every repository",
            "description": "One row per tag whose manifest is a model; 'name' sorts by "
                           "repository, then tag.",
            "parameters": [*_tag_filters("Substring of 'repository:tag' (any case)."),
                           *tag_sorts],
            "responses": {**ok(ref("ModelPage"), headers=_link(), links=_links(
                "/models/0/repository", {"getTag": "/models/0/tag",
                                         "getManifest": "/models/0/digest"})),
                          **problems(400)},
        }},
        "/api/v1/openapi.json": {"get": {
            "operationId": "getOpenAPI", "tags": ["meta"], "summary": "This document",
            "security": PUBLIC,
            "responses": ok({"type": "object"}),
        }},
    }


def manifest_paths() -> dict:
    """``registry.api.rest.manifests``."""
    base = "/api/v1/repositories/{name}"
    return {
        base + "/tags/{reference}": {"get": {
            "operationId": "getTag", "tags": ["manifests"],
            "security": OPTIONAL_AUTH,
            "summary": "A tagged manifest: model card, status, latest verification",
            "parameters": [NAME, TAG],
            "responses": {**ok(ref("ManifestDetail")), **problems(400, 404)},
        }},
        base + "/manifests/{reference}": {"get": {
            "operationId": "getManifest", "tags": ["manifests"],
            "security": OPTIONAL_AUTH,
            "summary": "The same, by digest",
            "parameters": [NAME, DIGEST],
            "responses": {**ok(ref("ManifestDetail")), **problems(400, 404)},
        }},
        base + "/tags/{reference}/verify": {"post": {
            "operationId": "verifyTag", "tags": ["verification"],
            "summary": "Queue a (re-)verification of the tagged model",
            "parameters": [NAME, TAG],
            "responses": {**ok(ref("VerifyAccepted"), "Queued", 202),
                          **problems(400, 404, 409)},
        }},
        base + "/manifests/{reference}/verify": {"post": {
            "operationId": "verifyManifest", "tags": ["verification"],
            "summary": "Queue a (re-)verification of a model by digest",
            "parameters": [NAME, DIGEST],
            "responses": {**ok(ref("VerifyAccepted"), "Queued", 202),
                          **problems(400, 404, 409)},
        }},
        base + "/manifests/{reference}/verifications": {"get": {
            "operationId": "listManifestVerifications", "tags": ["verification"],
            "security": OPTIONAL_AUTH,
            "summary": "Every verification run of a manifest, newest first",
            "parameters": [NAME, DIGEST],
            "responses": {**ok(ref("VerificationList")), **problems(400, 404)},
        }},
        base + "/manifests/{reference}/override": {"post": {
            "operationId": "overrideManifest", "tags": ["verification"],
            "summary": "Let a model that is not ready through the readiness gate (recorded)",
            "parameters": [NAME, DIGEST],
            "requestBody": json_body(ref("OverrideRequest"), required=True),
            "responses": {**ok(ref("OverrideResult")), **problems(400, 404, 409)},
        }},
    }


def policy_paths() -> dict:
    """``registry.api.rest.policies``."""
    namespace = _path("namespace", {"type": "string", "maxLength": 255,
                                    "pattern": f"^(?:_|{NAME_PATTERN[1:-1]})$"},
                      "A repository name or a /-prefix of names ('_': every repository).",
                      "team")
    return {
        "/api/v1/policies": {"get": {
            "operationId": "listPolicies", "tags": ["policies"],
            "summary": "Readiness-gate policies per namespace and the defaults",
            "responses": ok(ref("PolicyList")),
        }},
        "/api/v1/policies/{namespace}": {
            "get": {"operationId": "getPolicy", "tags": ["policies"],
                    "summary": "The policy that applies to a name",
                    "parameters": [namespace], "responses": ok(ref("Policy"))},
            "put": {"operationId": "putPolicy", "tags": ["policies"],
                    "summary": "Set a namespace's policy",
                    "parameters": [namespace],
                    "requestBody": json_body(ref("PolicyRequest")),
                    "responses": {**ok(ref("Policy")), **problems(400)}},
            "delete": {"operationId": "deletePolicy", "tags": ["policies"],
                       "summary": "Back to the default",
                       "parameters": [namespace],
                       "responses": {**ok(ref("PolicyDeleted")), **problems(404)}},
        },
    }


def storage_paths() -> dict:
    """``registry.api.rest.storage``."""
    return {"/api/v1/storage": {"get": {
        "operationId": "storageSummary", "tags": ["storage"],
        "summary": "Logical vs. stored bytes (what deduplication saves)",
        "responses": ok(ref("StorageSummary")),
    }}}


def _integer_path(name: str, description: str) -> dict:
    return _path(name, {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                 description, "1")


def webhook_paths() -> dict:
    """``registry.api.rest.webhooks``."""
    wid = _integer_path("id", "Subscription id.")
    did = _integer_path("delivery_id", "Delivery id.")
    base = "/api/v1/webhooks"
    return {
        base: {
            "post": {"operationId": "createWebhook", "tags": ["webhooks"],
                     "summary": "Subscribe a URL to events (signed with the secret)",
                     "requestBody": json_body(ref("WebhookRequest"), required=True),
                     "responses": {
                         **ok(ref("Webhook"), "Subscribed", 201, headers={"Location": {
                             "description": "The subscription.",
                             "schema": {"type": "string"}}}),
                         **problems(400)}},
            "get": {"operationId": "listWebhooks", "tags": ["webhooks"],
                    "summary": "Every subscription", "responses": ok(ref("WebhookList"))},
        },
        base + "/{id}": {
            "get": {"operationId": "getWebhook", "tags": ["webhooks"],
                    "summary": "One subscription, with delivery counts", "parameters": [wid],
                    "responses": {**ok(ref("Webhook")), **problems(404)}},
            "delete": {"operationId": "deleteWebhook", "tags": ["webhooks"],
                       "summary": "Unsubscribe (its delivery log goes with it)",
                       "parameters": [wid],
                       "responses": {**ok(ref("WebhookDeleted")), **problems(404)}},
        },
        base + "/{id}/deliveries": {"get": {
            "operationId": "listDeliveries", "tags": ["webhooks"],
            "summary": "The delivery log, newest first",
            "parameters": [wid,
                           _query("n", {"type": "integer", "minimum": 0},
                                  "Page size (more than 100 is taken as 100)."),
                           _query("last", {"type": "integer", "minimum": 0},
                                  "Deliveries older than this id.")],
            "responses": {**ok(ref("DeliveryList"), headers=_link()), **problems(400, 404)},
        }},
        base + "/{id}/deliveries/{delivery_id}": {"get": {
            "operationId": "getDelivery", "tags": ["webhooks"],
            "summary": "One delivery, with the body sent", "parameters": [wid, did],
            "responses": {**ok(ref("Delivery")), **problems(404)},
        }},
        base + "/{id}/deliveries/{delivery_id}/redeliver": {"post": {
            "operationId": "redeliver", "tags": ["webhooks"],
            "summary": "Send a delivery again (same body and event id)",
            "parameters": [wid, did],
            "responses": {**ok(ref("Delivery"), "Queued", 202), **problems(404)},
        }},
    }


def hook_paths() -> dict:
    """``registry.api.rest.hooks`` and ``registry.api.rest.verifications``."""
    return {
        "/api/v1/hooks/validate": {"post": {
            "operationId": "validateFromWebhook", "tags": ["validation"],
            "security": PUBLIC,
            "summary": "Verify the models a webhook names (here or in another registry)",
            "description": "The body is a CNCF Distribution notification envelope, a "
                           "CloudEvent, or {\"reference\": \"HOST/NAME[:TAG|@DIGEST]\"}. "
                           "Authenticated with 'Authorization: Bearer <ASSAY_HOOK_TOKEN>' "
                           "or 'X-Assay-Signature: sha256=<HMAC-SHA256 of the body keyed "
                           "with ASSAY_HOOK_SECRET>'; 403 when neither is configured.",
            "requestBody": json_body({"type": ["object", "array"],
                                      "description": "An envelope, a CloudEvent or a batch "
                                                     "of them, or a reference."},
                                     required=True),
            "responses": {**ok(ref("ValidateResult"), "Queued", 202),
                          **problems(400, 401, 403, 413)},
        }},
        "/api/v1/verifications": {"get": {
            "operationId": "verificationsByReference", "tags": ["validation"],
            "security": OPTIONAL_AUTH,
            "summary": "A local or remote model's status and every verification run",
            "parameters": [{**_query("reference", {"type": "string", "minLength": 1},
                                     "HOST[:PORT]/NAME[:TAG|@DIGEST], or NAME[:TAG|@DIGEST] "
                                     "on this registry."),
                            "required": True, "example": "library/tiny:latest"}],
            "responses": {**ok(ref("ReferenceVerifications")), **problems(400, 404)},
        }},
    }


def access_paths() -> dict:
    """``registry.api.rest.accounts``: users, tokens, keys, namespace roles, the audit log."""
    user = _path("user", {"type": "string", "pattern": USER_PATTERN, "maxLength": 64},
                 "A user or robot name.", "alice")
    namespace = _path("namespace", {"type": "string", "pattern": COMPONENT_PATTERN,
                                    "maxLength": 255},
                      "A namespace: a repository name's first segment.", "team")
    tid, kid = _integer_path("id", "Token id."), _integer_path("id", "Key id.")
    own = ("Yours: the signed-in caller's. With auth off there is no signed-in user: "
           "409.")
    deleted = problems(404)
    return {
        "/api/v1/me": {"get": {
            "operationId": "getMe", "tags": ["access"],
            "summary": "Who am I: name, site admin, how signed in, roles per namespace",
            "description": "With auth off: 200 {\"name\": null, \"auth\": false}.",
            "responses": ok(ref("Me")),
        }},
        "/api/v1/users": {
            "get": {"operationId": "listUsers", "tags": ["access"],
                    "summary": "Every user and robot (site admin)",
                    "responses": ok(ref("UserList"))},
            "post": {"operationId": "createUser", "tags": ["access"],
                     "summary": "Add a user (with a password) or a robot (tokens only; site "
                                "admin)",
                     "requestBody": json_body(ref("UserRequest"), required=True),
                     "responses": {**ok(ref("User"), "Created", 201, links={
                                       "getUser": {"operationId": "getUser",
                                                   "parameters": {
                                                       "user": "$response.body#/name"}}}),
                                   **problems(400, 409, 413)}},
        },
        "/api/v1/users/{user}": {
            "get": {"operationId": "getUser", "tags": ["access"],
                    "summary": "One user and their roles (site admin)", "parameters": [user],
                    "responses": {**ok(ref("UserDetail")), **problems(404)}},
            "delete": {"operationId": "deleteUser", "tags": ["access"],
                       "summary": "Remove a user or robot, their tokens, keys and roles "
                                  "(site admin)",
                       "parameters": [user],
                       "responses": {**ok(ref("UserDeleted")), **deleted}},
        },
        "/api/v1/users/{user}/tokens": {"post": {
            "operationId": "createUserToken", "tags": ["access"],
            "summary": "A personal access token for a user or robot (site admin)",
            "description": "The secret is in the answer only.",
            "parameters": [user],
            "requestBody": json_body(ref("TokenRequest"), required=True),
            "responses": {**ok(ref("NewToken"), "Created", 201),
                          **problems(400, 404, 413)},
        }},
        "/api/v1/tokens": {
            "get": {"operationId": "listTokens", "tags": ["access"],
                    "summary": "Your personal access tokens (never their secrets)",
                    "description": own,
                    "responses": {**ok(ref("TokenList")), **problems(409)}},
            "post": {"operationId": "createToken", "tags": ["access"],
                     "summary": "A new personal access token for yourself",
                     "description": "The secret is in the answer only. " + own,
                     "requestBody": json_body(ref("TokenRequest"), required=True),
                     "responses": {**ok(ref("NewToken"), "Created", 201),
                                   **problems(400, 409, 413)}},
        },
        "/api/v1/tokens/{id}": {"delete": {
            "operationId": "revokeToken", "tags": ["access"],
            "summary": "Revoke one of your tokens", "description": own,
            "parameters": [tid],
            "responses": {**ok(ref("TokenRevoked")), **problems(404, 409)},
        }},
        "/api/v1/keys": {
            "get": {"operationId": "listKeys", "tags": ["access"],
                    "summary": "Your Ollama public keys", "description": own,
                    "responses": {**ok(ref("KeyList")), **problems(409)}},
            "post": {"operationId": "addKey", "tags": ["access"],
                     "summary": "Register an Ollama public key (ollama push/pull sign in "
                                "with it)",
                     "description": own,
                     "requestBody": json_body(ref("KeyRequest"), required=True),
                     "responses": {**ok(ref("KeyAdded"), "Created", 201),
                                   **problems(400, 409, 413)}},
        },
        "/api/v1/keys/{id}": {"delete": {
            "operationId": "removeKey", "tags": ["access"],
            "summary": "Remove one of your keys", "description": own,
            "parameters": [kid],
            "responses": {**ok(ref("KeyDeleted")), **problems(404, 409)},
        }},
        "/api/v1/namespaces/{namespace}": {
            "get": {"operationId": "getNamespace", "tags": ["access"],
                    "summary": "A namespace's members, anonymous-pull switch, quota and "
                               "usage, retention (namespace admin)",
                    "parameters": [namespace],
                    "responses": {**ok(ref("Namespace")), **problems(400, 404)}},
            "put": {"operationId": "putNamespace", "tags": ["access"],
                    "summary": "Set a namespace's anonymous-pull switch, storage quota or "
                               "retention (namespace admin; the quota: site admin)",
                    "parameters": [namespace],
                    "requestBody": json_body(ref("NamespaceRequest"), required=True),
                    "responses": {**ok(ref("Namespace")), **problems(400, 404, 413)}},
        },
        "/api/v1/namespaces/{namespace}/members/{user}": {
            "put": {"operationId": "putMember", "tags": ["access"],
                    "summary": "Give a user a role in a namespace (namespace admin)",
                    "description": "read: pull; write: pull and push; admin: also delete, "
                                   "the namespace's policy, overrides and members.",
                    "parameters": [namespace, user],
                    "requestBody": json_body(ref("MemberRequest"), required=True),
                    "responses": {**ok(ref("Namespace")), **problems(400, 404, 413)}},
            "delete": {"operationId": "deleteMember", "tags": ["access"],
                       "summary": "Take a user's role in a namespace away (namespace admin)",
                       "parameters": [namespace, user],
                       "responses": {**ok(ref("Namespace")), **problems(404)}},
        },
        "/api/v1/audit": {"get": {
            "operationId": "listAudit", "tags": ["access"],
            "summary": "The audit log, newest first (site admin)",
            "description": "Pushes and deletes; user, token, key and namespace-role "
                           "changes; policy changes and gate overrides. Page with "
                           "before=<the last entry's id>.",
            "parameters": [
                _query("n", {"type": "integer", "minimum": 1, "maximum": 1000,
                             "default": 100}, "Page size."),
                _query("before", {"type": "integer", "minimum": 0,
                                  "maximum": 2**63 - 1}, "Entries older than this id."),
                _query("actor", {"type": "string", "maxLength": 64},
                       "Only this user's entries."),
                _query("action", {"type": "string", "maxLength": 64},
                       "Only this action (e.g. token.create)."),
            ],
            "responses": {**ok(ref("AuditPage")), **problems(400)},
        }},
    }


# One per REST module, merged by ``build``; add new modules' sections here.
SECTIONS: list[Section] = [
    browse_paths,
    manifest_paths,
    policy_paths,
    storage_paths,
    webhook_paths,
    hook_paths,
    access_paths,
]


def duplicates() -> list[str]:
    """Operations documented by more than one section (a test keeps this empty)."""
    seen: set[tuple[str, str]] = set()
    twice = []
    for section in SECTIONS:
        for path, operations in section().items():
            for method in operations:
                if (path, method) in seen:
                    twice.append(f"{method.upper()} {path}")
                seen.add((path, method))
    return twice


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


def _with_shared_problems(operation: dict) -> dict:
    """401/403 for every operation that is not public, 429 for all (auth and rate limits
    are registry-wide settings, so every section gets them here, not by hand)."""
    shared = (429,) if operation.get("security") == PUBLIC else (401, 403, 429)
    responses = dict(operation["responses"])
    for status, response in problems(*shared).items():
        responses.setdefault(status, response)
    return {**operation, "responses": dict(sorted(responses.items()))}


def build() -> dict:
    paths: dict[str, dict] = {}
    for section in SECTIONS:
        for path, operations in section().items():
            paths.setdefault(path, {}).update(
                {method: _with_shared_problems(op) for method, op in operations.items()})
    return {
        "openapi": "3.1.0",
        "info": {"title": "assay REST API", "version": "1", "description": DESCRIPTION},
        "security": SECURITY,
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }


async def document(request: Request) -> JSONResponse:
    return JSONResponse(build())
