"""Settings for every assay process, read from ``ASSAY_*`` environment variables.

CLI flags override the environment (``assay serve --port 6000`` beats ``ASSAY_PORT``).
Everything has a default that gives the single-machine setup: SQLite and the filesystem
blob store inside ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from client.outbound import OutboundPolicy, parse_allowlist
from registry.capabilities import parse_labels, parse_override
from registry.errors import RegistryError
from registry.profiles import Profile, builtin_or_file
from registry.secretbox import parse_keys

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Every ``ASSAY_*`` setting. Each field's ``description`` is its documentation:
    ``docs/configuration.md`` is generated from it (``python -m registry.settings_doc``)."""

    model_config = SettingsConfigDict(env_prefix="ASSAY_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind (`assay serve --host`).")
    port: int = Field(5000, description="Port to listen on (`assay serve --port`).")
    data_dir: Path = Field(
        Path("./data"),
        description="Where the SQLite database and the filesystem blob store live "
        "(`--data-dir`).")

    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata database, e.g. "
        "`postgresql+psycopg://user:pw@host/db`. Unset: SQLite (WAL) at "
        "`<data dir>/assay.db`.")

    storage: Literal["filesystem", "s3"] = Field(
        "filesystem", description="Blob store: `filesystem` (under `ASSAY_STORAGE_DIR`) or `s3`.")
    storage_dir: Path | None = Field(
        None, description="Root of the filesystem blob store. Unset: `<data dir>/storage`.")
    s3_bucket: str = Field("assay", description="S3 bucket holding blobs and upload chunks.")
    s3_prefix: str = Field("", description="Key prefix inside the S3 bucket.")
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 endpoint, e.g. `http://minio:9000`. Unset: AWS.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: str | None = Field(
        None, description="S3 access key. Unset: boto3's credential chain.")
    s3_secret_access_key: str | None = Field(
        None, description="S3 secret key. Unset: boto3's credential chain.")
    s3_create_bucket: bool = Field(
        True, description="Create the S3 bucket at start if it is missing.")
    s3_presign: bool = Field(
        False,
        description="Answer blob GETs with a 307 to a presigned S3 URL instead of proxying "
        "the bytes (only when clients can reach the S3 endpoint).")

    public_url: str | None = Field(
        None,
        description="Absolute base URL clients use (behind a proxy), for `Location` "
        "headers and webhook `target.url`s; a hook reference with this host is a local "
        "model. Unset: taken from the request.")
    forwarded_allow_ips: str | None = Field(
        None,
        description="Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed: "
        "comma-separated IPs or CIDRs, or `*` when only the proxy can reach the registry "
        "(compose). Then the rate limits, failed sign-in limit, upload caps and audit log see "
        "the real client address, not the proxy's. Unset: the headers are ignored (a client "
        "could forge them).")

    max_manifest_bytes: int = Field(
        4 * MiB, description="Largest manifest accepted; a larger one gets 413 "
        "`MANIFEST_INVALID`.")
    max_header_bytes: int = Field(
        64 * 1024,
        description="Largest request line and headers together; a larger head gets 431 and "
        "the connection closes, before authentication or any handler runs.")
    upload_expiry_seconds: int = Field(
        24 * 3600,
        description="An upload session untouched this long expires: every request to it "
        "gets 404 `BLOB_UPLOAD_UNKNOWN`.")
    upload_lease_seconds: float = Field(
        60.0,
        description="A request writing an upload holds its write lease this long, renewed "
        "every quarter of it while data flows. If a replica dies mid-request, the client can "
        "resume the upload on any replica once the lease has lapsed (until then a chunk gets "
        "416 `BLOB_UPLOAD_INVALID`).")
    gc_grace_seconds: int = Field(
        3600,
        description="`assay gc` keeps unreferenced blobs (and repository links) younger "
        "than this.")
    fsync: bool = Field(
        True,
        description="Make blob data durable before a blob becomes visible: an OS crash never "
        "leaves a blob that the database says exists but whose bytes were still in the page "
        "cache.")
    read_chunk_bytes: int = Field(
        4 * MiB,
        description="Size of the chunks a blob is served in (64 KiB serves ~5x slower, "
        "4 MiB ~10% faster than 1 MiB on loopback).")
    write_batch_bytes: int = Field(
        4 * MiB,
        description="Request bodies are written and hashed in batches of this size, off the "
        "event loop.")
    log_level: str = Field("info", description="Log level (uvicorn's names; `--log-level`).")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: every log line of `assay serve` is one JSON object (`time`, "
        "`level`, `logger`, `message`, `request_id`) plus one access line per request.")

    # ---- limits (registry/api/ratelimit.py, registry/api/timeouts.py, uploads) --------
    max_upload_bytes: int = Field(
        64 * 1024 * 1024 * MiB,
        description="Bytes one upload session may hold. A chunk, final PUT or monolithic POST "
        "that would pass it gets 413 `SIZE_INVALID` (by its `Content-Length` up front, else "
        "while streaming) and the session stays at its previous offset.")
    max_concurrent_uploads: int = Field(
        32,
        description="Open (unexpired, uncommitted) upload sessions per client (the "
        "authenticated user, else the client IP); one more gets 429 `TOOMANYREQUESTS`. "
        "0: no limit.")
    upload_sweep_seconds: float = Field(
        300.0,
        description="How often the registry process removes expired upload sessions and "
        "their data. 0: only `assay gc` does.")
    rate_limit_per_second: float = Field(
        0,
        description="Requests per second per client IP, per process (a token bucket of "
        "`ASSAY_RATE_LIMIT_BURST`); over it: 429 `TOOMANYREQUESTS` with `Retry-After`. 0: off.")
    rate_limit_burst: int = Field(
        100, description="Size of the per-client token bucket of `ASSAY_RATE_LIMIT_PER_SECOND`.")
    request_idle_timeout_seconds: float = Field(
        60.0,
        description="A request body that sends nothing for this long is aborted (400 "
        "`BLOB_UPLOAD_INVALID`). 0: never.")
    max_page_size: int = Field(
        10000,
        description="Largest page of `GET /v2/_catalog` and `/v2/<name>/tags/list`; a larger "
        "`n` is clamped.")

    # ---- verification (see worker/ and verifier/) ----------------------------------
    gate: bool = Field(
        True,
        description="Readiness gate for namespaces without a policy: a pull by tag serves "
        "only models that passed verification.")
    min_generation_tps: float | None = Field(
        None,
        description="Speed floor (generation tokens/s) for namespaces without a policy. "
        "Unset: none.")
    workers: int = Field(
        1,
        description="Verification worker processes `assay serve` runs next to the registry "
        "(`serve --workers`; 0: none, run `assay worker`).")
    verify_max_tokens: int = Field(32, description="Tokens each verification decodes.")
    verify_timeout_seconds: float = Field(
        600.0,
        description="Hard limit per verification (start, load, prompt and generation).")
    verify_memory_bytes: int = Field(
        8 * 1024 * MiB,
        description="Resident memory the model's process may use beyond the size of its "
        "weights; the limit never exceeds the memory the worker's capabilities report.")
    verify_threads: int | None = Field(
        None,
        description="Compute threads per verification. Unset: the cores split among the "
        "process's workers (`serve --workers`, `worker --concurrency`), else the cores the "
        "worker's capabilities report; separate worker processes or containers on one host "
        "do not know of each other, so set it for them.")
    verify_gpu_layers: int | None = Field(
        None, ge=-1,
        description="Layers llama.cpp offloads to the GPU in each verification "
        "(`n_gpu_layers`; -1: all, 0: none). Unset: all when the worker's llama-cpp-python "
        "is a GPU build (CUDA, Metal, Vulkan, ROCm), none on a CPU build. MLX has nothing "
        "to offload and ignores it. See `docs/gpu.md`.")
    default_profile: str = Field(
        "default",
        description="The verification profile for repositories whose namespaces set none: "
        "`default` (smoke check, perplexity, prompts and a run matrix), `smoke` (load and "
        "decode only) or the path of a YAML/JSON profile file.")
    verify_network_isolation: bool = Field(
        True,
        description="Run the verification child in its own empty network namespace.")
    job_lease_seconds: float = Field(
        60.0,
        description="A running job whose worker sent no heartbeat this long is re-queued.")
    job_poll_seconds: float = Field(
        0.5, description="How often an idle worker looks for jobs.")
    model_cache_dir: Path | None = Field(
        None,
        description="Where workers keep models fetched from S3 or from other registries "
        "(LRU; the filesystem store's blobs are read in place). Unset: "
        "`<data dir>/model-cache`.")
    model_cache_bytes: int = Field(
        20 * 1024 * MiB, description="Size bound of the workers' model cache.")
    worker_labels: str | None = Field(
        None,
        description="Labels a worker process advertises next to what it detects, "
        "comma-separated `key=value` (`site=lab2,tier=big`); hardware classes may select "
        "workers by them.")
    worker_capabilities: str | None = Field(
        None,
        description="A JSON object merged over the capabilities a worker detects, key by key "
        "(`{\"accelerator\": {\"kind\": \"cuda\", \"memory_bytes\": 25769803776}}`; a backend "
        "set to null is removed). It changes what the worker is matched on, not what it can "
        "run: for tests that play several machines on one, and for a detection that is "
        "wrong.")

    # ---- outgoing webhooks (registry/services/events.py, worker/deliver.py) ----------
    webhook_timeout_seconds: float = Field(
        10.0,
        description="One outgoing webhook delivery attempt fails after this long (connect, "
        "and each read or write).")
    webhook_max_attempts: int = Field(
        10, description="Attempts per delivery before it is dead-lettered (`dead`).")
    webhook_backoff_seconds: float = Field(
        10.0,
        description="First wait between two delivery attempts; it doubles up to "
        "`ASSAY_WEBHOOK_BACKOFF_MAX_SECONDS`.")
    webhook_backoff_max_seconds: float = Field(
        3600.0, description="Longest wait between two delivery attempts.")

    # ---- secrets at rest (registry/secretbox.py) ----------------------------------------
    secrets_key: str | None = Field(
        None,
        description="Key sealing the secrets the registry keeps in its database and must read "
        "back (webhook secrets): 32 random bytes in base64 (`openssl rand -base64 32`); "
        "`NEW,OLD` rotates (the first seals, each one opens). Never stored in the database. "
        "Unset or empty: the key in `ASSAY_SECRETS_KEY_FILE`. Processes sharing a database from "
        "several machines or containers must share the key.")
    secrets_key_file: Path | None = Field(
        None,
        description="Used when `ASSAY_SECRETS_KEY` is unset; generated (mode 0600) if missing. "
        "Unset: `<data dir>/secrets.key`.")

    # ---- outgoing requests (client/outbound.py) --------------------------------
    outbound_allow: str | None = Field(
        None,
        description="Addresses outgoing requests may reach besides the defaults (remote "
        "validation, with the registries, realms and redirects it is sent to, reaches only "
        "globally routable addresses; webhooks anything but loopback, link-local and cloud "
        "metadata). Comma-separated `NAME[:PORT]`, `IP[:PORT]`, `[IPv6][:PORT]` or CIDR "
        "entries, e.g. `registry.internal:5000,10.0.0.0/8`; a typo stops the process.")

    # ---- webhooks in: POST /api/v1/hooks/validate (registry/api/rest/hooks.py) ----------
    hook_token: str | None = Field(
        None,
        description="`Authorization: Bearer` token `POST /api/v1/hooks/validate` accepts "
        "(what a Distribution registry can send: static headers). With neither this nor "
        "`ASSAY_HOOK_SECRET` set the endpoint refuses (403).")
    hook_secret: str | None = Field(
        None,
        description="HMAC-SHA256 key for `X-Assay-Signature: sha256=<hex>` over the body of "
        "`POST /api/v1/hooks/validate`.")
    hook_resolve_timeout_seconds: float = Field(
        15.0,
        description="Longest time a remote reference by tag is resolved to its digest while "
        "the hook waits; the model is then pulled by a worker into the model cache.")

    # ---- access control (registry/access/, registry/api/guard.py) ---------------------
    auth: bool = Field(
        False,
        description="Require credentials (`assay serve --auth`). Off by default: `make run` "
        "on loopback needs no accounts.")
    anonymous_pull: bool = Field(
        False,
        description="Anyone may pull from every namespace (namespaces can also allow it one "
        "by one).")
    auth_service: str = Field(
        "assay", description="The service name in challenges and bearer tokens' audience.")
    auth_token_seconds: int = Field(
        300, description="Lifetime of bearer tokens from `GET /auth/token`.")
    signed_url_seconds: int = Field(
        900,
        description="Lifetime of signed blob URLs (Ollama fetches blob parts from the "
        "`Location` without credentials).")
    ollama_signature_skew_seconds: int = Field(
        300,
        description="How far the `ts` of Ollama's signed token request may be from the "
        "registry's clock.")
    auth_secret: str | None = Field(
        None,
        description="Key that signs bearer tokens and blob URLs. Unset: one is generated "
        "once and kept in the database, so every replica shares it. Set it to choose or "
        "rotate it (old tokens die).")
    auth_cache_seconds: float = Field(
        30.0,
        description="How long a verified password or token is remembered, so a chunked "
        "upload pays argon2 once. Revocations take effect at once on the replica that made "
        "them, on the others within this time.")
    remote_verifications_namespace: str | None = Field(
        None,
        description="With auth on, who may read the verification records of models in other "
        "registries (`GET /api/v1/verifications?reference=HOST/...`): those who may pull "
        "from this namespace. Unset: any signed-in user.")
    auth_max_failures_per_minute: int = Field(
        20,
        description="Wrong passwords or tokens per client IP per minute before that IP gets "
        "429 for the rest of the minute. 0: no limit.")

    @field_validator("outbound_allow")
    @classmethod
    def _check_outbound_allow(cls, value: str | None) -> str | None:
        parse_allowlist(value)  # a typo must stop the process, not open or close silently
        return value

    @field_validator("worker_labels")
    @classmethod
    def _check_worker_labels(cls, value: str | None) -> str | None:
        parse_labels(value)  # a typo must stop the worker, not match no class silently
        return value

    @field_validator("worker_capabilities")
    @classmethod
    def _check_worker_capabilities(cls, value: str | None) -> str | None:
        parse_override(value)
        return value

    @field_validator("default_profile")
    @classmethod
    def _check_default_profile(cls, value: str) -> str:
        try:  # a typo must stop the process, not fail every verification
            builtin_or_file(value)
        except (OSError, RegistryError) as exc:
            raise ValueError(f"not a built-in profile (default, smoke) nor a readable "
                             f"profile file: {exc}") from None
        return value

    @property
    def profile(self) -> Profile:
        """The ``Profile`` that ``default_profile`` names."""
        return builtin_or_file(self.default_profile)

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
