"""Verification on request: references named by webhooks, and models in other registries.

A reference whose host is this registry's (the request's ``Host``, or ``ASSAY_PUBLIC_URL``)
is a local model: it is re-verified like ``POST .../verify``. Any other host is a *remote*
model, stored in ``remote_models`` under its canonical reference
``HOST[:PORT]/NAME@sha256:...`` (a tag is resolved to its digest first, while the caller
waits) and verified by a ``verify_remote`` job, queued in the same transaction::

    submit -> "queued" (row upserted + job, one transaction; a live job is reused)
      -> "verifying" (a worker claimed it: ``start``)
      -> the worker pulls it read-only (worker/remote.py) and runs the verifier
      -> "ready" | "failed" (``finish``: a ``verifications`` row with ``remote_model_id``,
         the status and the job's completion, one transaction)

``failed`` without a verification row means the model never ran: "not a model", the
remote registry refused (401/403/404), or the job ran out of attempts on infrastructure
errors ("verification could not run: ..."). While a job waits for a retry the status is
"queued" and the reason says what went wrong.

The modules, by idea:

- ``references``: ``HOST[:PORT]/NAME[:TAG|@DIGEST]`` parsing, which hosts are this registry;
- ``items``: what any payload asks for (``Item``s in a ``Payload``);
- ``payloads``: which format a hook body is (``parse_payload``), reading it with
  ``distribution`` (notification envelopes) or ``cloud_events`` (CloudEvents 1.x), or as
  the plain ``{"reference": ...}`` form. Only manifest *pushes* are verified: pulls,
  deletes, blob uploads and indexes are ignored, and the answer says why;
- ``service``: ``RemoteService``, the state machine above and the lookups.
"""

from registry.services.remote.items import CLOUDEVENTS, DISTRIBUTION, PLAIN, Item, Payload
from registry.services.remote.payloads import parse_payload
from registry.services.remote.references import ModelRef, local_hosts, parse_ref
from registry.services.remote.service import (
    NOT_A_MODEL,
    RemoteService,
    RemoteTarget,
    classify_manifest,
    dedupe_key,
)

__all__ = ["CLOUDEVENTS", "DISTRIBUTION", "NOT_A_MODEL", "PLAIN", "Item", "ModelRef",
           "Payload", "RemoteService", "RemoteTarget", "classify_manifest", "dedupe_key",
           "local_hosts", "parse_payload", "parse_ref"]
