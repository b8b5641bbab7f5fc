"""``assay export``: models, their blobs and their referrers from any OCI registry into one
layout tar (``client.bundles.layout``).

For each REF: its manifest (an index brings its child manifests), every blob they name,
then every referrer (``GET /v2/NAME/referrers/DIGEST``: assay's verification results,
signatures, SBOMs, anything) of the manifest and of its children, with their own blobs
and referrers. A registry without the referrers API (404) simply has none to carry.

index.json lists what was named and what refers to it, so nothing in the tar is
unreachable from it:

- each model, with ``org.opencontainers.image.ref.name`` = its tag (``skopeo copy
  oci-archive:FILE.tar:TAG`` finds it; when two models of the bundle share a tag, both
  are named ``NAME:TAG``) and ``dev.assay.repository`` = the repository it came from; a
  REF given by digest only has no ref.name;
- each referrer, with its ``artifactType`` and ``dev.assay.repository``, no ref.name.

Blobs are streamed from the registry into the tar in 1 MiB blocks, hashed on the way
(``LayoutWriter.add_stream``); a connection that drops mid-blob is resumed with a
``Range`` request. A blob that several models share is downloaded and written once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from client import mediatypes as mt
from client.bundles.layout import LayoutWriter
from client.errors import ClientError, response_error
from client.progress import Transfers
from client.ref import Reference, Registry
from client.registry_client import RegistryClient
from client.transport import body_blocks

REF_NAME = "org.opencontainers.image.ref.name"
REPOSITORY = "dev.assay.repository"
MAX_DEPTH = 4  # nested indexes, referrers of referrers
MAX_REFERRERS = 1000  # per bundle: a registry answering with endless referrers is wrong
READ_BLOCK = 1024 * 1024
IDENTITY = {"Accept-Encoding": "identity"}  # blob bytes exactly as stored


@dataclass
class ExportedModel:
    reference: Reference
    digest: str
    entry: dict  # its index.json descriptor
    referrers: int = 0


@dataclass
class ExportResult:
    path: Path
    size: int
    models: list[ExportedModel]
    blobs: int
    referrers: list[dict] = field(default_factory=list)


def media_type_of(content: bytes, declared: str | None, what: str) -> tuple[dict, str]:
    """The manifest as a JSON object and its media type (the descriptor's or Content-
    Type, else its own ``mediaType``)."""
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise ClientError(f"{what}: the manifest is not a JSON object")
    media_type = declared or doc.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ClientError(f"{what}: the manifest does not say its media type")
    return doc, media_type


def blob_descriptors(doc: dict) -> list[dict]:
    """The blobs an image manifest names: config and layers (``blobs`` of the withdrawn
    OCI artifact manifest)."""
    found = [doc.get("config"), *(doc.get("layers") or []), *(doc.get("blobs") or [])]
    return [d for d in found if isinstance(d, dict)]


def child_descriptors(doc: dict) -> list[dict]:
    return [d for d in doc.get("manifests") or [] if isinstance(d, dict)]


def blob_label(d: dict) -> str:
    """What a progress bar calls a blob: its file name, else its short digest."""
    annotations = d.get("annotations") if isinstance(d.get("annotations"), dict) else {}
    return annotations.get(mt.TITLE) or annotations.get(mt.FILEPATH) or \
        str(d.get("digest"))[:19]


class Exporter:
    """Fills one ``LayoutWriter``; ``model`` once per REF, then ``index``."""

    def __init__(self, writer: LayoutWriter, transfers: Transfers):
        self.writer = writer
        self.transfers = transfers
        self.models: list[ExportedModel] = []
        self.referrers: list[dict] = []
        self._listed: set[tuple[str, str]] = set()  # (repository, referrer digest)

    def model(self, client: RegistryClient, ref: Reference) -> ExportedModel:
        """Carry the model ``ref`` names (once, however often it is named)."""
        fetched = client.get_manifest(ref.name, ref.reference)
        for m in self.models:
            if (m.reference.name, m.reference.tag, m.digest) == \
                    (ref.name, ref.tag, fetched.digest):
                return m
        _, media_type = media_type_of(fetched.content, fetched.media_type, str(ref))
        digests = self._manifest(client, ref.name, fetched.content, fetched.digest,
                                 media_type, 0)
        entry = {"mediaType": media_type, "digest": fetched.digest,
                 "size": len(fetched.content), "annotations": {REPOSITORY: ref.name}}
        model = ExportedModel(ref, fetched.digest, entry)
        before = len(self.referrers)
        self._referrers(client, ref.name, digests)
        model.referrers = len(self.referrers) - before
        self.models.append(model)
        return model

    def _manifest(self, client: RegistryClient, name: str, content: bytes, digest: str,
                  media_type: str, depth: int) -> list[str]:
        """Write a manifest, its children and blobs; the digests of it and its children."""
        what = f"{client.registry.host}/{name}@{digest}"
        if depth > MAX_DEPTH:
            raise ClientError(f"{what}: manifests nested deeper than {MAX_DEPTH}")
        doc, _ = media_type_of(content, media_type, what)
        digests = [digest]
        for child in child_descriptors(doc):
            fetched = client.get_manifest(name, str(child.get("digest")))
            digests += self._manifest(client, name, fetched.content, fetched.digest,
                                      child.get("mediaType") or fetched.media_type,
                                      depth + 1)
        for d in blob_descriptors(doc):
            self._blob(client, name, d)
        self.writer.add_bytes(digest, content, what)
        return digests

    def _blob(self, client: RegistryClient, name: str, d: dict) -> None:
        digest, size = str(d.get("digest")), d.get("size")
        if self.writer.has(digest):
            return
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ClientError(f"{name}: blob {digest} has no valid size in its descriptor")
        task = self.transfers.task(f"export {blob_label(d)}", size)
        self.writer.add_stream(digest, size, blob_chunks(client, name, digest, size,
                                                         task.advance),
                               f"{client.registry.host}/{name}@{digest}")
        task.done()

    def _referrers(self, client: RegistryClient, name: str, subjects: list[str]) -> None:
        """Every referrer of ``subjects``, and theirs, breadth first."""
        pending = [(s, 0) for s in subjects]
        while pending:
            subject, depth = pending.pop(0)
            if depth >= MAX_DEPTH:
                continue
            for d in list_referrers(client, name, subject):
                digest = str(d.get("digest"))
                if (name, digest) in self._listed:
                    continue
                if len(self._listed) >= MAX_REFERRERS:
                    raise ClientError(f"more than {MAX_REFERRERS} referrers to carry")
                self._listed.add((name, digest))
                fetched = client.get_manifest(name, digest)
                media_type = d.get("mediaType") or fetched.media_type
                digests = self._manifest(client, name, fetched.content, fetched.digest,
                                         media_type, 0)
                entry = {"mediaType": media_type, "digest": digest,
                         "size": len(fetched.content)}
                if d.get("artifactType"):
                    entry["artifactType"] = d["artifactType"]
                entry["annotations"] = {REPOSITORY: name}
                self.referrers.append(entry)
                pending += [(s, depth + 1) for s in digests]

    def index(self) -> dict:
        """index.json: the models (named, see the module's text), then the referrers."""
        tags: dict[str, set[str]] = {}
        names: set[str] = set()
        for m in self.models:
            ref = m.reference
            if not ref.tag:
                continue
            if f"{ref.name}:{ref.tag}" in names:
                raise ClientError(f"{ref.name}:{ref.tag} is named twice with different "
                                  "manifests (from two registries?): export them into "
                                  "separate bundles")
            names.add(f"{ref.name}:{ref.tag}")
            tags.setdefault(ref.tag, set()).add(ref.name)
        for m in self.models:
            if m.reference.tag:
                shared = len(tags[m.reference.tag]) > 1
                m.entry["annotations"][REF_NAME] = \
                    f"{m.reference.name}:{m.reference.tag}" if shared else m.reference.tag
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                "manifests": [m.entry for m in self.models] + self.referrers}


def list_referrers(client: RegistryClient, name: str, digest: str) -> list[dict]:
    """The referrers API's descriptors for ``digest`` (every page); none when the
    registry has no such API (404, 405, 400)."""
    url: str | None = f"/v2/{name}/referrers/{digest}"
    found: list[dict] = []
    while url:
        resp = client.request("GET", url, what=f"referrers of {name}@{digest[:19]}",
                              ok=(200, 400, 404, 405, 406), headers={"Accept": mt.OCI_INDEX})
        if resp.status_code != 200:
            return found
        try:
            body = resp.json()
        except ValueError:
            return found
        found += [d for d in (body.get("manifests") or []) if isinstance(d, dict)
                  and isinstance(d.get("digest"), str)] if isinstance(body, dict) else []
        nxt = resp.links.get("next", {}).get("url")
        url = str(resp.url.join(nxt)) if nxt else None
    return found


def blob_chunks(client: RegistryClient, name: str, digest: str, size: int,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes | memoryview]:
    """The blob's bytes as they arrive (each block valid until the next is asked for).
    A body that breaks off is resumed from where it stopped (``Range``), up to the
    client's attempts; a registry that ignores the Range cannot resume."""
    url = client.blob_url(name, digest)
    what = f"download {name}@{digest[:19]}"
    offset, failures = 0, 0
    while offset < size or offset == 0:
        headers = IDENTITY if offset == 0 else {**IDENTITY, "Range": f"bytes={offset}-"}
        resp = client.call(lambda h=headers: client.send("GET", url, headers=h, stream=True,
                                                         follow_redirects=True), what)
        try:
            if resp.status_code not in ((200,) if offset == 0 else (206,)):
                resp.read()
                if offset and resp.status_code == 200:
                    raise ClientError(f"{what}: the connection broke at byte {offset} and "
                                      "the registry cannot resume (it ignores Range)")
                raise response_error(resp, what)
            for block in body_blocks(resp, READ_BLOCK):
                offset += len(block)
                if on_bytes:
                    on_bytes(len(block))
                yield block
            return
        except httpx.TransportError as exc:
            failures += 1
            if failures >= client.attempts:
                raise client.connection_failed(exc, what) from None
        finally:
            resp.close()


def export(refs: list[Reference], output: Path, transfers: Transfers,
           client_for: Callable[[Registry], RegistryClient]) -> ExportResult:
    """Write the models ``refs`` name, with their blobs and referrers, into ``output``
    (see the module's text). ``client_for`` gives the client of a REF's registry."""
    with LayoutWriter(output) as writer:
        exporter = Exporter(writer, transfers)
        for ref in refs:
            exporter.model(client_for(ref.registry), ref)
        index = exporter.index()
        size = writer.close(index)
    return ExportResult(output, size, exporter.models, len(writer.written),
                        exporter.referrers)
