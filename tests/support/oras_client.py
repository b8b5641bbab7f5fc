"""An oras-py client that can set a manifest's ``artifactType`` (oras-py 0.2.x cannot)."""

from __future__ import annotations

import pytest

try:
    import oras.client
except ImportError:  # pragma: no cover - reported as a failure below, never a skip
    oras = None


def oras_client(host_port: str, artifact_type: str | None = None):
    """An ``OrasClient`` whose manifests carry ``artifactType`` when one is given.

    oras-py 0.2.x cannot set ``artifactType``: ``Registry.push`` has no such parameter and builds
    the manifest itself. The subclass adds the field in ``upload_manifest`` just before oras
    serialises and PUTs the manifest, so the request is still oras's own (``requests``
    ``json=``, its Content-Type, its blob uploads before it).
    """
    if oras is None:
        pytest.fail("the oras package is not installed (pip install oras; it is in the 'test' "
                    "extra); real-client tests must not be skipped", pytrace=False)

    class Client(oras.client.OrasClient):
        def upload_manifest(self, manifest, container):
            if artifact_type is not None:
                manifest = {**manifest, "artifactType": artifact_type}
            self.last_manifest = manifest
            response = super().upload_manifest(manifest, container)
            self.last_response = response
            return response

    return Client(hostname=host_port, insecure=True)

