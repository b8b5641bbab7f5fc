"""Model cards at push, and the size queries behind the REST API.

``record`` runs after a manifest's transaction has committed, for newly stored
manifests only: it classifies the manifest (``registry.formats.classify``), reads the
weights' headers from the blob store through ranged reads (``registry.storage.ranged``;
never the weights themselves) and stores the card in ``models``. It never raises: an
unreadable model gets a card whose ``error`` says why, and any failure here is logged
and leaves the push successful.

Sizes: a manifest's ``logical`` size is the sum of the blobs it refers to; its
``unique`` size the part of that referred to by no other manifest (what deleting it
would free). Registry-wide, ``logical_bytes`` sums every manifest's references and
``stored_bytes`` the blobs actually stored once: the difference is what deduplication saves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import Connection, and_, exists, func, select

from registry.db.tables import (
    blobs,
    manifest_references,
    manifests,
    models,
    repositories,
    tags,
    utcnow,
)
from registry.digests import check_tag, is_digest, parse_digest
from registry.errors import ManifestUnknown, NameUnknown
from registry.formats.archives import tar_member
from registry.formats.cards import (
    CHAT_TEMPLATE_FILES,
    FileSource,
    ModelCard,
    error_card,
    read_gguf_files,
    read_safetensors_card,
)
from registry.formats.classify import CONFIG_JSON, GGUF, ModelFile, ModelFormat, classify
from registry.manifests import ParsedManifest
from registry.services.common import Service, repo_id
from registry.storage.ranged import open_blob

log = logging.getLogger("assay.models")

# Files besides the weights that a safetensors card reads (or only looks for).
_SIDE_FILES = (CONFIG_JSON, "tokenizer_config.json", *CHAT_TEMPLATE_FILES)


@dataclass
class ManifestInfo:
    repository: str
    tag: str | None
    digest: str
    media_type: str
    artifact_type: str | None
    logical_size: int
    unique_size: int
    model: ModelCard | None


@dataclass
class StorageSummary:
    logical_bytes: int   # every manifest's blobs, counted once per manifest
    stored_bytes: int    # every stored blob, once
    blobs: int
    manifests: int


def _logical_size(conn: Connection, manifest_id: int) -> int:
    return conn.execute(
        select(func.coalesce(func.sum(blobs.c.size), 0))
        .select_from(manifest_references.join(blobs,
                                              blobs.c.digest == manifest_references.c.digest))
        .where(manifest_references.c.manifest_id == manifest_id)).scalar_one()


def _unique_size(conn: Connection, manifest_id: int) -> int:
    other = manifest_references.alias("other")
    shared = exists().where(and_(other.c.digest == manifest_references.c.digest,
                                 other.c.manifest_id != manifest_id))
    return conn.execute(
        select(func.coalesce(func.sum(blobs.c.size), 0))
        .select_from(manifest_references.join(blobs,
                                              blobs.c.digest == manifest_references.c.digest))
        .where(manifest_references.c.manifest_id == manifest_id, ~shared)).scalar_one()


class ModelService(Service):
    # ---- at push ---------------------------------------------------------------------
    def record(self, manifest_id: int, digest: str, parsed: ParsedManifest) -> ModelCard | None:
        """Store the model card of the newly created manifest ``manifest_id``.

        Returns the card, or None when the manifest is not a model. Never raises.
        """
        try:
            fmt = classify(parsed)
            if fmt is None:
                return None
            card = self._copied_card(manifest_id, digest) or self.read_card(fmt)
            with self.db.write() as conn:
                if conn.execute(select(manifests.c.id).where(
                        manifests.c.id == manifest_id)).first() is None:
                    return card  # deleted meanwhile: nothing to attach the card to
                conn.execute(self.db.insert_ignore(
                    models, manifest_id=manifest_id, kind=fmt.kind, format=card.format,
                    architecture=card.architecture, parameter_count=card.parameter_count,
                    quantization=card.quantization, context_length=card.context_length,
                    embedding_length=card.embedding_length, chat_template=card.chat_template,
                    tokenizer_model=card.tokenizer_model, card=json.dumps(card.to_json()),
                    error=card.error, logical_size=int(_logical_size(conn, manifest_id)),
                    created_at=utcnow()))
            return card
        except Exception:
            log.exception("could not record the model card of manifest %s", digest)
            return None

    def _copied_card(self, manifest_id: int, digest: str) -> ModelCard | None:
        """The card already read for the same manifest in another repository (content
        addressed: same digest, same blobs, same card)."""
        with self.db.read() as conn:
            text = conn.execute(
                select(models.c.card)
                .join(manifests, manifests.c.id == models.c.manifest_id)
                .where(manifests.c.digest == digest, manifests.c.id != manifest_id)
                .limit(1)).scalar()
        return ModelCard.from_json(text) if text else None

    def read_card(self, fmt: ModelFormat) -> ModelCard:
        """Read the card of a classified manifest from the blob store. Never raises: an
        unreadable layer (missing, compressed, storage failure) becomes the card's error."""
        try:
            sizes = self._blob_sizes(fmt)
            weights = {f.path: self._source(f, sizes) for f in fmt.weights}
            if fmt.weight_format == GGUF:
                return read_gguf_files(weights)
            side = {}
            for f in fmt.files:
                if f.path in _SIDE_FILES and f.path not in side:
                    try:
                        side[f.path] = self._source(f, sizes)
                    except Exception as exc:  # optional files: the weights decide
                        log.info("skipping %s of a model: %s", f.path, exc)
            return read_safetensors_card({**side, **weights})
        except Exception as exc:
            log.warning("could not read the weights' headers: %s", exc)
            return error_card(fmt.weight_format, f"could not read the weights: {exc}")

    def _blob_sizes(self, fmt: ModelFormat) -> dict[str, int]:
        """Stored sizes (checked at upload), rather than the sizes the manifest claims."""
        digests = {f.descriptor.digest for f in fmt.files + fmt.weights}
        with self.db.read() as conn:
            return dict(conn.execute(select(blobs.c.digest, blobs.c.size)
                                     .where(blobs.c.digest.in_(digests))).all())

    def _source(self, f: ModelFile, sizes: dict[str, int]) -> FileSource:
        digest = f.descriptor.digest
        size = sizes.get(digest)
        if size is None:
            raise ValueError(f"the layer holding {f.path} ({digest}) is not stored")
        if f.archive is None:
            return FileSource(lambda: open_blob(self.store, digest, 0, size), size)
        if f.archive != "tar":
            raise ValueError(f"{f.path} is in a {f.archive} layer; its header cannot be "
                             "read without decompressing the whole layer")
        with open_blob(self.store, digest, 0, size) as blob:
            start, length = tar_member(blob, f.path)
        return FileSource(lambda: open_blob(self.store, digest, start, length), length)

    # ---- queries -------------------------------------------------------------------------
    def describe(self, name: str, reference: str) -> ManifestInfo:
        """Manifest ``reference`` (tag or digest) of ``name`` with its sizes and model
        card (None when it is not a model). NameUnknown / ManifestUnknown otherwise."""
        by_digest = is_digest(reference)
        if by_digest:
            parse_digest(reference)
        else:
            check_tag(reference)
        cols = (manifests.c.id, manifests.c.digest, manifests.c.media_type,
                manifests.c.artifact_type)
        if by_digest:
            q = (select(*cols).join(repositories, repositories.c.id == manifests.c.repository_id)
                 .where(repositories.c.name == name, manifests.c.digest == reference))
        else:
            q = (select(*cols).select_from(
                tags.join(manifests, manifests.c.id == tags.c.manifest_id)
                .join(repositories, repositories.c.id == tags.c.repository_id))
                .where(repositories.c.name == name, tags.c.name == reference))
        with self.db.read() as conn:
            row = conn.execute(q).first()
            if row is None:
                if repo_id(conn, name) is None:
                    raise NameUnknown(f"repository {name!r} is not known to this registry")
                raise ManifestUnknown(f"manifest {reference!r} is not in repository {name!r}",
                                      {"reference": reference})
            card = conn.execute(select(models.c.card)
                                .where(models.c.manifest_id == row.id)).scalar()
            logical, unique = int(_logical_size(conn, row.id)), int(_unique_size(conn, row.id))
        return ManifestInfo(name, None if by_digest else reference, row.digest, row.media_type,
                            row.artifact_type, logical, unique,
                            ModelCard.from_json(card) if card else None)

    def card(self, name: str, reference: str) -> ModelCard | None:
        """The model card of a manifest (None when it is not a model)."""
        return self.describe(name, reference).model

    def storage_summary(self) -> StorageSummary:
        with self.db.read() as conn:
            logical = conn.execute(
                select(func.coalesce(func.sum(blobs.c.size), 0))
                .select_from(manifest_references.join(
                    blobs, blobs.c.digest == manifest_references.c.digest))).scalar_one()
            stored, count = conn.execute(
                select(func.coalesce(func.sum(blobs.c.size), 0), func.count())
                .select_from(blobs)).one()
            n_manifests = conn.execute(select(func.count()).select_from(manifests)).scalar_one()
        return StorageSummary(int(logical), int(stored), count, n_manifests)
