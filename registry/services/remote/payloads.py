"""Hook bodies: which of the three formats a body is, read into a ``Payload``.

- a Distribution notification envelope ``{"events": [...]}`` (``.distribution``);
- a CloudEvent, structured ``{"specversion": "1.0", ...}``, a JSON batch ``[...]``, or
  binary mode (``ce-*`` headers, the body is the data) (``.cloud_events``);
- a plain request ``{"reference": "HOST[:PORT]/NAME[:TAG|@DIGEST]"}``.
"""

from __future__ import annotations

from registry.errors import RequestInvalid
from registry.services.remote.cloud_events import read_cloudevent
from registry.services.remote.distribution import read_envelope
from registry.services.remote.items import (
    CLOUDEVENTS,
    DISTRIBUTION,
    PLAIN,
    Item,
    Payload,
    bounded,
)
from registry.services.remote.references import parse_ref


def parse_payload(doc, headers: dict[str, str] | None = None, raw: bytes = b"") -> Payload:
    """Read a hook body (already JSON-decoded) in any of the three formats.

    Raises ``RequestInvalid`` (400) when the body is none of them, or when a plain request
    is malformed; an event that cannot be used is an ``Item`` with ``ignored`` set instead
    (a sender such as Distribution retries a refused envelope forever)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if "ce-specversion" in headers:  # CloudEvents binary mode: the body is the data
        event = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
        event["data"] = doc
        return Payload(CLOUDEVENTS, read_cloudevent(event, strict=True))
    if isinstance(doc, list):  # CloudEvents JSON batch (application/cloudevents-batch+json)
        bounded(doc, "a CloudEvents batch")
        items: list[Item] = []
        for i, event in enumerate(doc):
            if not isinstance(event, dict):
                items.append(Item(CLOUDEVENTS, event=str(i), ignored="not a CloudEvent "
                                  "(a JSON object)"))
            else:
                items += read_cloudevent(event, strict=False, index=i)
        return Payload(CLOUDEVENTS, items)
    if not isinstance(doc, dict):
        raise RequestInvalid(_UNKNOWN_BODY)
    if "events" in doc:
        return Payload(DISTRIBUTION, read_envelope(doc, DISTRIBUTION))
    if "specversion" in doc:
        return Payload(CLOUDEVENTS, read_cloudevent(doc, strict=True))
    if "reference" in doc:
        ref = parse_ref(doc["reference"])
        return Payload(PLAIN, [Item(PLAIN, ref=ref, given=doc["reference"])])
    raise RequestInvalid(_UNKNOWN_BODY)


_UNKNOWN_BODY = ('the body is none of: a Distribution notification {"events": [...]}, a '
                 'CloudEvent {"specversion": "1.0", ...}, or {"reference": '
                 '"HOST[:PORT]/NAME[:TAG|@DIGEST]"}')
