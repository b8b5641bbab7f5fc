"""``POST /api/validate-yaml``: the model card's metadata, checked before a commit.

``huggingface_hub`` sends a ``README.md`` it is about to commit here first and aborts the
commit unless the answer is JSON with a 2xx status; a 400 with ``errors`` becomes
"Invalid metadata in README.md". The metadata is the YAML front matter between the
first two ``---`` lines; a card without one is valid.
"""

from __future__ import annotations

import json

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.api.oci.base import read_limited
from registry.errors import BodyTooLarge, RequestInvalid

# A model card is text for people: far below this.
MAX_CARD_BYTES = 1024 * 1024


def front_matter_errors(text: str) -> list[str]:
    """Why the YAML front matter of a model card is invalid (empty when it is valid)."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return []
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        return ["the metadata block that starts with --- has no closing ---"]
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        return [f"the metadata is not valid YAML: {' '.join(str(exc).split())}"]
    if data is not None and not isinstance(data, dict):
        return [f"the metadata must be a mapping of keys to values, not a "
                f"{type(data).__name__}"]
    return []


async def validate_yaml(request: Request) -> Response:
    def too_large(_declared):
        return BodyTooLarge(f"a model card is limited to {MAX_CARD_BYTES} bytes")

    raw = await read_limited(request, MAX_CARD_BYTES * 2, too_large)
    try:
        body = json.loads(raw)
        content = body["content"]
        if not isinstance(content, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise RequestInvalid('expected JSON {"content": "<README.md text>"}') from None
    errors = front_matter_errors(content)
    return JSONResponse({"errors": [{"message": e} for e in errors], "warnings": []},
                        status_code=400 if errors else 200)
