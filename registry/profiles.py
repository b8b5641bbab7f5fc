"""Verification profiles: what a verification measures and the limits a model must meet
(pure: no web, database or storage imports).

A profile is a YAML or JSON document, validated here with an error that names the bad
field (``runs[1].kv_cache: Input should be 'f16', 'q8_0' or 'q4_0'``)::

    name: team-default
    runs:                      # the run matrix: one measurement per configuration
      - {context: 2048, kv_cache: f16, parallel: 1, prompt_tokens: 128, max_tokens: 32}
      - {context: 2048, kv_cache: q8_0, parallel: 4, prompt_tokens: 64, max_tokens: 32}
    quality:
      perplexity: true         # over the project's fixed English text
      reference: team/gemma3-f16:v1   # optional: another model here, for a ratio
      prompts:
        - {prompt: "The capital of France is", expect: "Paris"}
        - {prompt: "Say hello.", chat: true, expect: "(?i)hello"}
    limits:
      min_generation_tps: 5    # every configuration, per sequence
      max_peak_memory: 4GiB
      max_perplexity: 1000     # refuses garbage weights, not small honest models
      max_perplexity_ratio: 1.5
      prompts_must_match: true
    regressions:               # against the tag's previous ready version, same profile
      generation_tps: 0.10     # a drop of more than 10% ...
      memory: 0.10             # ... a growth of more than 10% ...
      perplexity_ratio: 0.05
      action: warn             # warn (record, show, notify) or fail (keep serving the old)
    classes:                   # hardware classes (assay class set ...) it is verified on
      required: [cpu, apple]   # ready once it passed on every one of these
      optional: [cuda]         # measured when such a worker exists ...
      optional_timeout: 24h    # ... within this long, else "not measured"

Every field has a default, the built-in default's, so ``{}`` is the built-in profile
(``DEFAULT_PROFILE``) and a document says only where it differs. ``runs: []`` with
``quality: {perplexity: false, prompts: []}`` is the smoke check alone (``SMOKE_PROFILE``).
A profile is identified by the sha256 of its canonical JSON (``Profile.sha256``): every
result records the profile and its hash, and two documents that differ only in layout,
key order or defaults spelled out have the same hash. ``classes`` says *where* a model is
measured, not what: it is left out of the hash (and out of the JSON when no class is
named), so naming classes keeps every result comparable with the ones before.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from registry import jsontext
from registry.errors import RequestInvalid

KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
MAX_PROFILE_BYTES = 64 * 1024
MAX_CONTEXT = 1 << 20

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RunConfig(_Strict):
    """One configuration of the run matrix. ``parallel`` sequences are decoded together
    in one context of ``context`` tokens (as llama.cpp's server batches them), so each
    needs ``prompt_tokens + max_tokens`` of it."""

    context: int = Field(2048, ge=128, le=MAX_CONTEXT)
    kv_cache: Literal["f16", "q8_0", "q4_0"] = "f16"
    parallel: int = Field(1, ge=1, le=64)
    prompt_tokens: int = Field(128, ge=1)
    max_tokens: int = Field(32, ge=1, le=4096)

    @model_validator(mode="after")
    def _fits(self) -> RunConfig:
        need = self.parallel * (self.prompt_tokens + self.max_tokens)
        if need > self.context:
            raise ValueError(f"parallel x (prompt_tokens + max_tokens) = {need} tokens does "
                             f"not fit in a context of {self.context}")
        return self


class PromptCheck(_Strict):
    """A prompt whose greedy answer must match ``expect`` (a Python regular expression,
    searched anywhere in the answer). ``chat``: render the model's own chat template."""

    prompt: str = Field(min_length=1, max_length=4000)
    expect: str = Field(min_length=1, max_length=500)
    chat: bool = False
    max_tokens: int = Field(32, ge=1, le=512)

    @field_validator("expect")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


# The built-in default (every field's default), sized so that Gemma 3 270M finishes in
# well under a minute on two cores: after the smoke check, perplexity on the project's text
# (garbage weights score in the thousands, honest small models in the tens), two prompts,
# and a run matrix of one user with an f16 and a q8_0 K/V cache and four users at once.
def _default_runs() -> list[RunConfig]:
    return [RunConfig(context=4096, kv_cache="f16"), RunConfig(context=4096, kv_cache="q8_0"),
            RunConfig(context=4096, kv_cache="f16", parallel=4)]


def _default_prompts() -> list[PromptCheck]:
    # Raw completions that a base model answers as well as an instruction-tuned one (Gemma 3
    # 270M completes "The capital of France is" with "the capital of the country of France",
    # so that prompt would refuse an honest model); chat prompts belong in a team's profile,
    # for models that carry a chat template.
    return [PromptCheck(prompt="The Eiffel Tower is in the city of", expect="(?i)paris"),
            PromptCheck(prompt="Q: What is the capital of France?\nA:", expect="(?i)paris")]


class Quality(_Strict):
    perplexity: bool = True
    # A model in this registry (``repo:tag`` or ``repo@sha256:...``) scored on the same
    # text, so that the ratio says how much the quantization costs.
    reference: str | None = Field(None, min_length=1, max_length=512)
    prompts: list[PromptCheck] = Field(default_factory=_default_prompts, max_length=32)


class Limits(_Strict):
    min_generation_tps: Positive | None = None
    max_peak_memory: ByteSize | None = None
    max_perplexity: Positive | None = 1000.0
    max_perplexity_ratio: Positive | None = None
    prompts_must_match: bool = True


class Regressions(_Strict):
    """Relative thresholds against the tag's previous ready version (0.10 = 10%)."""

    generation_tps: Fraction = 0.10
    memory: Fraction = 0.10
    perplexity_ratio: Fraction = 0.05
    action: Literal["warn", "fail"] = "warn"


CLASS_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # as registry.services.classes names them
ClassName = Annotated[str, Field(pattern=CLASS_NAME)]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Classes(_Strict):
    """The hardware classes a model is verified on: one verification per class. Empty
    (the default): one verification by any worker, as without classes."""

    required: list[ClassName] = Field(default_factory=list, max_length=16)
    optional: list[ClassName] = Field(default_factory=list, max_length=16)
    # Seconds (or "90m", "24h", "2d") an optional class may wait for a worker before its
    # result is "not measured".
    optional_timeout: int = Field(86400, ge=60, le=90 * 86400)

    @field_validator("optional_timeout", mode="before")
    @classmethod
    def _duration(cls, value):
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", value)
            if m is None:
                raise ValueError("a duration is seconds or a number with s, m, h or d")
            return int(m.group(1)) * _UNITS[m.group(2) or "s"]
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Classes:
        for field in ("required", "optional"):
            names = getattr(self, field)
            if len(set(names)) != len(names):
                raise ValueError(f"{field} names a class twice")
        both = set(self.required) & set(self.optional)
        if both:
            raise ValueError(f"class {sorted(both)[0]!r} is both required and optional")
        return self

    @property
    def names(self) -> list[str]:
        return [*self.required, *self.optional]


class Profile(_Strict):
    name: str = Field("default", min_length=1, max_length=64,
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    runs: list[RunConfig] = Field(default_factory=_default_runs, max_length=16)
    quality: Quality = Field(default_factory=Quality)
    limits: Limits = Field(default_factory=Limits)
    regressions: Regressions = Field(default_factory=Regressions)
    classes: Classes = Field(default_factory=Classes)

    def to_json(self) -> dict[str, Any]:
        """The profile with every default spelled out (JSON types only); ``classes`` only
        when it names one."""
        document = self.model_dump(mode="json")
        if not self.classes.names:
            del document["classes"]
        return document

    def measured(self) -> dict[str, Any]:
        """``to_json`` without ``classes``: what a result was measured under."""
        document = self.to_json()
        document.pop("classes", None)
        return document

    def recorded(self) -> dict[str, Any]:
        """What a result records of the profile it was measured under."""
        return {"name": self.name, "sha256": self.sha256, "document": self.measured()}

    @property
    def sha256(self) -> str:
        """``sha256:<hex>`` of the measured part's canonical JSON: the identity results
        record (the same whatever classes it names)."""
        canonical = json.dumps(self.measured(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class _ProfileLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: ``*name`` repeats a node without copying it, so
    a few kilobytes of nested aliases would make validation walk billions of nodes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a profile",
                self.peek_event().start_mark)
        return super().compose_node(parent, index)


def validate_profile(document: Any) -> Profile:
    """``document`` (already parsed) as a ``Profile``; ``RequestInvalid`` naming the first
    bad field otherwise."""
    if not isinstance(document, dict):
        raise RequestInvalid("a profile must be a mapping (a YAML or JSON object)")
    try:
        return Profile.model_validate(document)
    except ValidationError as exc:
        raise RequestInvalid(f"invalid profile: {error_line(exc)}") from None


def parse_profile(text: str | bytes) -> Profile:
    """A profile from YAML or JSON text (JSON is YAML; it is tried first for its exact
    number parsing); empty text is the default profile. ``RequestInvalid`` with a one-line
    reason when it is neither, not a mapping, or when a field is wrong."""
    if len(text) > MAX_PROFILE_BYTES:
        raise RequestInvalid(f"a profile may be at most {MAX_PROFILE_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestInvalid("a profile must be UTF-8 text") from None
    if not text.strip():
        return validate_profile({})
    try:
        document = jsontext.loads(text)
    except ValueError:
        try:
            document = yaml.load(text, Loader=_ProfileLoader)  # noqa: S506 (a safe loader)
        except RecursionError:
            raise RequestInvalid("a profile may not nest that deeply") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or "cannot be parsed"
            raise RequestInvalid(f"a profile must be YAML or JSON: {problem}{where}") from None
    return validate_profile(document)


def error_line(exc: ValidationError) -> str:
    """The first error as ``field.path[index].name: message``."""
    error = exc.errors(include_url=False)[0]
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{path or 'the profile'}: {message}"


DEFAULT_PROFILE = Profile()
# Today's smoke check alone (load, decode, finite logits): for tests that are not about
# verification and for operators who want only that.
SMOKE_PROFILE = Profile.model_validate({"name": "smoke", "runs": [],
                                        "quality": {"perplexity": False, "prompts": []},
                                        "limits": {"max_perplexity": None}})
BUILTIN_PROFILES = {"default": DEFAULT_PROFILE, "smoke": SMOKE_PROFILE}


def builtin_or_file(setting: str) -> Profile:
    """The profile a ``default_profile`` setting names: a built-in name (``default``,
    ``smoke``) or the path of a YAML/JSON profile file. ``RequestInvalid`` when it is
    neither or the file is not a valid profile; ``OSError`` when it cannot be read."""
    if setting in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[setting]
    with open(setting, "rb") as f:
        return parse_profile(f.read(MAX_PROFILE_BYTES + 1))
