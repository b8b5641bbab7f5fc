"""CloudEvents (1.x) that announce a push, in structured, batch or binary mode.

The event's ``data`` (or ``data_base64``, or its ``subject`` when there is no data) names
the model: a reference string, ``{"reference": ...}``, a Distribution envelope, or a
Distribution-like ``{"target": {...}}``. Event types whose words say it was not a push
(pull, delete, scan ...) are ignored. ``strict`` (a single event): a malformed event is a
400; in a batch it is an ignored ``Item`` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import re

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from registry import jsontext
from registry.errors import RegistryError, RequestInvalid
from registry.services.remote.distribution import read_envelope, read_target
from registry.services.remote.items import CLOUDEVENTS, Item
from registry.services.remote.references import parse_ref


class CloudEventContext(BaseModel):
    """The context attributes CloudEvents 1.x requires, each a non-empty string. Optional
    attributes and extensions are read from the event as they come (binary mode turns
    every ``ce-*`` header into one)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: StrictStr = Field(min_length=1)
    id: StrictStr = Field(min_length=1)
    source: StrictStr = Field(min_length=1)
    type: StrictStr = Field(min_length=1)


# CloudEvents types whose words say the model was not pushed.
_NOT_A_PUSH = {"pull", "pulled", "delete", "deleted", "remove", "removed", "mount", "mounted",
               "get", "head", "quarantine", "quarantined", "scan", "scanned"}


def read_cloudevent(event: dict, *, strict: bool, index: int = 0) -> list[Item]:
    """One CloudEvent (structured or binary mode) as items. ``strict``: a single event
    that is malformed is a 400; in a batch it is ignored with the reason."""
    event_id = event.get("id") if isinstance(event.get("id"), str) else str(index)
    try:
        context = CloudEventContext.model_validate(event)
    except ValidationError as exc:
        missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
        return _malformed(strict, event_id, f"not a CloudEvent: {missing} missing")
    if not context.specversion.startswith("1."):
        return _malformed(strict, event_id, f"CloudEvents specversion "
                          f"{context.specversion!r} is not supported (1.0)")
    words = set(re.split(r"[^a-z0-9]+", context.type.lower()))
    if words & _NOT_A_PUSH:
        return [Item(CLOUDEVENTS, event=event_id,
                     ignored=f"event type {context.type!r} is not a push")]
    data = event.get("data")
    if "data_base64" in event:
        try:
            data = base64.b64decode(str(event["data_base64"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return _bad_event(strict, event_id, "data_base64 is not base64 of UTF-8 text")
    if isinstance(data, str) and data.strip().startswith(("{", "[")):
        try:
            data = jsontext.loads(data)
        except ValueError:
            return _bad_event(strict, event_id, "data is not valid JSON")
    if data is None and isinstance(event.get("subject"), str):
        data = event["subject"]  # e.g. subject: "registry.example.com/team/model:v1"
    if isinstance(data, str):
        return [_cloud_ref(data, strict, event_id)]
    if isinstance(data, dict):
        if "events" in data:  # a Distribution envelope carried as the data
            items = read_envelope(data, CLOUDEVENTS)
            for item in items:
                item.event = f"{event_id}/{item.event}"
            return items
        if "reference" in data:
            return [_cloud_ref(data["reference"], strict, event_id)]
        if "target" in data:
            action = data.get("action", "push")
            if action != "push":
                return [Item(CLOUDEVENTS, event=event_id,
                             ignored=f"action {action!r}: only pushes are verified")]
            return [read_target(data["target"], data.get("request"), CLOUDEVENTS, event_id)]
        if "repository" in data:
            return [read_target(data, None, CLOUDEVENTS, event_id)]
    return _bad_event(strict, event_id, 'the data carries no reference: expected a '
                      'reference string, {"reference": ...}, or a Distribution-like '
                      '{"target": {"repository", "digest", "url", ...}}')


def _malformed(strict: bool, event_id: str, problem: str) -> list[Item]:
    """An event that is not a usable CloudEvent at all: a 400 when it came alone."""
    if strict:
        raise RequestInvalid(problem)
    return [Item(CLOUDEVENTS, event=event_id, ignored=problem)]


def _bad_event(strict: bool, event_id: str, reason: str) -> list[Item]:
    if strict:
        raise RequestInvalid(f"CloudEvent {event_id!r}: {reason}")
    return [Item(CLOUDEVENTS, event=event_id, ignored=reason)]


def _cloud_ref(text, strict: bool, event_id: str) -> Item:
    try:
        return Item(CLOUDEVENTS, ref=parse_ref(text), event=event_id, given=str(text))
    except RegistryError as exc:
        if strict:
            raise
        return Item(CLOUDEVENTS, event=event_id, ignored=f"malformed reference: {exc.message}",
                    given=str(text))
