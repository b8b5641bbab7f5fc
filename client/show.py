"""What ``assay inspect`` knows about a manifest, and how it prints it (and the sizes and
tables the other commands print).

On assay, ``GET /api/v1/repositories/<name>/tags/<tag>`` (or ``.../manifests/<digest>``)
adds the model card, stored vs. logical size, status and verification, and a tag is
resolved there: inspect shows the manifest the tag points at, whatever its status (a pull
by tag is gated on verification; ``served`` says what it gets). Any other registry
answers 404 there; then the tag is resolved by ``/v2/`` and only what the manifest and
its config say is shown.
"""

from __future__ import annotations

import json
from typing import Any

from client import mediatypes as mt
from client.errors import ClientError
from client.pull import fetch_small, plan_files
from client.ref import Reference
from client.registry_client import RegistryClient


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def rest_info(client: RegistryClient, ref: Reference) -> dict | None:
    base = f"/api/v1/repositories/{ref.name}"
    path = f"{base}/manifests/{ref.digest}" if ref.digest else f"{base}/tags/{ref.reference}"
    return client.rest(path)


def _is_digest(value) -> bool:
    return isinstance(value, str) and value.startswith("sha256:") and len(value) == 71


def _kind(ref: Reference, manifest: dict) -> str:
    try:
        return plan_files(ref, manifest).kind
    except ClientError:
        return "oci"


def _config_summary(client: RegistryClient, ref: Reference, manifest: dict) -> dict | None:
    """Model facts from the config blob, for registries without assay's REST API."""
    config = manifest.get("config") or {}
    media_type = config.get("mediaType")
    if media_type not in (mt.OLLAMA_CONFIG, mt.MODELPACK_CONFIG, *mt.DOCKER_AI_CONFIGS):
        return None
    try:
        doc = json.loads(fetch_small(client, ref.name, config))
    except (ClientError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if media_type == mt.OLLAMA_CONFIG:
        if "model_format" not in doc:
            return None
        return {"format": doc.get("model_format"), "architecture": doc.get("model_family"),
                "parameter_label": doc.get("model_type"), "quantization": doc.get("file_type")}
    inner = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    return {"format": inner.get("format"), "architecture": inner.get("architecture"),
            "parameter_label": inner.get("paramSize") or inner.get("parameters"),
            "quantization": inner.get("quantization") or inner.get("precision")}


def inspect(client: RegistryClient, ref: Reference) -> dict[str, Any]:
    rest = rest_info(client, ref)
    reference = ref.reference
    if rest is not None and ref.digest is None and _is_digest(rest.get("digest")):
        # The tag's own manifest, by digest: by tag /v2/ serves only what passed
        # verification, and a failed or verifying model is what people inspect.
        reference = rest["digest"]
    fetched = client.get_manifest(ref.name, reference)
    manifest = fetched.document(ref)
    layers = [layer for layer in manifest.get("layers") or [] if isinstance(layer, dict)]
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else None
    logical = sum(int(d.get("size") or 0) for d in [*layers, *([config] if config else [])])
    info: dict[str, Any] = {
        "reference": str(ref),
        "digest": fetched.digest,
        "mediaType": manifest.get("mediaType") or fetched.media_type,
        "artifactType": manifest.get("artifactType"),
        "kind": _kind(ref, manifest),
        "config": config,
        "layers": layers,
        "manifests": manifest.get("manifests"),
        "size": {"logical": logical, "unique": None},
        "model": None,
        "assay": rest is not None,
    }
    if rest is not None:
        size = rest.get("size") if isinstance(rest.get("size"), dict) else {}
        info["size"] = {"logical": size.get("logical", logical), "unique": size.get("unique")}
        info["model"] = rest.get("model")
        for key in ("status", "reason", "verification", "job", "workers", "override"):
            if rest.get(key) is not None:
                info[key] = rest[key]
        if "served" in rest and rest.get("status") is not None:  # by tag: null is news
            info["served"] = rest["served"]
    else:
        info["model"] = _config_summary(client, ref, manifest)
    return info


MODEL_FIELDS = (("format", "format"), ("architecture", "architecture"),
                ("parameters", "parameter_label"), ("parameter count", "parameter_count"),
                ("quantization", "quantization"), ("context length", "context_length"),
                ("embedding length", "embedding_length"), ("chat template", "chat_template"),
                ("tokenizer", "tokenizer_model"), ("dtypes", "dtypes"),
                ("quantization bits", "quantization_bits"),
                ("group size", "quantization_group_size"), ("card error", "error"))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def render_inspect(info: dict[str, Any]) -> str:
    size = info["size"]
    sizes = f"{human_size(size['logical'])} logical"
    if size.get("unique") is not None:
        sizes += f", {human_size(size['unique'])} unique (not shared with other manifests)"
    rows = [("digest", info["digest"]), ("media type", info["mediaType"]),
            ("artifact type", info.get("artifactType")), ("layout", info["kind"]),
            ("size", sizes)]
    lines = [info["reference"]]
    lines += [f"  {k:<14} {v}" for k, v in rows if v]
    if info.get("config"):
        c = info["config"]
        lines.append(f"  {'config':<14} {c.get('mediaType')} {human_size(c.get('size'))}")
    if info["layers"]:
        lines.append("  layers")
        for layer in info["layers"]:
            annotations = layer.get("annotations") or {}
            path = annotations.get(mt.FILEPATH) or annotations.get(mt.TITLE) or ""
            lines.append(f"    {str(layer.get('digest'))[:19]}  "
                         f"{human_size(layer.get('size')):>9}  {layer.get('mediaType')}"
                         f"{'  ' + path if path else ''}")
    for entry in info.get("manifests") or []:
        platform = entry.get("platform") or {}
        lines.append(f"  manifest       {entry.get('digest')} {entry.get('mediaType')} "
                     f"{platform.get('os', '')}/{platform.get('architecture', '')}".rstrip("/ "))
    model = info.get("model")
    if model:
        lines.append("  model")
        lines += [f"    {label:<18} {_value(model[key])}" for label, key in MODEL_FIELDS
                  if model.get(key) is not None and model.get(key) != []]
    elif info["kind"] == "oci":
        lines.append("  model          (not a model)")
    if info.get("status"):
        from client.status import details

        lines.append(f"  {'status':<14} {info['status']}")
        lines += ["  " + line for line in details(info)]
    if not info["assay"]:
        lines.append("  (not an assay registry: no model card, status or stored size)")
    return "\n".join(lines)


def render_table(header: list[str], rows: list[list[str]]) -> str:
    keep = [i for i in range(len(header)) if any(row[i] for row in rows)] or [0]
    cols = [[header[i]] + [row[i] for row in rows] for i in keep]
    widths = [max(len(v) for v in col) for col in cols]
    lines = []
    for r in range(len(rows) + 1):
        lines.append("  ".join(cols[c][r].ljust(widths[c]) for c in range(len(cols))).rstrip())
    return "\n".join(lines)
