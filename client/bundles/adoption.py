"""After an import into assay: have the verification results that came with each model
recorded instead of running the model again (``POST /api/v1/repositories/<name>/
manifests/<digest>/adopt``; the registry's ``registry.services.adoption`` says who may and
what it checks).

For each model manifest of the bundle with results artifacts among its referrers
(``artifactType`` ``VERIFICATION_TYPE``), newest first (``org.opencontainers.image.
created``), until one is adopted: a refusal for want of the right stops there, another
profile or an unreadable artifact tries the next. A model the registry has already
verified (ready or failed) is left alone. Each model ends with one line of outcome:
``results adopted (ready|failed)``, or ``verifying: <why not>`` (the registry verifies it
as any push).
"""

from __future__ import annotations

import json

from client.auth import AuthError
from client.bundles.contents import Bundle, Item
from client.errors import oci_error_text
from client.registry_client import RegistryClient

VERIFICATION_TYPE = "application/vnd.assay.verification.v1+json"
ADOPT_PATH = "/api/v1/repositories/{name}/manifests/{reference}/adopt"
API = "assay REST API"


def assay_api(client: RegistryClient) -> dict | None:
    """The registry's OpenAPI document when it is assay, else None (the document is
    public: no credentials are needed to tell)."""
    doc = client.rest("/api/v1/openapi.json")
    if not doc or (doc.get("info") or {}).get("title") != API:
        return None
    return doc


def results_of(bundle: Bundle, item: Item) -> list[Item]:
    """The results artifacts the bundle carries for ``item``, newest first."""
    found = [r for r in bundle.referrers_of(item.repository, item.digest)
             if r.artifact_type == VERIFICATION_TYPE]
    return sorted(found, key=lambda r: r.created, reverse=True)


def adopt_all(client: RegistryClient, bundle: Bundle, items: list[Item]) -> dict[str, str]:
    """``{digest: outcome}`` for each of ``items`` that is a model with carried results
    (see the module's text)."""
    outcomes: dict[str, str] = {}
    for item in items:
        results = results_of(bundle, item)
        if results:
            outcomes[item.digest] = adopt_one(client, item, results)
    return outcomes


def adopt_one(client: RegistryClient, item: Item, results: list[Item]) -> str:
    state = client.rest(f"/api/v1/repositories/{item.repository}/manifests/{item.digest}")
    if state is not None and state.get("status") in ("ready", "failed"):
        return f"already verified here ({state['status']}); carried results not adopted"
    if state is not None and "status" in state and state["status"] is None:
        return "not a model here (never verified)"
    why = "no carried results could be adopted"
    for result in results:
        path = ADOPT_PATH.format(name=item.repository, reference=item.digest)
        body = json.dumps({"referrer": result.digest}).encode()
        try:
            resp = client.request("POST", path, what=f"adopt results for {item.digest[:19]}",
                                  ok=(200, 400, 401, 403, 404, 409),
                                  headers={"Content-Type": "application/json",
                                           "Accept": "application/json"},
                                  content=lambda b=body: b)
        except AuthError:  # no credentials for the REST API, or refused ones
            resp = None
        if resp is not None and resp.status_code == 200:
            return f"results adopted ({resp.json().get('status')})"
        if resp is None or resp.status_code in (401, 403):
            namespace = item.repository.split("/", 1)[0]
            return ("verifying: you may not adopt results here (needs admin of namespace "
                    f"{namespace})")
        why = oci_error_text(resp)[1]
    return f"verifying: {why}"
