"""Turn local model files into a manifest, a config and layers (``Layout``), per format.

What ``assay push PATH`` accepts, and the layouts it can produce (first = default)::

    PATH                       --format
    a .gguf file               ollama | docker | modelpack
    an Ollama Modelfile        ollama
    a safetensors/MLX dir      modelpack | docker

- ollama: Docker v2 manifest, config ``application/vnd.docker.container.image.v1+json``
  (model_format, model_family(ies), model_type, file_type from the GGUF header; rootfs),
  layers ``application/vnd.ollama.image.{model,adapter,template,system,params,messages,
  license}``, so ``ollama pull`` works.
- docker (Docker Model Runner): OCI manifest, config
  ``application/vnd.docker.ai.model.config.v0.1+json``, layers ``...gguf.v3`` or
  ``...safetensors`` plus ``...model.file`` for the other files of a directory.
- modelpack (CNCF): OCI manifest with ``artifactType`` ``...model.manifest.v1+json``, config
  ``...model.config.v1+json`` (descriptor, modelfs, config), one ``...v1.raw`` layer per file.

Every file layer outside the Ollama format carries ``org.cncf.model.filepath`` (its path in
the model directory) and ``org.opencontainers.image.title``, which is how ``assay pull``
names the files. Configs carry no wall-clock time (``created`` is the newest file's mtime),
so pushing the same files twice gives the same manifest digest.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from client import mediatypes as mt
from client.bases import BaseModel, BaseModels, looks_like_path
from client.blobs import Blob, canonical_json, prefetch_hash
from client.errors import InputError
from client.modelfile import Modelfile, load_modelfile
from client.progress import Transfers, silent

FORMATS = {"gguf": ("ollama", "docker", "modelpack"), "modelfile": ("ollama",),
           "directory": ("modelpack", "docker")}
HASH_PROGRESS_MIN = 64 * 1024 * 1024
CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")
DOC_PREFIXES = ("readme", "license", "licence", "notice", "copying", "use_policy")


class Card(Protocol):
    """What a layout records of a model's header (``registry.formats.cards.Card`` is
    one). Every field but ``format`` may be None; ``error`` says why a header is unreadable."""

    format: str
    architecture: str | None
    parameter_label: str | None
    quantization: str | None
    quantization_bits: int | None
    context_length: int | None
    dtypes: list[str] | None
    error: str | None


class CardReader(Protocol):
    """Reads the card of local model files; may raise ``OSError``.

    The client parses no model headers itself: its caller (the CLI) hands in the registry's
    readers (``registry.formats.cards.LocalCards``), so a push describes a model with the
    same code the registry uses for what is pushed to it, and the client imports nothing
    from the server.

    ``checked``: a file whose card has an ``error`` (a truncated or corrupt header) is
    refused before anything is sent; False lets it through, to see the registry's own
    checks and verification catch it (``assay push --unchecked``).
    """

    checked: bool

    def gguf(self, path: Path) -> Card:
        """The card of one GGUF file."""

    def directory(self, files: list[tuple[str, Path]]) -> Card:
        """The card of a safetensors / MLX directory, given as (relative path, file)."""


@dataclass
class Layout:
    kind: str  # ollama | docker | modelpack
    media_type: str
    config: Blob
    layers: list[Blob]
    artifact_type: str | None = None
    card: Card | None = None
    source: str = ""  # what was pushed, for messages
    annotations: dict[str, str] = field(default_factory=dict)
    base: str = ""  # the model a Modelfile's FROM named, where it was found

    def manifest(self) -> bytes:
        doc: dict = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            doc["artifactType"] = self.artifact_type
        doc["config"] = self.config.descriptor()
        doc["layers"] = [layer.descriptor() for layer in self.layers]
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return canonical_json(doc)

    def blobs(self) -> list[Blob]:
        """Layers then config, each digest once."""
        seen: dict[str, Blob] = {}
        for blob in [*self.layers, self.config]:
            seen.setdefault(blob.digest, blob)
        return list(seen.values())


def go_json(obj) -> bytes:
    """JSON as Go's encoder writes it (compact; <, >, & escaped; trailing newline), so the
    params and messages layers are byte-identical to the ones ``ollama create`` makes."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode() + b"\n"


def _mtime_iso(paths: list[Path]) -> str:
    newest = max((p.stat().st_mtime for p in paths), default=0)
    return datetime.fromtimestamp(int(newest), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash_files(items: list[tuple[str, Path, dict]], transfers: Transfers) -> list[Blob]:
    """Blob.from_file for every (media type, path, annotations), in parallel."""
    def one(item: tuple[str, Path, dict]) -> Blob:
        media_type, path, annotations = item
        size = path.stat().st_size
        task = transfers.task(f"hashing {path.name}", size) if size >= HASH_PROGRESS_MIN \
            else None
        blob = Blob.from_file(media_type, path, label=annotations.get(mt.FILEPATH, path.name),
                              on_bytes=task.advance if task else None,
                              annotations=annotations)
        if task:
            task.done()
        return blob

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, items))


# ---------------------------------------------------------------------------- detection


def detect(path: Path) -> str:
    """"gguf", "modelfile" or "directory"; InputError for anything else."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        return "directory"
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"GGUF") or path.suffix.lower() == ".gguf":
        return "gguf"
    if path.suffix.lower() == ".safetensors":
        raise InputError(f"{path}: push the directory that holds the .safetensors files "
                         "(with its config.json), not one file")
    if "modelfile" in path.name.lower() or _looks_like_modelfile(head):
        return "modelfile"
    raise InputError(f"{path} is not a model: expected a .gguf file, an Ollama Modelfile or a "
                     "safetensors model directory")


def _looks_like_modelfile(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split()[0].upper() in ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM",
                                               "MESSAGE", "ADAPTER", "LICENSE")
    return False


def build_layout(path: Path, cards: CardReader, fmt: str | None = None,
                 transfers: Transfers | None = None, bases: BaseModels | None = None
                 ) -> Layout:
    """The layout of ``path`` in format ``fmt`` (None: the default for that input); ``cards``
    reads the model's header; ``bases`` finds the model a Modelfile's FROM names (None:
    FROM must be a file)."""
    transfers = transfers or silent()
    kind = detect(path)
    allowed = FORMATS[kind]
    fmt = fmt or allowed[0]
    if fmt not in allowed:
        what = {"gguf": "a .gguf file", "modelfile": "a Modelfile",
                "directory": "a model directory"}[kind]
        raise InputError(f"--format {fmt} does not apply to {what} (use {' or '.join(allowed)})")
    if kind == "modelfile":
        return ollama_layout_from_modelfile(load_modelfile(path), cards, transfers, bases)
    if kind == "gguf":
        prefetch_hash(path)  # the weights hash while the header is read
        card = gguf_card(path, cards)
        if fmt == "ollama":
            return ollama_layout(path, card, None, transfers)
        if fmt == "docker":
            return docker_gguf_layout(path, card, transfers)
        return modelpack_gguf_layout(path, card, transfers)
    files = model_directory_files(path)
    card = directory_card(path, files, cards)
    if fmt == "docker":
        return docker_directory_layout(path, files, card, transfers)
    return modelpack_directory_layout(path, files, card, transfers)


# ---------------------------------------------------------------------------- GGUF


def gguf_card(path: Path, cards: CardReader) -> Card:
    """The GGUF header's card; a file whose header cannot be read is refused."""
    try:
        card = cards.gguf(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if card.error and cards.checked:
        raise InputError(f"{path} is not a readable GGUF file: {card.error} (--unchecked "
                         f"pushes it anyway)")
    return card


MODEL_FIELDS = ("model_format", "model_family", "model_families", "model_type", "file_type")


def ollama_config(card: Card, diff_ids: list[str], extras: dict | None = None) -> bytes:
    """The config ``ollama create`` writes for a GGUF (ConfigV2 field order)."""
    fields: dict = {"model_format": "gguf"}
    if card.architecture:
        fields["model_family"] = card.architecture
        fields["model_families"] = [card.architecture]
    if card.parameter_label:
        fields["model_type"] = card.parameter_label
    if card.quantization:
        fields["file_type"] = card.quantization
    return _ollama_config(fields, diff_ids, extras)


def ollama_config_from_base(base: dict, diff_ids: list[str], extras: dict | None) -> bytes:
    """The config of a model built FROM another: its model fields, and its renderer,
    parser, requires, capabilities and draft unless the Modelfile sets them (as Ollama
    carries them over)."""
    fields = {"model_format": "gguf", **{key: base[key] for key in MODEL_FIELDS
                                         if base.get(key)}}
    return _ollama_config(fields, diff_ids, extras, base)


def _ollama_config(fields: dict, diff_ids: list[str], extras: dict | None,
                   base: dict | None = None) -> bytes:
    config = dict(fields)
    for key in ("renderer", "parser", "requires"):
        value = (extras or {}).get(key) or (base or {}).get(key)
        if value:
            config[key] = value
    for key in ("capabilities", "draft"):
        if base and base.get(key):
            config[key] = base[key]
    config["architecture"] = "amd64"
    config["os"] = "linux"
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return canonical_json(config)


def merge_modelfile(base: list[Blob], adapters: list[Blob], modelfile: Modelfile | None,
                    base_params: dict | None = None) -> list[Blob]:
    """The layers of a model: the base's, in order, then what the Modelfile changes, as
    ``ollama create`` merges them: ADAPTERs are added after the base's layers; a TEMPLATE
    or SYSTEM replaces the base's (an empty one changes nothing); each LICENSE is added;
    PARAMETERs merge into the base's (a key the Modelfile sets replaces the base's value,
    ``stop`` included) and the merged params replace its params layer; MESSAGEs replace
    the base's messages. Replaced layers move to the end, as in Ollama."""
    layers = [*base, *adapters]

    def put(media_type: str, blob: Blob) -> None:
        # An unchanged part keeps the base's blob: it is mounted where the base's is.
        same = [b for b in layers if b.media_type == media_type and b.digest == blob.digest]
        layers[:] = [b for b in layers if b.media_type != media_type] + [(same or [blob])[0]]

    if modelfile is None:
        return layers
    if modelfile.template:
        put(mt.OLLAMA_TEMPLATE, Blob.from_bytes(mt.OLLAMA_TEMPLATE,
                                                modelfile.template.encode(), "template"))
    if modelfile.system:
        put(mt.OLLAMA_SYSTEM, Blob.from_bytes(mt.OLLAMA_SYSTEM, modelfile.system.encode(),
                                              "system"))
    for text in modelfile.licenses:
        layers.append(Blob.from_bytes(mt.OLLAMA_LICENSE, text.encode(), "license"))
    params = {**(base_params or {}), **modelfile.parameters}
    if params:
        put(mt.OLLAMA_PARAMS, Blob.from_bytes(mt.OLLAMA_PARAMS,
                                              go_json(dict(sorted(params.items()))), "params"))
    if modelfile.messages:
        put(mt.OLLAMA_MESSAGES, Blob.from_bytes(mt.OLLAMA_MESSAGES,
                                                go_json(modelfile.messages), "messages"))
    return layers


def _adapter_files(modelfile: Modelfile | None) -> list[tuple[str, Path, dict]]:
    items = []
    for value in modelfile.adapters if modelfile else ():
        adapter = modelfile.resolve(value)
        if not adapter.is_file():
            line = modelfile.lines.get("ADAPTER", 0)
            raise InputError(f"{modelfile.source} line {line}: ADAPTER {value}: no such file")
        items.append((mt.OLLAMA_ADAPTER, adapter, {}))
    return items


def ollama_layout(gguf: Path, card: Card, modelfile: Modelfile | None,
                  transfers: Transfers) -> Layout:
    model, *adapters = _hash_files([(mt.OLLAMA_MODEL, gguf, {}),
                                    *_adapter_files(modelfile)], transfers)
    layers = merge_modelfile([model], adapters, modelfile)
    config = Blob.from_bytes(
        mt.OLLAMA_CONFIG,
        ollama_config(card, [layer.digest for layer in layers],
                      modelfile.extras if modelfile else None), "config")
    return Layout("ollama", mt.DOCKER_MANIFEST, config, layers, card=card,
                  source=str(modelfile.source if modelfile else gguf))


def ollama_layout_from_base(base: BaseModel, modelfile: Modelfile,
                            transfers: Transfers) -> Layout:
    """A Modelfile's layout on top of the model its FROM named (see ``bases``)."""
    adapters = _hash_files(_adapter_files(modelfile), transfers)
    layers = merge_modelfile(base.layers, adapters, modelfile, base.params)
    config = Blob.from_bytes(
        mt.OLLAMA_CONFIG,
        ollama_config_from_base(base.config, [layer.digest for layer in layers],
                                modelfile.extras), "config")
    return Layout("ollama", mt.DOCKER_MANIFEST, config, layers, source=modelfile.source,
                  base=base.source)


def ollama_layout_from_modelfile(modelfile: Modelfile, cards: CardReader,
                                 transfers: Transfers, bases: BaseModels | None = None
                                 ) -> Layout:
    """FROM a file (a .gguf, relative to the Modelfile), else FROM a model name that
    ``bases`` finds (in the local Ollama store or a registry)."""
    text = modelfile.model or ""
    model = modelfile.resolve(text)
    where = f"{modelfile.source} line {modelfile.lines.get('FROM', 0)}"
    if model.exists():
        if not model.is_file():
            raise InputError(f"{where}: FROM {text} is not a .gguf file")
        prefetch_hash(model)
        return ollama_layout(model, gguf_card(model, cards), modelfile, transfers)
    if bases is None or looks_like_path(text):
        raise InputError(f"{where}: FROM {text}: no such file")
    return ollama_layout_from_base(bases.find(text, where), modelfile, transfers)


def _file_annotations(relpath: str) -> dict[str, str]:
    return {mt.FILEPATH: relpath, mt.TITLE: relpath.rsplit("/", 1)[-1]}


def docker_config(card: Card, fmt: str, diff_ids: list[str], size: int,
                  created: str) -> bytes:
    """Docker Model Runner's config (``types.ConfigFile``)."""
    inner: dict = {"format": fmt}
    for key, value in (("quantization", card.quantization),
                       ("parameters", card.parameter_label),
                       ("architecture", card.architecture),
                       ("size", _human(size)),
                       ("context_size", card.context_length)):
        if value is not None:
            inner[key] = value
    return canonical_json({"config": inner, "descriptor": {"created": created},
                           "rootfs": {"type": "rootfs", "diff_ids": diff_ids}})


def docker_gguf_layout(gguf: Path, card: Card, transfers: Transfers) -> Layout:
    layers = _hash_files([(mt.DOCKER_AI_GGUF, gguf, _file_annotations(gguf.name))], transfers)
    config = Blob.from_bytes(mt.DOCKER_AI_CONFIG, docker_config(
        card, "gguf", [b.digest for b in layers], layers[0].size, _mtime_iso([gguf])), "config")
    return Layout("docker", mt.OCI_MANIFEST, config, layers, card=card, source=str(gguf))


def modelpack_config(card: Card, fmt: str, name: str, diff_ids: list[str],
                     created: str) -> bytes:
    inner: dict = {}
    if card.architecture:
        inner["architecture"] = card.architecture
    inner["format"] = fmt
    if card.parameter_label:
        inner["paramSize"] = card.parameter_label
    precision = _precision(card)
    if precision:
        inner["precision"] = precision
    if card.quantization and (fmt == "gguf" or card.quantization_bits):
        inner["quantization"] = card.quantization
    return canonical_json({
        "descriptor": {"createdAt": created, "name": name},
        "modelfs": {"type": "layers", "diffIds": diff_ids},
        "config": inner,
    })


def _precision(card: Card) -> str | None:
    names = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8",
             "F8_E5M2": "fp8"}
    if card.format != "safetensors":
        return None  # a GGUF's tensor types are its quantization
    if not card.quantization_bits and card.quantization:
        return names.get(card.quantization, card.quantization.lower())
    for dtype in card.dtypes or ():  # quantized: the type of the scales and other tensors
        if dtype in names:
            return names[dtype]
    return None


def modelpack_gguf_layout(gguf: Path, card: Card, transfers: Transfers) -> Layout:
    layers = _hash_files([(mt.MODELPACK_WEIGHT, gguf, _file_annotations(gguf.name))], transfers)
    config = Blob.from_bytes(mt.MODELPACK_CONFIG, modelpack_config(
        card, "gguf", gguf.stem, [b.digest for b in layers], _mtime_iso([gguf])), "config")
    return Layout("modelpack", mt.OCI_MANIFEST, config, layers, mt.MODELPACK_ARTIFACT,
                  card=card, source=str(gguf))


# ---------------------------------------------------------------------------- directories


def model_directory_files(root: Path) -> list[tuple[str, Path]]:
    """``(relative posix path, path)`` of every regular file, hidden entries skipped."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith(".") or filename.endswith((".part", ".part.json")):
                continue
            path = Path(dirpath) / filename
            if path.is_file():
                files.append((path.relative_to(root).as_posix(), path))
    if not any(rel.lower().endswith(".safetensors") for rel, _ in files):
        raise InputError(f"{root} is not a model directory: it has no .safetensors files")
    return files


def directory_card(root: Path, files: list[tuple[str, Path]], cards: CardReader) -> Card:
    try:
        card = cards.directory(files)
    except OSError as exc:
        raise InputError(f"cannot read {root}: {exc.strerror or exc}") from None
    if card.error and cards.checked:
        raise InputError(f"{root} is not a readable safetensors model: {card.error} "
                         f"(--unchecked pushes it anyway)")
    return card


def modelpack_media_type(relpath: str) -> str:
    name = relpath.rsplit("/", 1)[-1].lower()
    if name.endswith(".safetensors"):
        return mt.MODELPACK_WEIGHT
    if name.startswith(DOC_PREFIXES) or name.endswith((".md", ".rst")):
        return mt.MODELPACK_DOC
    return mt.MODELPACK_WEIGHT_CONFIG


def modelpack_directory_layout(root: Path, files: list[tuple[str, Path]], card: Card,
                               transfers: Transfers) -> Layout:
    layers = _hash_files([(modelpack_media_type(rel), path, _file_annotations(rel))
                          for rel, path in files], transfers)
    config = Blob.from_bytes(mt.MODELPACK_CONFIG, modelpack_config(
        card, "safetensors", root.resolve().name, [b.digest for b in layers],
        _mtime_iso([p for _, p in files])), "config")
    return Layout("modelpack", mt.OCI_MANIFEST, config, layers, mt.MODELPACK_ARTIFACT,
                  card=card, source=str(root))


def docker_directory_layout(root: Path, files: list[tuple[str, Path]], card: Card,
                            transfers: Transfers) -> Layout:
    items = [(mt.DOCKER_AI_SAFETENSORS if rel.lower().endswith(".safetensors")
              else mt.DOCKER_AI_FILE, path, _file_annotations(rel)) for rel, path in files]
    layers = _hash_files(items, transfers)
    weights = sum(b.size for b in layers if b.media_type == mt.DOCKER_AI_SAFETENSORS)
    config = Blob.from_bytes(mt.DOCKER_AI_CONFIG, docker_config(
        card, "safetensors", [b.digest for b in layers], weights,
        _mtime_iso([p for _, p in files])), "config")
    return Layout("docker", mt.OCI_MANIFEST, config, layers, card=card, source=str(root))


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"
