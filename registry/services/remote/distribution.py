"""Distribution (Docker registry) notification envelopes, and targets shaped like theirs.

An envelope is ``{"events": [{"id", "action", "target": {...}, "request": {...}}, ...]}``
(``application/vnd.docker.distribution.events.v1+json``). Only manifest pushes are
verified: other actions, blob pushes and indexes become ignored ``Item``s with the reason,
never a refusal, since a sender such as Distribution retries a refused envelope forever.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from registry.errors import RegistryError, RequestInvalid
from registry.manifests import IMAGE_TYPES, INDEX_TYPES, OCI_ARTIFACT
from registry.services.remote.items import Item, bounded
from registry.services.remote.references import ModelRef, parse_ref

# Manifests that can be a model; indexes never are (their manifests are pushed on their own).
MODEL_MANIFEST_TYPES = IMAGE_TYPES | {OCI_ARTIFACT}


def read_envelope(doc: dict, source: str) -> list[Item]:
    events = doc.get("events")
    if not isinstance(events, list):
        raise RequestInvalid('"events" must be a list of notification events')
    bounded(events, "an envelope")
    items = []
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            items.append(Item(source, event=str(i), ignored="not an event (a JSON object)"))
            continue
        event_id = event.get("id") if isinstance(event.get("id"), str) else str(i)
        action = event.get("action")
        if action != "push":
            items.append(Item(source, event=event_id,
                              ignored=f"action {action!r}: only pushes are verified"))
            continue
        items.append(read_target(event.get("target"), event.get("request"), source, event_id))
    return items


def read_target(target, request, source: str, event_id: str | None) -> Item:
    """A Distribution event's target (or one shaped like it) as an ``Item``."""
    def ignore(reason: str, given: str | None = None) -> Item:
        return Item(source, event=event_id, ignored=reason, given=given)

    if not isinstance(target, dict):
        return ignore("the event has no target object")
    media_type = target.get("mediaType")
    url = target.get("url") if isinstance(target.get("url"), str) else None
    parts = urlsplit(url) if url else None
    if parts and "/blobs/" in parts.path:
        return ignore("a blob push: only manifests are verified")
    if media_type in INDEX_TYPES:
        return ignore("an index is not a model (the manifests it lists are notified "
                      "on their own)")
    if media_type is not None and media_type not in MODEL_MANIFEST_TYPES:
        if isinstance(media_type, str) and "manifest" in media_type:
            return ignore(f"a {media_type} manifest cannot hold a model")
        return ignore(f"a {media_type} push is a blob's: only manifests are verified")
    host = scheme = None
    if parts and parts.netloc:
        host, scheme = parts.netloc.rpartition("@")[2], parts.scheme.lower() or None
    elif isinstance(request, dict) and isinstance(request.get("host"), str):
        host = request["host"]
    repository, digest, tag = target.get("repository"), target.get("digest"), target.get("tag")
    if not repository and parts:  # /v2/<name>/manifests/<reference>
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", parts.path)
        if m:
            repository = m[1]
            if digest is None and ":" in m[2]:
                digest = m[2]
    if not host:
        return ignore("no registry host: the event has neither target.url nor request.host")
    if not isinstance(repository, str) or not repository:
        return ignore("the target names no repository")
    text = f"{host}/{repository}"
    if isinstance(tag, str) and tag:
        text += f":{tag}"
    if isinstance(digest, str) and digest:
        text += f"@{digest}"
    try:
        ref = parse_ref(text, default_tag=False)
    except RegistryError as exc:
        return ignore(f"malformed reference: {exc.message}", text)
    if ref.digest is None and ref.tag is None:
        return ignore("the target has neither a digest nor a tag", text)
    if scheme in ("http", "https"):
        ref = ModelRef(ref.host, ref.name, ref.tag, ref.digest, scheme)
    return Item(source, ref=ref, event=event_id,
                media_type=media_type if isinstance(media_type, str) else None)
