"""What a bundle holds, read from its ``index.json`` and checked before anything is pushed.

``Bundle.read`` walks every entry of index.json: its manifest (and an index's children)
must be in the tar with the size its descriptor says, be a JSON object with a media type,
and every blob it names must be in the tar with its declared size. Each entry must say
the repository it came from (``dev.assay.repository``, as ``assay export`` writes);
``org.opencontainers.image.ref.name`` gives the tag (``TAG`` or ``NAME:TAG``), and an
entry without one is pushed by digest only. An entry whose manifest has a ``subject`` is a
referrer, pushed after what it refers to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from client.bundles.export import (
    MAX_DEPTH,
    REF_NAME,
    REPOSITORY,
    blob_descriptors,
    child_descriptors,
    media_type_of,
)
from client.bundles.layout import INDEX_JSON, LayoutReader, blob_name
from client.errors import ClientError
from client.ref import NAME_RE, TAG_RE


@dataclass
class Item:
    """One manifest of the bundle, as it will be pushed (byte for byte)."""

    repository: str
    digest: str
    media_type: str
    content: bytes
    blobs: list[dict]
    children: list[str]
    subject: str | None
    artifact_type: str | None
    created: str = ""  # org.opencontainers.image.created, for choosing among results


@dataclass
class Entry:
    """One line of index.json: what to push where, under which tag."""

    item: Item
    tag: str | None

    @property
    def referrer(self) -> bool:
        return self.item.subject is not None


@dataclass
class Bundle:
    reader: LayoutReader
    entries: list[Entry] = field(default_factory=list)
    items: dict[tuple[str, str], Item] = field(default_factory=dict)  # (repo, digest)

    @classmethod
    def read(cls, reader: LayoutReader, prefix: str | None = None) -> Bundle:
        """The bundle in ``reader``, checked (see the module's text); ``prefix`` puts
        every repository under that namespace (``NS/REPO``)."""
        bundle = cls(reader)
        index = reader.json(INDEX_JSON)
        descriptors = index.get("manifests")
        if not isinstance(descriptors, list) or not descriptors:
            raise ClientError(f"{reader.path}: index.json lists no manifests")
        for d in descriptors:
            if not isinstance(d, dict):
                raise ClientError(f"{reader.path}: index.json has an entry that is not an "
                                  "object")
            annotations = d.get("annotations") if isinstance(d.get("annotations"), dict) \
                else {}
            repository = _repository(reader, annotations.get(REPOSITORY), prefix)
            item = bundle._walk(repository, d, 0)
            bundle.entries.append(Entry(item, _tag(reader, annotations.get(REF_NAME))))
        return bundle

    def _walk(self, repository: str, d: dict, depth: int) -> Item:
        digest, size = d.get("digest"), d.get("size")
        where = f"{self.reader.path}: {repository}@{digest}"
        if depth > MAX_DEPTH:
            raise ClientError(f"{where}: manifests nested deeper than {MAX_DEPTH}")
        if not isinstance(digest, str):
            raise ClientError(f"{self.reader.path}: a descriptor without a digest")
        blob_name(digest)  # a sha256 digest, or a clear refusal
        if self.reader.size(digest) != size:
            raise ClientError(f"{where}: the manifest is not in the bundle with the size "
                              f"its descriptor says ({size})")
        known = self.items.get((repository, digest))
        if known is not None:
            return known
        content = self.reader.blob(digest)
        doc, media_type = media_type_of(content, d.get("mediaType"), where)
        for b in blob_descriptors(doc):
            bd = b.get("digest")
            if not isinstance(bd, str) or self.reader.size(bd) is None:
                raise ClientError(f"{where}: its blob {bd} is missing from the bundle")
            if self.reader.size(bd) != b.get("size"):
                raise ClientError(f"{where}: its blob {bd} has {self.reader.size(bd)} bytes "
                                  f"in the bundle, not the {b.get('size')} declared")
        children = [self._walk(repository, c, depth + 1).digest
                    for c in child_descriptors(doc)]
        subject = doc.get("subject") if isinstance(doc.get("subject"), dict) else {}
        annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) \
            else {}
        item = Item(repository, digest, media_type, content, blob_descriptors(doc), children,
                    subject.get("digest") if isinstance(subject.get("digest"), str) else None,
                    doc.get("artifactType") if isinstance(doc.get("artifactType"), str)
                    else None, str(annotations.get("org.opencontainers.image.created", "")))
        self.items[(repository, digest)] = item
        return item

    def digests(self) -> list[str]:
        """Every blob and manifest the bundle's entries need, each once, in tar order."""
        needed = {b["digest"] for item in self.items.values() for b in item.blobs}
        needed |= {item.digest for item in self.items.values()}
        return [d for d in self.reader.blob_digests() if d in needed]

    def size(self) -> int:
        return sum(self.reader.size(d) or 0 for d in self.digests())

    def referrers_of(self, repository: str, digest: str) -> list[Item]:
        return [e.item for e in self.entries
                if e.item.repository == repository and e.item.subject == digest]


def _repository(reader: LayoutReader, name, prefix: str | None) -> str:
    if not isinstance(name, str):
        raise ClientError(f"{reader.path}: an index.json entry does not say its repository "
                          f"({REPOSITORY}); import takes bundles made by assay export")
    if prefix:
        name = f"{prefix.strip('/')}/{name}"
    if not NAME_RE.fullmatch(name) or len(name) > 255:
        raise ClientError(f"{reader.path}: {name!r} is not a valid repository name")
    return name


def _tag(reader: LayoutReader, ref_name) -> str | None:
    if ref_name is None:
        return None
    tag = str(ref_name).rpartition(":")[2]
    if not TAG_RE.fullmatch(tag):
        raise ClientError(f"{reader.path}: {ref_name!r} does not end in a valid tag")
    return tag
