"""Files the Hub API makes up for a model: ``README.md`` and Ollama's ``Modelfile`` (pure).

Both are deterministic bytes: the same inputs give the same text, so a file's ETag
changes only when what it says changes.

``README.md`` (when the model carries none of its own) is YAML front matter that the
Hub's clients read as card data (``library_name``, ``tags``, ``pipeline_tag``) and a
short summary: format, architecture, size, quantization, the verification status and
the latest verification's figures (tokens/s, peak memory, perplexity), and how to pull
the model with each client. It depends on the manifest, its card, its verification
state and the endpoint's URL, nothing else (no clock, no tag: a commit's README must be
the same whichever branch named it).

``Modelfile`` rebuilds what ``ollama create`` was given from an Ollama manifest's layers:
``FROM ./<weights>``, ``ADAPTER``, ``TEMPLATE``, ``SYSTEM``, ``PARAMETER`` (from the
params layer's JSON), ``MESSAGE`` and ``LICENSE`` lines, quoted as Ollama parses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from client.modelfile import render_modelfile
from registry.formats.cards import ModelCard
from registry.formats.classify import GGUF

MiB = 1024 * 1024


@dataclass(frozen=True)
class Verification:
    """The latest verification of a manifest, as far as the README tells it."""

    verdict: str                     # passed | failed
    backend: str | None = None
    backend_version: str | None = None
    tokens_per_s: float | None = None
    peak_rss_bytes: int | None = None
    perplexity: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ReadmeFacts:
    repository: str                  # team/gemma3
    digest: str                      # the manifest's digest
    commit: str                      # its commit id
    kind: str                        # ollama | docker | modelpack | oci
    weight_format: str               # gguf | safetensors
    card: ModelCard | None
    status: str | None               # queued | verifying | ready | failed (None: not a model)
    status_reason: str | None
    verification: Verification | None
    base_url: str                    # http://assay:5000 (no trailing slash)
    mlx: bool = False                # an MLX model directory (quantized safetensors)


def card_data(f: ReadmeFacts) -> dict[str, Any]:
    """The front matter (what ``/api/models/<repo>`` answers as ``cardData``)."""
    card = f.card
    tags = [f.weight_format, "assay"]
    if f.mlx:
        tags.append("mlx")
    if card and card.architecture:
        tags.append(card.architecture)
    if card and card.quantization:
        tags.append(card.quantization)
    if f.status:
        tags.append(f"assay:{f.status}")
    data: dict[str, Any] = {"library_name": library_name(f), "tags": _unique(tags)}
    if pipeline_tag(f):
        data["pipeline_tag"] = pipeline_tag(f)
    return data


def library_name(f: ReadmeFacts) -> str:
    if f.weight_format == GGUF:
        return "gguf"
    return "mlx" if f.mlx else "transformers"


def pipeline_tag(f: ReadmeFacts) -> str | None:
    """``text-generation`` for GGUF models and causal language models; else unknown."""
    arch = (f.card.architecture if f.card else None) or ""
    if f.weight_format == GGUF or arch.endswith(("ForCausalLM", "ForConditionalGeneration")):
        return "text-generation"
    return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _yaml_scalar(value: str) -> str:
    # JSON strings are valid YAML scalars: safe for any text.
    return json.dumps(value, ensure_ascii=False)


def _front_matter(data: dict[str, Any]) -> list[str]:
    lines = ["---"]
    for key, value in data.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {_yaml_scalar(v)}" for v in value]
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return [*lines, "---"]


def _figure(value: float | None, fmt: str) -> str:
    return "unknown" if value is None else fmt.format(value)


def _status_line(f: ReadmeFacts) -> str:
    if f.status is None:
        return "not verified (not a model assay runs)"
    if f.status == "ready":
        return "ready: passed verification"
    if f.status == "failed":
        why = f" ({f.status_reason})" if f.status_reason else ""
        return f"failed verification{why}: not served by branch"
    return f"{f.status}: served by branch once it passes verification"


def _host(base_url: str) -> str:
    return base_url.split("://", 1)[-1]


def render_readme(f: ReadmeFacts) -> bytes:
    """The generated ``README.md`` (UTF-8)."""
    card, v = f.card, f.verification
    lines = _front_matter(card_data(f))
    lines += ["", f"# {f.repository}", "",
              f"Served by assay from manifest `{f.digest}` (commit `{f.commit}`).", "",
              "| | |", "|---|---|",
              f"| Format | {f.weight_format} ({f.kind}) |"]
    if card:
        if card.architecture:
            lines.append(f"| Architecture | {card.architecture} |")
        if card.parameter_count:
            label = card.parameter_label or f"{card.parameter_count:,}"
            lines.append(f"| Parameters | {label} |")
        if card.quantization:
            lines.append(f"| Quantization | {card.quantization} |")
        if card.context_length:
            lines.append(f"| Context length | {card.context_length} |")
    lines.append(f"| Status | {_status_line(f)} |")
    if v is not None:
        backend = " ".join(x for x in (v.backend, v.backend_version) if x) or "unknown"
        memory = None if v.peak_rss_bytes is None else v.peak_rss_bytes / MiB
        lines += [f"| Latest verification | {v.verdict} on {backend} |",
                  f"| Generation | {_figure(v.tokens_per_s, '{:.1f}')} tokens/s |",
                  f"| Peak memory | {_figure(memory, '{:.0f}')} MiB |",
                  f"| Perplexity | {_figure(v.perplexity, '{:.3f}')} |"]
    host = _host(f.base_url)
    lines += ["", "## Pull", "", "```sh",
              f"HF_ENDPOINT={f.base_url} hf download {f.repository} --revision {f.commit}",
              f"oras pull {host}/{f.repository}@{f.digest}",
              f"assay pull {host}/{f.repository}@{f.digest}"]
    if f.weight_format == GGUF:
        lines.append(f"ollama pull {host}/{f.repository}")
    lines += ["```", ""]
    return "\n".join(lines).encode()


@dataclass(frozen=True)
class OllamaParts:
    """The small layers of an Ollama manifest, decoded (None / empty: absent)."""

    template: str | None = None
    system: str | None = None
    params: dict[str, Any] | None = None
    messages: list[dict] | None = None
    licenses: tuple[str, ...] = ()


def render_modelfile_for(weights: str, adapters: list[str], parts: OllamaParts) -> bytes:
    """The ``Modelfile`` next to ``weights`` (a file name in the same directory)."""
    return render_modelfile(
        f"./{weights}", adapters=[f"./{a}" for a in adapters], template=parts.template,
        system=parts.system, parameters=parts.params or {},
        messages=parts.messages or [], licenses=list(parts.licenses)).encode()


def front_matter(text: bytes, limit: int = 64 * 1024) -> dict[str, Any] | None:
    """The YAML front matter of a model's own ``README.md`` as a dict; None when it has
    none or it is not a mapping (never raises)."""
    try:
        head = text[:limit].decode("utf-8", "replace")
    except Exception:
        return None
    if not head.startswith("---"):
        return None
    end = head.find("\n---", 3)
    if end < 0:
        return None
    try:
        import yaml

        data = yaml.safe_load(head[3:end])
    except Exception:
        return None
    return data if isinstance(data, dict) else None
