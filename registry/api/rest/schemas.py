"""Models and parameters several REST resources share: the name, tag and digest grammars
as path parameters, and the job, verification and model card objects that more than one
answer carries.

The grammars are not re-declared: the patterns are the server's own (``registry.digests``,
``registry.access.permissions``, ``registry.services.identities``), anchored for JSON
Schema. Answer models document what handlers return (service dicts, unvalidated); request
models (in each resource) validate bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry import digests
from registry.access.permissions import ACTIONS as SCOPE_ACTIONS
from registry.access.permissions import ROLES
from registry.db.queue import STATUSES as JOB_STATUSES
from registry.services import identities
from registry.services.browse import FORMATS, STATUSES

NAME_PATTERN = f"^{digests.NAME_RE.pattern}$"
# One name component: a user's name, which is also their personal namespace.
COMPONENT_PATTERN = f"^{identities.USER_RE.pattern}$"
TAG_PATTERN = f"^{digests.TAG_RE.pattern}$"
DIGEST_PATTERN = "^(?:{})$".format(
    "|".join(f"{alg}:[a-f0-9]{{{n}}}" for alg, n in digests.ALGORITHMS.items()))
SCOPE_PATTERN = rf"^(?:{'|'.join(SCOPE_ACTIONS)})(?::[\s\S]+)?$"
MAX_USER_NAME = 64
EXAMPLE_DIGEST = "sha256:" + "0" * 64
MAX_INT64 = 2**63 - 1

Role = Literal[tuple(ROLES)]
ModelStatus = Literal[STATUSES]
Format = Literal[FORMATS]
# unsupported / not_measured: results on a hardware class without a run
# (registry.services.class_jobs)
Verdict = Literal["passed", "failed", "unsupported", "not_measured"]


def _drop_default(schema: dict) -> None:
    schema.pop("default", None)


def absent(description: str | None = None) -> Any:
    """A field an answer may leave out (documented without a default)."""
    return Field(None, description=description, json_schema_extra=_drop_default)


class Answer(BaseModel):
    """Base of the answer models: documentation of what a handler returns."""

    model_config = ConfigDict(defer_build=True)


class Body(BaseModel):
    """Base of the request-body models: JSON types are not coerced (``"1"`` is not a
    number, ``1`` is not ``true``), and NaN or infinities are refused."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, defer_build=True)


# ---- parameters ------------------------------------------------------------------------------

def path_param(name: str, schema: dict, description: str, example: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema, "example": example}


def query_param(name: str, schema: dict, description: str, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


def integer_id(name: str, description: str) -> dict:
    return path_param(name, {"type": "integer", "minimum": 0, "maximum": MAX_INT64},
                      description, "1")


NAME = path_param("name", {"type": "string", "pattern": NAME_PATTERN,
                           "maxLength": digests.MAX_NAME_LENGTH},
                  "Repository name; it may contain '/' (e.g. team/gemma3).", "library/tiny")
TAG = path_param("reference", {"type": "string", "pattern": TAG_PATTERN}, "A tag.", "latest")
DIGEST = path_param("reference", {"type": "string", "pattern": DIGEST_PATTERN},
                    "A manifest digest.", EXAMPLE_DIGEST)
USER = path_param("user", {"type": "string", "pattern": COMPONENT_PATTERN,
                           "maxLength": MAX_USER_NAME}, "A user or robot name.", "alice")
# Path parameters every route that has them shares; an operation overrides one in its
# ``params`` (``reference`` is a tag or a digest, ``id`` names what it counts).
PATH = {"name": NAME, "user": USER}


# ---- answers several resources share ---------------------------------------------------------

class Job(Answer):
    id: int
    status: Literal[JOB_STATUSES]
    attempts: int
    max_attempts: int
    last_error: str | None
    worker: str | None
    hw_class: str | None = Field(None, alias="class",
                                 description="The hardware class whose workers may claim it; "
                                             "null: any worker.")
    ahead: int = absent("While queued (in a model's detail): the queued jobs a worker "
                        "takes before this one.")


class WorkerPresence(Answer):
    present: int = Field(description="Worker processes seen within the job lease and not "
                                     "stopped.")
    busy: int = Field(description="Of those, how many are running a job.")
    last_seen_at: datetime | None = Field(description="The newest sighting of any worker; "
                                                      "null: none was ever seen.")


class Figures(Answer):
    load_s: float | None = absent()
    prompt_tokens: int | None = absent()
    prompt_tps: float | None = absent()
    generation_tps: float | None = absent()
    ttft_s: float | None = absent()
    tokens_generated: int | None = absent()
    peak_rss_bytes: int | None = absent()
    peak_gpu_bytes: int | None = absent("GPU memory the run used (NVML); null: not measured "
                                        "(no NVIDIA GPU, or no layers offloaded).")
    output: str | None = absent()
    output_sha256: str | None = absent()
    wall_s: float | None = absent()


class ProfileRef(Answer):
    name: str | None
    sha256: str | None = Field(description="sha256 of the profile's canonical JSON.")


class RunResult(Answer):
    """One configuration of the run matrix and what it measured (figures null when the
    backend could not run it: ``unsupported`` says why)."""

    context: int | None
    kv_cache: str | None
    parallel: int | None
    prompt_tokens: int | None = absent("Per sequence.")
    max_tokens: int | None = absent("Generated per sequence.")
    unsupported: str | None = absent("Why the backend cannot run this configuration.")
    prompt_tps: float | None = absent()
    generation_tps: float | None = absent("Per sequence.")
    aggregate_generation_tps: float | None = absent("Summed over the parallel sequences.")
    ttft_s: float | None = absent()
    peak_rss_bytes: int | None = absent()
    tokens_generated: int | None = absent()
    output_sha256: str | None = absent()
    seconds: float | None = absent()


class PromptResult(Answer):
    prompt: str | None = absent()
    chat: bool | None = absent()
    expect: str | None = absent()
    output: str | None = absent()
    matched: bool | None = absent()
    template: str | None = absent("The chat template used, if any.")
    unsupported: str | None = absent()


class QualityResult(Answer):
    perplexity: float | None = absent("On the project's fixed English text.")
    perplexity_tokens: int | None = absent()
    perplexity_s: float | None = absent()
    text_sha256: str | None = absent("sha256 of the text the perplexity was measured on.")
    reference: str | None = absent("The profile's reference model (repo:tag or repo@digest).")
    reference_digest: str | None = absent()
    reference_perplexity: float | None = absent()
    perplexity_ratio: float | None = absent(
        "perplexity / reference_perplexity; null without a verified reference.")
    reference_note: str | None = absent("Why there is no ratio.")
    prompts: list[PromptResult] | None = absent()


class RegressionItem(Answer):
    metric: Literal["generation_tps", "peak_rss_bytes", "perplexity_ratio", "perplexity"]
    run: int | None = Field(description="Index of the run; null for quality.")
    previous: float
    current: float
    change: float = Field(description="(current - previous) / previous.")
    threshold: float


class PreviousVersion(Answer):
    digest: str
    tag: str


class RegressionResult(Answer):
    previous: PreviousVersion | None
    items: list[RegressionItem]
    action: Literal["warn", "fail"]


class Verification(Answer):
    id: int | None = Field(description="Null only before any result (then ``classes`` says "
                                       "what each hardware class waits for).")
    verdict: Verdict | None
    hw_class: str | None = Field(None, alias="class",
                                 description="The hardware class it ran on; null: any worker "
                                             "(a profile naming no class).")
    reason: str | None
    backend: str | None
    backend_version: str | None
    hardware: dict[str, Any] | None
    figures: Figures
    network_isolated: bool | None = Field(
        description="Whether the model ran without network access (a network namespace of "
                    "its own); null: recorded before this was.")
    sandbox: str | None = Field(
        description="How the model was isolated, or why it could not be (\"not isolated: "
                    "...\"); null: recorded before this was.")
    profile: ProfileRef | None = Field(
        description="The profile the model was measured under; null: recorded before "
                    "profiles.")
    runs: list[RunResult] | None = Field(
        description="The run matrix, one entry per configuration.")
    quality: QualityResult | None = Field(
        description="Perplexity, reference ratio, prompts.")
    fit: dict[str, Any] | None = Field(
        description="Memory estimate per context and KV-cache type, and the measured peaks it "
                    "was checked against.")
    regressions: RegressionResult | None = Field(
        description="Against the tag's previous ready version under the same profile; null "
                    "when there is none.")
    log_tail: str | None = Field(
        description="The end of the backend's log (about 4 KiB): errors, warnings and the "
                    "load summary, without per-tensor detail.")
    referrer: str | None = Field(description="Digest of the OCI artifact carrying it.")
    imported: dict[str, Any] | None = absent(
        "Results adopted from another assay's artifact instead of a run here: "
        "{referrer, at, by}.")
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    classes: dict[str, ClassResult] = absent(
        "When the profile names hardware classes: the result on each (in a model's detail).")


class ClassResult(Answer):
    """A model on one hardware class of its profile."""

    required: bool = Field(description="A required class gates the model; an optional one "
                                       "is measured and shown.")
    status: Literal["queued", "running", "passed", "failed", "unsupported", "not_measured",
                    "none"] = Field(description="queued/running while its job is live, else "
                                                "the latest result's verdict; none: never "
                                                "queued on this class.")
    reason: str | None = Field(description="Why it did not pass.")
    waiting: str | None = absent("While queued and no worker of the class is present: "
                                 "what it waits for.")
    job: Job | None
    verification: Verification | None = Field(description="The latest result on the class.")


NAMESPACE_PARAM = path_param(
    "namespace", {"type": "string", "maxLength": digests.MAX_NAME_LENGTH,
                  "pattern": f"^(?:_|{NAME_PATTERN[1:-1]})$"},
    "A repository name or a /-prefix of names ('_': every repository).", "team")
