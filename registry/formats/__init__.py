"""Model formats and cards (pure: no web, database or storage imports).

- ``classify``: which manifests are models (Ollama, Docker Model Runner, CNCF ModelPack,
  plain OCI artifacts carrying GGUF or safetensors files) and where their weights are.
- ``gguf_header``: a streaming, bounded reader of GGUF headers (metadata and tensor table
  only; the weights are never read).
- ``cards``: the model card (architecture, parameter count, quantization, ...) read from
  the weights' headers and ``config.json``, never raising for bad content; ``LocalCards``
  reads local files for ``assay push`` (the client takes it as its ``CardReader``).
- ``archives``: finding a file inside a ModelPack or Docker tar layer from its headers.

``registry.services.models`` ties them to the blob store and SQL.
"""
