"""Media types and annotation keys the client writes and reads (see docs/clients.md)."""

from __future__ import annotations

# Manifests
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST))
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

# Ollama: Docker v2 manifest, Docker image config, vnd.ollama.image.<kind> layers
OLLAMA_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_PREFIX = "application/vnd.ollama.image."
OLLAMA_MODEL = OLLAMA_PREFIX + "model"
OLLAMA_ADAPTER = OLLAMA_PREFIX + "adapter"
OLLAMA_PROJECTOR = OLLAMA_PREFIX + "projector"
OLLAMA_TEMPLATE = OLLAMA_PREFIX + "template"
OLLAMA_SYSTEM = OLLAMA_PREFIX + "system"
OLLAMA_PARAMS = OLLAMA_PREFIX + "params"
OLLAMA_MESSAGES = OLLAMA_PREFIX + "messages"
OLLAMA_LICENSE = OLLAMA_PREFIX + "license"

# Docker Model Runner: OCI manifest, vnd.docker.ai.* config and layers
DOCKER_AI_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DOCKER_AI_CONFIGS = (DOCKER_AI_CONFIG, "application/vnd.docker.ai.model.config.v0.2+json")
DOCKER_AI_GGUF = "application/vnd.docker.ai.gguf.v3"
DOCKER_AI_SAFETENSORS = "application/vnd.docker.ai.safetensors"
DOCKER_AI_FILE = "application/vnd.docker.ai.model.file"
DOCKER_AI_LICENSE = "application/vnd.docker.ai.license"
DOCKER_AI_TEMPLATE = "application/vnd.docker.ai.chat.template.jinja"
DOCKER_AI_MMPROJ = "application/vnd.docker.ai.mmproj"

# CNCF ModelPack
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
MODELPACK_WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
MODELPACK_DOC = "application/vnd.cncf.model.doc.v1.raw"
MODELPACK_PREFIX = "application/vnd.cncf.model."

OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"

# Annotations
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
