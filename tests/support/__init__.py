"""What the test packages share: helpers, and the fixtures of the pytest plugins listed in
``tests/conftest.py``. A test module imports helpers from here, never from another test module
or a conftest; each module is named for what it holds (``oci``: pushes through the OCI API,
``verification``: a fake worker, ``ollama_replay``: the Ollama client's conversations...)."""
