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
- ``tag_history``: every manifest a tag pointed at (the readiness gate's fallback).
- ``uploads``: resumable upload sessions, shared by every registry replica.
- ``models``: one row per model manifest: the model card read from its weights' headers
  at push (``card`` holds it in full as JSON; the columns are there to query by), or why
  it could not be read (``error``).
- ``jobs``: the work queue (verification runs, later webhook deliveries). Only
  ``registry.db.queue.JobQueue`` reads or writes it.
- ``workers``: one row per worker process (``registry.services.workers``): where it runs,
  when it started and was last seen, the job it is running; a clean stop marks the row.
- ``verifications``: one row per verification run of a model manifest (figures, verdict,
  reason, log tail) and the digest of the referrer artifact that carries it.
- ``namespace_policies``: per-namespace readiness gate switch and minimum generation
  speed; the longest matching namespace prefix applies.
- ``namespace_profiles``: per-namespace verification profile (``registry.profiles``);
  the longest matching namespace prefix applies, as for policies.
- ``remote_models``: models in other registries verified on a webhook's request.
- ``webhooks``, ``deliveries``: outgoing subscriptions and their outbox.
- ``users``, ``access_tokens``, ``user_keys``: identities (people and robots), their
  personal access tokens (stored as sha256) and registered Ollama ed25519 public keys.
- ``namespaces``, ``namespace_members``: per-namespace anonymous-pull switch, quota,
  retention policy (``registry.maintenance.retention``) and roles (read, write, admin);
  see ``registry.access.permissions``.
- ``auth_nonces``: Ollama signed token requests already seen (replay protection).
- ``secrets``: generated keys every replica shares (the token-signing key).
- ``audit_log``: pushes, deletes, permission changes and gate overrides, by whom.
- ``hardware_classes``: named selectors over workers' capabilities and labels.
- ``mirrors``: namespaces that mirror an upstream registry (``registry.services.mirrors``);
  ``mirror_tags`` when each mirrored tag was last checked upstream and last pulled,
  ``mirror_pending`` upstream manifests served while their blobs are still being fetched,
  ``mirror_fetches`` the lease of the one process fetching a given blob.

A model manifest's lifecycle lives in ``manifests.status``: NULL for non-model content
(never gated), else ``queued -> verifying -> ready | failed``. An admin override of a
failed model is recorded in the ``override_*`` columns, never by rewriting ``status``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DIGEST = String(200)
# What a namespace's retention never deletes until told otherwise (a JSON list of globs).
DEFAULT_PROTECTED_TAGS = '["latest"]'


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored timestamp in UTC: SQLite hands them back naive (they were written in UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """A stored timestamp as ISO 8601 in UTC (``2024-05-01T12:00:00.123456+00:00``, the
    microseconds only when non-zero), or None for None: the one format the API answers with."""
    return None if value is None else as_utc(value).isoformat()


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
    # Set by ``assay scrub --quarantine`` when the stored bytes no longer hash to the
    # digest: the bytes are moved aside and the blob is not served until pushed again.
    quarantined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When scrub last re-hashed these bytes (None: never), so runs can resume oldest-first.
    scrubbed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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
    # Model lifecycle (NULL: not a model, never gated). See the module docstring.
    status: Mapped[str | None] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    override_by: Mapped[str | None] = mapped_column(String(255))
    override_reason: Mapped[str | None] = mapped_column(Text)
    override_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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


class TagHistory(Base):
    """Every manifest a tag has pointed at, newest ``pushed_at`` first: the readiness gate
    serves the newest *ready* one while a newer push is still verifying."""

    __tablename__ = "tag_history"
    __table_args__ = (Index("ix_tag_history_lookup", "repository_id", "tag", "pushed_at"),)

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True, index=True)
    pushed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # Who opened the session (the authenticated user, else the client IP): open sessions
    # are counted per owner for ``max_concurrent_uploads``.
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
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


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "status", "run_after"),
        Index("uq_jobs_live_dedupe_key", "dedupe_key", unique=True,
              sqlite_where=text("status IN ('queued', 'running')"),
              postgresql_where=text("status IN ('queued', 'running')")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    # queued | running | done | failed (failed: out of attempts or a permanent error)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # Two live jobs never share a key (e.g. "verify:<manifest id>"): enqueueing an
    # existing queued/running key is a no-op, so re-runs are idempotent.
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(255))
    locked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Only a worker of this hardware class may claim the job (NULL: any worker).
    hw_class: Mapped[str | None] = mapped_column(String(64))


class Worker(Base):
    """A worker process, as it last reported itself. Only ``registry.services.workers``
    reads or writes it."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # the claimer id
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                   index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    job_id: Mapped[int | None] = mapped_column(BigInteger)  # the job it runs; None: idle
    # What it is and can run (verifier.capabilities.detect, with the operator's override)
    # and its operator's labels: JSON objects, announced when it starts.
    capabilities: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[str | None] = mapped_column(Text)


class Verification(Base):
    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Exactly one of manifest_id (a model stored here) and remote_model_id is set.
    manifest_id: Mapped[int | None] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), index=True)
    remote_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("remote_models.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    # passed | failed; for a hardware class also unsupported (no worker of the class has
    # the backend the model needs) or not_measured (an optional class nobody served)
    verdict: Mapped[str] = mapped_column(String(16))
    # The hardware class it was measured on (NULL: any worker, a profile without classes).
    hw_class: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    backend: Mapped[str | None] = mapped_column(String(64))
    backend_version: Mapped[str | None] = mapped_column(String(64))
    generation_tps: Mapped[float | None] = mapped_column(Float)
    report: Mapped[str] = mapped_column(Text)  # verifier Report as JSON, in full
    log_tail: Mapped[str | None] = mapped_column(Text)
    referrer_digest: Mapped[str | None] = mapped_column(DIGEST)
    worker: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Figures of ``report`` that listings filter and sort on, copied when it is recorded
    # (``registry.services.report_columns``, which also says how the fit line is made);
    # NULL when the report has none.
    perplexity: Mapped[float | None] = mapped_column(Float)
    regression_count: Mapped[int | None] = mapped_column(Integer)
    fit_f16_base_bytes: Mapped[int | None] = mapped_column(BigInteger)
    fit_f16_bytes_per_token: Mapped[float | None] = mapped_column(Float)
    fit_q8_0_base_bytes: Mapped[int | None] = mapped_column(BigInteger)
    fit_q8_0_bytes_per_token: Mapped[float | None] = mapped_column(Float)
    fit_q4_0_base_bytes: Mapped[int | None] = mapped_column(BigInteger)
    fit_q4_0_bytes_per_token: Mapped[float | None] = mapped_column(Float)


class RemoteModel(Base):
    """A model in *another* OCI registry that a webhook asked us to verify (read-only:
    its manifest is kept here, its blobs are fetched by the worker when it runs)."""

    __tablename__ = "remote_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Canonical "HOST[:PORT]/NAME@sha256:..." (the tag, if any, is kept in ``tag``).
    reference: Mapped[str] = mapped_column(String(1024), unique=True)
    # Column "registry"; the attribute may not be called that (SQLAlchemy's declarative
    # base reserves ``registry``).
    registry_host: Mapped[str] = mapped_column("registry", String(255))
    repository: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(DIGEST)
    media_type: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)  # the manifest, once fetched
    status: Mapped[str] = mapped_column(String(16), default="queued")
    status_reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(32))  # distribution|cloudevents|plain
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Webhook(Base):
    """An outgoing webhook subscription."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    # Sealed (registry.secretbox): a sealed secret of 255 characters outgrows 255.
    secret: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)  # JSON list of actions; [] means every event
    repository_pattern: Mapped[str | None] = mapped_column(String(255))  # fnmatch glob
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Delivery(Base):
    """The outbox: one row per (event, subscription), written in the transaction of the
    change that caused the event; its delivery attempts are recorded on the row."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_webhook", "webhook_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON sent (what is signed)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NamespacePolicy(Base):
    __tablename__ = "namespace_policies"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    gate: Mapped[bool] = mapped_column(Boolean, default=True)
    min_generation_tps: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NamespaceProfile(Base):
    """The verification profile of a namespace (``registry.profiles``): its canonical JSON
    with every default spelled out, and that JSON's sha256 (what results record)."""

    __tablename__ = "namespace_profiles"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(71))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    """A person (password, argon2id hash) or a robot (no password: tokens only)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_robot: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccessToken(Base):
    """A personal access token. Only its sha256 is stored (tokens are 190 random bits:
    a slow hash buys nothing); ``prefix`` is shown so people can tell tokens apart."""

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(Text)  # JSON list, e.g. ["pull", "push:team"]
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserKey(Base):
    """An Ollama public key (``ssh-ed25519 AAAA...``): its base64 wire form is what the
    Ollama client sends in a signed token request."""

    __tablename__ = "user_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    public_key: Mapped[str] = mapped_column(String(128), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Namespace(Base):
    """A namespace (a repository name's first segment): anonymous-pull switch, quota, retention."""

    __tablename__ = "namespaces"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    anonymous_pull: Mapped[bool] = mapped_column(Boolean, default=False)
    # Storage quota in bytes (None: unlimited): the distinct blobs linked to the
    # namespace's repositories may not exceed it.
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Retention (None: that rule is off; see registry.maintenance.retention): keep the
    # newest N tags and the newest N ready tags of each repository, delete untagged
    # manifests older than D days, and never delete tags matching the protected globs
    # (a JSON list of strings).
    keep_tags: Mapped[int | None] = mapped_column(Integer)
    keep_ready: Mapped[int | None] = mapped_column(Integer)
    untagged_days: Mapped[int | None] = mapped_column(Integer)
    protected_tags: Mapped[str] = mapped_column(Text, default=DEFAULT_PROTECTED_TAGS,
                                                server_default=DEFAULT_PROTECTED_TAGS)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NamespaceMember(Base):
    __tablename__ = "namespace_members"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))  # read | write | admin
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuthNonce(Base):
    __tablename__ = "auth_nonces"

    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Secret(Base):
    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(64), index=True)  # None: anonymous
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(1024))
    detail: Mapped[str | None] = mapped_column(Text)  # JSON


class HardwareClass(Base):
    """A hardware class: a named selector over workers' capabilities and labels
    (``registry.capabilities.matches``)."""

    __tablename__ = "hardware_classes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    selector: Mapped[str] = mapped_column(Text)  # JSON, checked by check_selector
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Mirror(Base):
    """A namespace that mirrors an upstream registry: pulls of what it lacks are fetched."""

    __tablename__ = "mirrors"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # ollama | oci | hf
    url: Mapped[str] = mapped_column(Text)  # its path is the upstream's name prefix
    username: Mapped[str | None] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(Text)  # sealed (registry.secretbox)
    refresh_seconds: Mapped[int] = mapped_column(Integer)
    verify_first: Mapped[bool] = mapped_column(Boolean, default=False)
    keep_days: Mapped[int | None] = mapped_column(Integer)  # drop tags unpulled this long
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MirrorTag(Base):
    """A mirrored tag: the upstream digest at its last check, and its last pull."""

    __tablename__ = "mirror_tags"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(100))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    pulled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MirrorPending(Base):
    """An upstream manifest served while its blobs are fetched; stored as a manifest
    (and verified) once every blob it needs is."""

    __tablename__ = "mirror_pending"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(100), primary_key=True)
    tag: Mapped[str | None] = mapped_column(String(128))
    media_type: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MirrorFetch(Base):
    """Who is fetching a blob from an upstream now (one fetch per blob, any replica)."""

    __tablename__ = "mirror_fetches"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


repositories = Repository.__table__
blobs = Blob.__table__
repository_blobs = RepositoryBlob.__table__
manifests = Manifest.__table__
manifest_references = ManifestReference.__table__
tags = Tag.__table__
tag_history = TagHistory.__table__
uploads = Upload.__table__
models = Model.__table__
jobs = Job.__table__
workers = Worker.__table__
verifications = Verification.__table__
namespace_policies = NamespacePolicy.__table__
namespace_profiles = NamespaceProfile.__table__
remote_models = RemoteModel.__table__
webhooks = Webhook.__table__
deliveries = Delivery.__table__
users = User.__table__
access_tokens = AccessToken.__table__
user_keys = UserKey.__table__
namespaces = Namespace.__table__
namespace_members = NamespaceMember.__table__
auth_nonces = AuthNonce.__table__
secrets = Secret.__table__
audit_log = AuditEntry.__table__
mirrors = Mirror.__table__
hardware_classes = HardwareClass.__table__
mirror_tags = MirrorTag.__table__
mirror_pending = MirrorPending.__table__
mirror_fetches = MirrorFetch.__table__
