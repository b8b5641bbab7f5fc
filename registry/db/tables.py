"""SQLAlchemy 2 models: the registry's metadata. The schema is created only by Alembic.

- ``repositories``: one row per repository name.
- ``blobs``: one row per stored blob (digest, size), shared by the whole registry.
  ``last_linked_at`` is bumped by every operation that makes the blob live (upload
  commit, mount, a manifest referring to it); GC only deletes blobs unreferenced and
  not linked within its grace period, re-checked under the row lock.
- ``repository_blobs``: which repository may read which blob (a push or mount adds a
  row, never a copy).
- ``manifests``: raw bytes exactly as pushed, per repository.
- ``manifest_references``: manifest -> blobs and child manifests it needs.
- ``tags``: repository + name -> manifest.
- ``uploads``: resumable upload sessions, shared by every registry replica.
- ``models``: one row per model manifest: the model card read from its weights' headers
  at push (``card`` holds it in full as JSON; the columns are there to query by), or why
  it could not be read (``error``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DIGEST = String(200)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Blob(Base):
    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                     index=True)


class RepositoryBlob(Base):
    __tablename__ = "repository_blobs"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(
        DIGEST, ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Manifest(Base):
    __tablename__ = "manifests"
    __table_args__ = (
        UniqueConstraint("repository_id", "digest"),
        Index("ix_manifests_subject", "repository_id", "subject_digest"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(DIGEST)
    media_type: Mapped[str] = mapped_column(String(255))
    artifact_type: Mapped[str | None] = mapped_column(String(255))
    subject_digest: Mapped[str | None] = mapped_column(DIGEST)
    annotations: Mapped[str | None] = mapped_column(String)  # JSON text, for referrers
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ManifestReference(Base):
    __tablename__ = "manifest_references"

    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "blob" | "manifest"


class Tag(Base):
    __tablename__ = "tags"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # The request currently writing or committing this session (a random token) and
    # until when its claim holds; see registry.services.uploads.
    writer: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Model(Base):
    __tablename__ = "models"

    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))     # ollama | docker | modelpack | oci
    format: Mapped[str] = mapped_column(String(32))   # gguf | safetensors
    architecture: Mapped[str | None] = mapped_column(String(255))
    parameter_count: Mapped[int | None] = mapped_column(BigInteger)
    quantization: Mapped[str | None] = mapped_column(String(255))
    context_length: Mapped[int | None] = mapped_column(BigInteger)
    embedding_length: Mapped[int | None] = mapped_column(BigInteger)
    chat_template: Mapped[bool | None] = mapped_column(Boolean)
    tokenizer_model: Mapped[str | None] = mapped_column(String(255))
    card: Mapped[str] = mapped_column(Text)            # ModelCard.to_json() as JSON text
    error: Mapped[str | None] = mapped_column(Text)
    logical_size: Mapped[int] = mapped_column(BigInteger)  # sum of the manifest's blobs
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


repositories = Repository.__table__
blobs = Blob.__table__
repository_blobs = RepositoryBlob.__table__
manifests = Manifest.__table__
manifest_references = ManifestReference.__table__
tags = Tag.__table__
uploads = Upload.__table__
models = Model.__table__
