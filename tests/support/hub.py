"""What ``huggingface_hub`` makes of an in-process answer (``tests/api``'s Hub tests)."""

from __future__ import annotations

import httpx2
from huggingface_hub.utils import hf_raise_for_status


def raised(r, method: str = "GET") -> Exception | None:
    """The exception ``huggingface_hub``'s own ``hf_raise_for_status`` makes of the
    TestClient response ``r`` (None when it is fine)."""
    response = httpx2.Response(r.status_code, headers=list(r.headers.multi_items()),
                               content=r.content,
                               request=httpx2.Request(method, str(r.request.url)))
    try:
        hf_raise_for_status(response)
    except Exception as exc:  # noqa: BLE001 - the caller looks at which one
        return exc
    return None
