"""Models as first-class artifacts (pure: no web, database or storage imports).

- ``formats``: which manifests are models (Ollama, Docker Model Runner, CNCF ModelPack,
  plain OCI artifacts carrying GGUF or safetensors files) and where their weights are.
- ``gguf_header``: a streaming, bounded reader of GGUF headers (metadata and tensor table
  only; the weights are never read).
- ``cards``: the model card (architecture, parameter count, quantization, ...) read from
  the weights' headers and ``config.json``, never raising for bad content.

``registry.services.models`` ties them to the blob store and SQL.
"""
