"""Settings for every assay process, read from ``ASSAY_*`` environment variables.

CLI flags override the environment (``assay serve --port 6000`` beats ``ASSAY_PORT``).
Everything has a default that gives the single-machine setup: SQLite and the filesystem
blob store inside ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from client.outbound import OutboundPolicy, parse_allowlist
from registry.secretbox import parse_keys

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = Path("./data")

    # Metadata: SQLite in data_dir unless a SQLAlchemy URL is given
    # (e.g. postgresql+psycopg://user:pw@host/db).
    database_url: str | None = None

    # Blobs: "filesystem" (under data_dir/storage) or "s3".
    storage: Literal["filesystem", "s3"] = "filesystem"
    storage_dir: Path | None = None
    s3_bucket: str = "assay"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_create_bucket: bool = True
    # Answer blob GETs with a 307 to a presigned S3 URL instead of proxying the bytes.
    s3_presign: bool = False

    # Absolute base URL clients should use (behind a proxy); else taken from the request.
    public_url: str | None = None
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: comma-separated IPs
    # or CIDRs, or "*" when only the proxy can reach the registry (compose). Then the rate
    # limits, failed sign-in limit, upload caps and audit log see the real client address,
    # not the proxy's. None: the headers are ignored (a client could forge them).
    forwarded_allow_ips: str | None = None

    max_manifest_bytes: int = 4 * MiB
    # A request line and headers larger than this are refused (431) before any handler or
    # authentication runs (registry/api/headerlimit.py).
    max_header_bytes: int = 64 * 1024
    upload_expiry_seconds: int = 24 * 3600
    # A request writing an upload holds its write lease this long, renewed every quarter
    # of it while data flows. If the replica dies mid-request, the client can resume the
    # upload (on any replica) once the lease has lapsed.
    upload_lease_seconds: float = 60.0
    gc_grace_seconds: int = 3600
    # fsync blob data before a blob becomes visible: an OS crash never leaves a blob
    # that the database says exists but whose bytes were still in the page cache.
    fsync: bool = True
    # Size of the chunks a blob is served in: 64 KiB (Starlette's default) serves ~5x slower,
    # 4 MiB ~10% faster than 1 MiB (bench/, loopback).
    read_chunk_bytes: int = 4 * MiB
    # Request bodies are written and hashed in batches of this size, off the event loop.
    write_batch_bytes: int = 4 * MiB
    log_level: str = "info"
    # "json": every log line of `assay serve` is one JSON object (time, level, logger,
    # message, request_id) plus one access line per request (registry/api/requestid.py).
    log_format: Literal["text", "json"] = "text"

    # ---- limits (registry/api/ratelimit.py, registry/api/timeouts.py, uploads) --------
    # One upload session may hold this many bytes; a chunk that would pass it gets 413
    # SIZE_INVALID (by its Content-Length up front, else while streaming) and the session
    # stays at its previous offset.
    max_upload_bytes: int = 64 * 1024 * 1024 * MiB
    # Open (unexpired, uncommitted) upload sessions per client (the authenticated user,
    # else the client IP); one more gets 429 TOOMANYREQUESTS. 0: no limit.
    max_concurrent_uploads: int = 32
    # Expired upload sessions (see upload_expiry_seconds) and their data are removed by
    # a sweep in the registry process this often (0: only by `assay gc`).
    upload_sweep_seconds: float = 300.0
    # Requests per second per client IP (token bucket of rate_limit_burst); over it:
    # 429 TOOMANYREQUESTS with Retry-After. 0: off.
    rate_limit_per_second: float = 0
    rate_limit_burst: int = 100
    # A request body that sends nothing for this long is aborted (0: never).
    request_idle_timeout_seconds: float = 60.0
    # Largest page of GET /v2/_catalog and /v2/<name>/tags/list (a larger n is clamped).
    max_page_size: int = 10000

    # ---- verification (see worker/ and verifier/) ----------------------------------
    # Readiness gate default for namespaces without a policy: a pull by tag serves only
    # models that passed verification. Policies per namespace override both of these.
    gate: bool = True
    min_generation_tps: float | None = None
    # Worker processes `assay serve` runs next to the registry (0: none; run `assay worker`).
    workers: int = 1
    verify_max_tokens: int = 32
    verify_timeout_seconds: float = 600.0
    verify_memory_bytes: int = 8 * 1024 * MiB
    verify_threads: int | None = None  # None: the cores split among a pool's workers
    verify_network_isolation: bool = True  # verifier child in its own network namespace
    # A running job whose worker stopped heartbeating this long ago is re-queued.
    job_lease_seconds: float = 60.0
    job_poll_seconds: float = 0.5
    # Where workers materialise models from S3 (LRU, bounded); the filesystem store's
    # blobs are read in place.
    model_cache_dir: Path | None = None
    model_cache_bytes: int = 20 * 1024 * MiB

    # ---- outgoing webhooks (registry/services/events.py, worker/deliver.py) ----------
    # A POST to a subscriber fails after this long (connect, and each read or write).
    webhook_timeout_seconds: float = 10.0
    # Attempts per delivery before it is dead-lettered; the wait between two attempts
    # doubles from webhook_backoff_seconds up to webhook_backoff_max_seconds.
    webhook_max_attempts: int = 10
    webhook_backoff_seconds: float = 10.0
    webhook_backoff_max_seconds: float = 3600.0

    # ---- secrets at rest (registry/secretbox.py) ----------------------------------------
    # Key sealing the secrets the registry keeps in its database and must read back
    # (webhook secrets): 32 random bytes in base64 (`openssl rand -base64 32`); "NEW,OLD"
    # rotates (the first seals, each one opens).
    # Unset (or empty): a key generated once into secrets_key_file (default
    # data_dir/secrets.key, mode 0600), never into the database. Processes that share a
    # database from several machines or containers must share the key.
    secrets_key: str | None = None
    secrets_key_file: Path | None = None

    # ---- outgoing requests (client/outbound.py) --------------------------------
    # Remote validation (and the registries, realms and redirects it is sent to) reaches
    # only globally routable addresses, webhooks anything but loopback, link-local and
    # cloud metadata. Comma-separated entries that open more for both: NAME[:PORT],
    # IP[:PORT], [IPv6][:PORT] or a CIDR network, e.g. "registry.internal:5000,10.0.0.0/8".
    outbound_allow: str | None = None

    # ---- webhooks in: POST /api/v1/hooks/validate (registry/api/rest/hooks.py) ----------
    # A caller proves itself with "Authorization: Bearer <hook_token>" (what a Distribution
    # registry can send: static headers) or "X-Assay-Signature: sha256=<hex HMAC-SHA256
    # of the body keyed with hook_secret>". With neither set the endpoint refuses (403).
    hook_token: str | None = None
    hook_secret: str | None = None
    # A remote reference by tag is resolved to its digest while the hook waits, this long
    # at most; remote models are then pulled by workers into model_cache_dir.
    hook_resolve_timeout_seconds: float = 15.0

    # ---- access control (registry/access/, registry/api/guard.py) ---------------------
    # Off by default (`make run` on loopback); `assay serve --auth` or ASSAY_AUTH=1.
    auth: bool = False
    # Registry-wide anonymous pull; namespaces can also allow it one by one.
    anonymous_pull: bool = False
    # The service name in challenges and bearer tokens' audience.
    auth_service: str = "assay"
    # Lifetime of bearer tokens from GET /auth/token, and of signed blob URLs
    # (Ollama fetches blob parts from the Location without credentials).
    auth_token_seconds: int = 300
    signed_url_seconds: int = 900
    # How far an Ollama signed token request's `ts` may be from our clock.
    ollama_signature_skew_seconds: int = 300
    # Key that signs bearer tokens and blob URLs; by default one is generated and kept
    # in the database, so every replica shares it. Set it to rotate (old tokens die).
    auth_secret: str | None = None
    # A verified password or token is remembered this long, so a chunked upload does not
    # pay argon2 on every request. Revoking a token, removing an Ollama key or deleting a
    # user (and so the bearer tokens issued for them) takes effect on the replica that
    # did it at once, on the others within this time.
    auth_cache_seconds: float = 30.0
    # Who may read the verification records of models in other registries (GET
    # /api/v1/verifications?reference=HOST/...: statuses, reasons, pull errors). None: any
    # signed-in user; a namespace name: those who may pull from that namespace.
    remote_verifications_namespace: str | None = None
    # Wrong passwords or tokens per client IP per minute before that IP gets 429 for
    # the rest of the minute (0: no limit).
    auth_max_failures_per_minute: int = 20

    @field_validator("outbound_allow")
    @classmethod
    def _check_outbound_allow(cls, value: str | None) -> str | None:
        parse_allowlist(value)  # a typo must stop the process, not open or close silently
        return value

    @field_validator("secrets_key")
    @classmethod
    def _check_secrets_key(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_keys(value)  # a bad key must stop the process, not the first delivery
        return value

    @property
    def caller_policy(self) -> OutboundPolicy:
        """Where requests to addresses a caller named may go."""
        return OutboundPolicy.for_callers(self.outbound_allow)

    @property
    def webhook_policy(self) -> OutboundPolicy:
        """Where webhook deliveries may go."""
        return OutboundPolicy.for_webhooks(self.outbound_allow)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'assay.db').resolve()}"

    @property
    def model_cache_root(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "model-cache").resolve()

    @property
    def blob_root(self) -> Path:
        return (self.storage_dir or self.data_dir / "storage").resolve()
