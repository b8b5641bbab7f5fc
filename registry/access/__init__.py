"""Access control without web or database imports: who may do what (``permissions``),
password hashing (``passwords``), bearer tokens, personal access tokens and signed blob
URLs (``tokens``), and Ollama's ed25519 signed token requests (``ollama``).

The HTTP side is ``registry.api.guard``; identities are stored by
``registry.services.identities``.
"""
