"""What the web page tests (``tests/api/test_web_*.py``) share.

- ``text_of(html)``: a page's text, for asserts on what a reader sees.
- ``PROMPTS``: a quality report's prompt results, one answered as expected and one not,
  for ``tests.api.test_regressions.profiled(..., prompts=PROMPTS)``.
"""

from __future__ import annotations

import re
from html import unescape

PROMPTS = [{"prompt": "The capital of France is", "chat": False, "expect": "Paris",
            "output": " Paris.", "matched": True, "template": None, "unsupported": None},
           {"prompt": "Say hello.", "chat": True, "expect": "(?i)hello", "output": "Bonjour",
            "matched": False, "template": "gguf", "unsupported": None}]


def text_of(html: str) -> str:
    """The page's text, tags dropped and whitespace collapsed (for content asserts)."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
