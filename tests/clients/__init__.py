"""Real registry clients (skopeo, oras) and exact replays (Ollama) against a real assay."""
