"""``assay pull``: write a model back as files, from any OCI registry.

How files are named, by manifest kind (``STEM`` is the repository's last segment, plus
``-TAG`` unless the tag is ``latest``: ``team/gemma3:270m`` -> ``gemma3-270m``)::

    ollama     vnd.ollama.image.model      -> STEM.gguf (adapters STEM-adapter.gguf,
                                              projector STEM-mmproj.gguf); template, system,
                                              params, messages, license -> a Modelfile
    docker     vnd.docker.ai.*             -> the org.cncf.model.filepath / title annotation,
                                              else STEM.gguf, LICENSE, template.jinja
    modelpack  vnd.cncf.model.*            -> each layer at its org.cncf.model.filepath
    other OCI  (oras, ...)                 -> org.opencontainers.image.title / filepath

Layers that are tar archives (ModelPack ``.tar``/``.tar+gzip``, oras directories marked
``io.deis.oras.content.unpack``) are extracted with the ``data`` filter. Every path is
checked to stay inside the output directory. Without ``-o`` a single weights file (and its
Modelfile) lands in the current directory and anything with more files in ``./STEM/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from client import mediatypes as mt
from client.download import PART_SIZE, Downloader
from client.errors import ClientError, IntegrityError
from client.modelfile import render_modelfile
from client.progress import Transfers
from client.ref import Reference
from client.registry_client import RegistryClient

SMALL_LAYER_LIMIT = 16 * 1024 * 1024  # template/system/params/messages/license
ORAS_UNPACK = "io.deis.oras.content.unpack"
MODELFILE_KINDS = {mt.OLLAMA_TEMPLATE: "template", mt.OLLAMA_SYSTEM: "system",
                   mt.OLLAMA_PARAMS: "params", mt.OLLAMA_MESSAGES: "messages",
                   mt.OLLAMA_LICENSE: "license"}


@dataclass
class PlannedFile:
    relpath: str
    descriptor: dict
    archive: str | None = None  # "tar" | "tar+gzip": extract instead of writing


@dataclass
class Plan:
    kind: str
    files: list[PlannedFile] = field(default_factory=list)
    modelfile_layers: list[dict] = field(default_factory=list)
    weights: int = 0  # how many files are weights (decides the default directory)


@dataclass
class PullResult:
    reference: Reference
    digest: str
    kind: str
    directory: Path
    files: list[Path]
    outcomes: dict[str, int]


def stem(ref: Reference) -> str:
    base = ref.name.rsplit("/", 1)[-1]
    return f"{base}-{ref.tag}" if ref.tag and ref.tag != "latest" else base


def _named(layer: dict) -> str | None:
    annotations = layer.get("annotations") or {}
    return annotations.get(mt.FILEPATH) or annotations.get(mt.TITLE) or None


def _unnamed(layer: dict) -> str:
    return str(layer.get("digest", "blob")).replace(":", "-")


def _archive(layer: dict) -> str | None:
    media_type = str(layer.get("mediaType", ""))
    unpack = (layer.get("annotations") or {}).get(ORAS_UNPACK) == "true"
    if media_type.endswith(("+zstd", ".zstd")):
        if unpack or media_type.startswith(mt.MODELPACK_PREFIX):
            raise ClientError(f"layer {layer.get('digest')} is a zstd tar archive, which "
                              "assay pull cannot unpack yet")
        return None
    if media_type.startswith(mt.MODELPACK_PREFIX) or unpack or \
            media_type == "application/vnd.docker.ai.vllm.config.tar":
        if media_type.endswith(("tar+gzip", "tar.gzip", ".tar.gz")):
            return "tar+gzip"
        if media_type.endswith((".tar", "+tar")):
            return "tar"
    return None


def plan_files(ref: Reference, manifest: dict) -> Plan:
    layers = [layer for layer in manifest.get("layers") or [] if isinstance(layer, dict)]
    types = [str(layer.get("mediaType", "")) for layer in layers]
    name = stem(ref)
    if any(t.startswith(mt.OLLAMA_PREFIX) for t in types):
        plan = Plan("ollama")
        counts: dict[str, int] = {}
        suffixes = {mt.OLLAMA_MODEL: "", mt.OLLAMA_ADAPTER: "-adapter",
                    mt.OLLAMA_PROJECTOR: "-mmproj"}
        for layer, media_type in zip(layers, types, strict=True):
            if media_type in suffixes:
                n = counts[media_type] = counts.get(media_type, 0) + 1
                relpath = _named(layer) or \
                    f"{name}{suffixes[media_type]}{'' if n == 1 else f'-{n}'}.gguf"
                plan.files.append(PlannedFile(relpath, layer))
                plan.weights += media_type == mt.OLLAMA_MODEL
            elif media_type in MODELFILE_KINDS:
                plan.modelfile_layers.append(layer)
        if not plan.weights:
            raise ClientError(f"{ref} is an Ollama manifest without a model layer")
        return plan
    config_type = str((manifest.get("config") or {}).get("mediaType", ""))
    docker = config_type in mt.DOCKER_AI_CONFIGS or any(
        t.startswith("application/vnd.docker.ai.") for t in types)
    modelpack = manifest.get("artifactType") == mt.MODELPACK_ARTIFACT or \
        config_type == mt.MODELPACK_CONFIG
    plan = Plan("docker" if docker else "modelpack" if modelpack else "oci")
    ggufs = [layer for layer, t in zip(layers, types, strict=True) if t == mt.DOCKER_AI_GGUF]
    defaults = {mt.DOCKER_AI_LICENSE: "LICENSE", mt.DOCKER_AI_TEMPLATE: "template.jinja",
                mt.DOCKER_AI_MMPROJ: f"{name}-mmproj.gguf"}
    for layer, media_type in zip(layers, types, strict=True):
        relpath = _named(layer)
        if relpath is None and media_type == mt.DOCKER_AI_GGUF:
            i = ggufs.index(layer)
            relpath = f"{name}.gguf" if len(ggufs) == 1 else \
                f"{name}-{i + 1:05d}-of-{len(ggufs):05d}.gguf"
        archive = _archive(layer)
        if relpath is None and archive is None:
            relpath = defaults.get(media_type, _unnamed(layer))
        plan.files.append(PlannedFile(relpath or _unnamed(layer), layer, archive))
        lowered = (relpath or "").lower()
        plan.weights += lowered.endswith((".gguf", ".safetensors")) or \
            media_type in (mt.DOCKER_AI_GGUF, mt.DOCKER_AI_SAFETENSORS)
    if not plan.files:
        raise ClientError(f"{ref} has no layers to write (not a model)")
    return plan


def safe_target(root: Path, relpath: str) -> Path:
    """``root/relpath``, refusing anything that could land outside ``root``."""
    pure = PurePosixPath(relpath)
    if (not relpath or "\\" in relpath or "\x00" in relpath or pure.is_absolute()
            or any(part == ".." for part in pure.parts) or not pure.parts):
        raise ClientError(f"refusing to write {relpath!r}: the path leaves the output directory")
    target = root.joinpath(*pure.parts)
    # Check before creating anything: a symlink already inside root must not let mkdir
    # create directories elsewhere (resolve() follows the parts that exist).
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise ClientError(f"refusing to write {relpath!r}: it resolves outside {root}")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def resolve_manifest(client: RegistryClient, ref: Reference) -> tuple[dict, str]:
    """The image manifest for ``ref`` (an index is resolved to its first entry)."""
    fetched = client.get_manifest(ref.name, ref.reference)
    for _ in range(2):
        doc = fetched.document(ref)
        media_type = doc.get("mediaType") or fetched.media_type
        if media_type not in mt.INDEX_TYPES and "manifests" not in doc:
            return doc, fetched.digest
        entries = [m for m in doc.get("manifests") or [] if isinstance(m, dict)]
        preferred = [m for m in entries if (m.get("platform") or {}).get("os") in
                     (None, "linux") and (m.get("platform") or {}).get("architecture") in
                     (None, "amd64")]
        if not (preferred or entries):
            raise ClientError(f"{ref}: the index lists no manifests")
        fetched = client.get_manifest(ref.name, (preferred or entries)[0]["digest"])
    raise ClientError(f"{ref}: nested indexes are not supported")


def fetch_small(client: RegistryClient, name: str, layer: dict) -> bytes:
    digest, size = str(layer.get("digest")), int(layer.get("size") or 0)
    if size > SMALL_LAYER_LIMIT:
        raise ClientError(f"layer {digest} ({layer.get('mediaType')}) is too large: {size} bytes")
    resp = client.request("GET", client.blob_url(name, digest), what=f"download {digest[:19]}",
                          follow_redirects=True)
    if "sha256:" + hashlib.sha256(resp.content).hexdigest() != digest:
        raise IntegrityError(f"download {digest[:19]}: the bytes do not match their digest")
    return resp.content


def modelfile_text(client: RegistryClient, name: str, plan: Plan) -> str | None:
    adapters = [f.relpath for f in plan.files
                if f.descriptor.get("mediaType") == mt.OLLAMA_ADAPTER]
    if not plan.modelfile_layers and not adapters:
        return None
    parts: dict = {"template": None, "system": None, "parameters": None, "messages": [],
                   "licenses": []}
    for layer in plan.modelfile_layers:
        kind = MODELFILE_KINDS[layer["mediaType"]]
        data = fetch_small(client, name, layer)
        text = data.decode("utf-8", errors="replace")
        if kind in ("template", "system"):
            parts[kind] = text
        elif kind == "license":
            parts["licenses"].append(text)
        else:
            try:
                value = json.loads(data)
            except ValueError:
                raise ClientError(f"the {kind} layer {layer['digest'][:19]} is not JSON") \
                    from None
            if kind == "params" and isinstance(value, dict):
                parts["parameters"] = value
            elif kind == "messages" and isinstance(value, list):
                parts["messages"] = [m for m in value if isinstance(m, dict)]
    model = next(f.relpath for f in plan.files
                 if f.descriptor.get("mediaType") == mt.OLLAMA_MODEL)
    return render_modelfile(f"./{model}", adapters=[f"./{a}" for a in adapters], **parts)


def _extract(archive: Path, kind: str, root: Path) -> list[Path]:
    mode = "r:gz" if kind == "tar+gzip" else "r:"
    try:
        with tarfile.open(archive, mode) as tar:
            members = tar.getmembers()
            tar.extractall(root, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ClientError(f"cannot unpack {archive.name}: {exc}") from None
    return [root / m.name for m in members if m.isfile()]


def pull(ref: Reference, client: RegistryClient, transfers: Transfers, *,
         output: Path | None = None, part_size: int = PART_SIZE,
         workers: int | None = None) -> PullResult:
    manifest, digest = resolve_manifest(client, ref)
    plan = plan_files(ref, manifest)
    root = output if output is not None else (
        Path(".") if plan.weights <= 1 and len(plan.files) <= 2 else Path(stem(ref)))
    root.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for f in plan.files:
        if f.archive is None:
            if f.relpath in seen:
                raise ClientError(f"{ref}: two layers claim the path {f.relpath!r}")
            seen.add(f.relpath)
    downloader = Downloader(client, transfers, part_size=part_size, workers=workers)
    outcomes: Counter[str] = Counter()
    written: list[Path] = []

    def fetch(f: PlannedFile) -> tuple[str, list[Path]]:
        layer = f.descriptor
        layer_digest, size = str(layer.get("digest")), int(layer.get("size") or 0)
        if f.archive:
            tmp = safe_target(root, f".{layer_digest.replace(':', '-')}.tar")
            outcome = downloader.fetch(ref.name, layer_digest, size, tmp, f.relpath)
            try:
                paths = _extract(tmp, f.archive, root)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        else:
            target = safe_target(root, f.relpath)
            outcome = downloader.fetch(ref.name, layer_digest, size, target, f.relpath)
            paths = [target]
        return outcome, paths

    big = [f for f in plan.files if int(f.descriptor.get("size") or 0) > part_size]
    small = [f for f in plan.files if f not in big]
    with ThreadPoolExecutor(max_workers=4) as pool:
        small_results = pool.map(fetch, small)
        results = [fetch(f) for f in big]  # one at a time: each comes in parallel parts
        results += list(small_results)
    for outcome, paths in results:
        outcomes[outcome] += 1
        written += paths
    text = modelfile_text(client, ref.name, plan)
    if text is not None:
        modelfile = safe_target(root, "Modelfile")
        tmp = modelfile.with_name(".Modelfile.tmp")
        tmp.write_text(text)
        os.replace(tmp, modelfile)
        written.append(modelfile)
    layer_digests = [str(f.descriptor.get("digest")) for f in plan.files]
    layer_digests += [str(layer.get("digest")) for layer in plan.modelfile_layers]
    client.remember(ref.name, layer_digests)
    return PullResult(ref, digest, plan.kind, root, written, dict(outcomes))
