"""Which manifests are models, and where their weights are (pure: descriptors in, facts out).

Recognised layouts (see docs/clients.md), in order of precedence:

- ``ollama``: a layer ``application/vnd.ollama.image.model`` (the GGUF). Projector and
  adapter layers are GGUF too, but not the model's weights.
- ``docker`` (Docker Model Runner): layers ``application/vnd.docker.ai.gguf.v3`` (one per
  shard) or ``application/vnd.docker.ai.safetensors``; ``config.json`` is a
  ``...model.file`` layer annotated with its path, or inside the
  ``...vllm.config.tar`` archive.
- ``modelpack`` (CNCF): ``artifactType`` or config media type ``application/vnd.cncf.model.*``;
  weights are ``application/vnd.cncf.model.weight.v1.{raw,tar,tar+gzip,tar+zstd}`` layers
  (also ``...v1.gguf`` / ``...v1.safetensors``) annotated with ``org.cncf.model.filepath``.
- ``oci``: any other image or artifact manifest with a layer that is a GGUF or
  safetensors file, by its name (``org.opencontainers.image.title`` or
  ``org.cncf.model.filepath`` ending in ``.gguf`` / ``.safetensors``) or a media type
  mentioning ``gguf`` / ``safetensors``. oras gives files the media type
  ``application/vnd.oci.image.layer.v1.tar`` although the blob is the file itself, so
  only ModelPack and Docker media types say a layer is an archive.

Everything else is not a model and ``classify`` returns None: indexes, container images,
signatures, SBOMs, and model manifests whose weights are neither GGUF nor safetensors (we
can neither read nor run them). GGUF files named like a multimodal projector
(``mmproj``) are not counted as weights.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from registry.manifests import IMAGE_TYPES, INDEX_TYPES, Descriptor, ParsedManifest

OLLAMA_MODEL = "application/vnd.ollama.image.model"
DOCKER_GGUF = "application/vnd.docker.ai.gguf.v3"
DOCKER_SAFETENSORS = "application/vnd.docker.ai.safetensors"
DOCKER_CONFIG_PREFIX = "application/vnd.docker.ai.model.config"
DOCKER_CONFIG_TAR = "application/vnd.docker.ai.vllm.config.tar"
MODELPACK_PREFIX = "application/vnd.cncf.model."
MODELPACK_WEIGHT = "application/vnd.cncf.model.weight.v1."
MODELPACK_WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1."

FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"

GGUF = "gguf"
SAFETENSORS = "safetensors"
CONFIG_JSON = "config.json"

# ModelPack packings: the media type's last segment.
_ARCHIVES = {"tar": "tar", "tar+gzip": "tar+gzip", "tar+zstd": "tar+zstd"}


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: its path in the model directory and the layer holding it."""

    path: str
    descriptor: Descriptor
    # None: the blob is the file itself. "tar": the file is a member of an uncompressed
    # tar (ModelPack ".tar", Docker's config archive); "tar+gzip" / "tar+zstd": compressed.
    archive: str | None = None


@dataclass
class ModelFormat:
    kind: str            # "ollama" | "docker" | "modelpack" | "oci"
    weight_format: str   # "gguf" | "safetensors"
    weights: list[ModelFile]            # in manifest order (GGUF shards, safetensors shards)
    config: ModelFile | None = None     # config.json, for safetensors
    files: list[ModelFile] = field(default_factory=list)  # every layer with a known path


def _path(d: Descriptor) -> str | None:
    a = d.annotations or {}
    path = a.get(FILEPATH) or a.get(TITLE)
    return path if isinstance(path, str) and path else None


def _suffix_format(path: str | None) -> str | None:
    if path:
        lower = path.lower()
        if lower.endswith(".gguf"):
            return GGUF
        if lower.endswith(".safetensors"):
            return SAFETENSORS
    return None


def _media_format(media_type: str) -> str | None:
    lower = media_type.lower()
    if GGUF in lower:
        return GGUF
    if SAFETENSORS in lower:
        return SAFETENSORS
    return None


def _file_format(f: ModelFile) -> str | None:
    return _suffix_format(f.path) or _media_format(f.descriptor.media_type)


def _is_projector(path: str) -> bool:
    return "mmproj" in posixpath.basename(path).lower()


def _layers(parsed: ParsedManifest) -> list[Descriptor]:
    # parse_manifest puts an image manifest's config first; artifact manifests have none.
    return parsed.blobs[1:] if parsed.media_type in IMAGE_TYPES else list(parsed.blobs)


def _weights(files: list[ModelFile]) -> tuple[str, list[ModelFile]] | None:
    """GGUF weights win over safetensors when a manifest carries both."""
    for fmt in (GGUF, SAFETENSORS):
        found = [f for f in files if _file_format(f) == fmt
                 and not (fmt == GGUF and _is_projector(f.path))]
        if found:
            return fmt, found
    return None


def _config_json(files: list[ModelFile]) -> ModelFile | None:
    # The top-level config.json of the model directory, not a sub-model's.
    return next((f for f in files if f.path == CONFIG_JSON), None)


def _ollama(layers: list[Descriptor]) -> ModelFormat | None:
    models = [d for d in layers if d.media_type == OLLAMA_MODEL]
    if not models:
        return None
    weights = [ModelFile(_path(d) or ("model.gguf" if i == 0 else f"model-{i}.gguf"), d)
               for i, d in enumerate(models)]
    return ModelFormat("ollama", GGUF, weights, files=weights)


def _docker(layers: list[Descriptor]) -> ModelFormat | None:
    ggufs = [d for d in layers if d.media_type == DOCKER_GGUF]
    tensors = [d for d in layers if d.media_type == DOCKER_SAFETENSORS]
    if not ggufs and not tensors:
        return None
    files = []
    for d in layers:
        path = _path(d)
        if d.media_type == DOCKER_CONFIG_TAR:
            files.append(ModelFile(CONFIG_JSON, d, "tar"))  # tokenizer and config files
        elif path:
            files.append(ModelFile(path, d))
    if ggufs:
        weights = [ModelFile(_path(d) or f"model-{i:05d}.gguf", d) for i, d in enumerate(ggufs)]
        return ModelFormat("docker", GGUF, weights, files=files)
    weights = [ModelFile(_path(d) or f"model-{i:05d}.safetensors", d)
               for i, d in enumerate(tensors)]
    return ModelFormat("docker", SAFETENSORS, weights, _config_json(files), files)


def _modelpack(layers: list[Descriptor]) -> ModelFormat | None:
    files: list[ModelFile] = []
    for i, d in enumerate(layers):
        path = _path(d)
        fmt = _media_format(d.media_type)
        if path is None and fmt is None:
            continue
        archive = None
        if d.media_type.startswith(MODELPACK_PREFIX):
            archive = _ARCHIVES.get(d.media_type.rsplit(".", 1)[-1])
        files.append(ModelFile(path or f"layer-{i}.{fmt}", d, archive))
    found = _weights([f for f in files
                      if f.descriptor.media_type.startswith(MODELPACK_WEIGHT)])
    if found is None:
        return None
    fmt, weights = found
    return ModelFormat("modelpack", fmt, weights, _config_json(files), files)


def _oci(layers: list[Descriptor]) -> ModelFormat | None:
    files = []
    for i, d in enumerate(layers):
        path = _path(d)
        fmt = _media_format(d.media_type)
        if path is None and fmt is None:
            continue
        files.append(ModelFile(path or f"layer-{i}.{fmt}", d))
    found = _weights(files)
    if found is None:
        return None
    fmt, weights = found
    return ModelFormat("oci", fmt, weights, _config_json(files) if fmt == SAFETENSORS else None,
                       files)


def classify(parsed: ParsedManifest, config_media_type: str | None = None
             ) -> ModelFormat | None:
    """The model layout of a manifest, or None when it is not a model we can read.

    ``config_media_type`` defaults to the image manifest's config descriptor's type.
    """
    if parsed.media_type in INDEX_TYPES:
        return None
    if config_media_type is None and parsed.media_type in IMAGE_TYPES and parsed.blobs:
        config_media_type = parsed.blobs[0].media_type
    layers = _layers(parsed)
    found = _ollama(layers) or _docker(layers)
    if found:
        return found
    if any(t and t.startswith(MODELPACK_PREFIX)
           for t in (parsed.artifact_type, config_media_type)):
        return _modelpack(layers)
    return _oci(layers)
