"""Hostile chat templates, run for real: the verdict comes in bounded time, the parent lives.

The models are the real Gemma GGUF with its metadata rewritten
(``tests.support.gguf_files.with_string_metadata``), so llama.cpp loads real weights and
llama-cpp-python meets the template where it always does: it compiles every
``tokenizer.chat_template*`` with Jinja when the model loads (it renders one only for chat
completions, which the verifier never asks for; the prompt is fed raw). What the tests show:

- a template that would loop ~forever if rendered (``range(10**12)``) is never rendered:
  the model passes, in the usual time;
- a template that blows Jinja's parser (5,000 nested ``if`` blocks: recursion) or is not
  Jinja at all fails the model at load, with the reason, in the child; the parent's own
  interpreter (recursion limit, threads, children) is untouched;
- whatever the child does, the timeout bounds it: the same hostile model with a run that
  cannot finish in time gets a ``timeout`` verdict within seconds of the limit.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from registry.formats.cards import read_gguf_card
from tests.support.gguf_files import with_string_metadata
from tests.support.procfs import verifier_children
from verifier import Spec, verify

# Slow: runs the verifier child, which loads a model (real or generated) for real.
pytestmark = pytest.mark.slow

LOOP = "{% for i in range(10**12) %}{{ i }}{% endfor %}"
DEEP = "{% if true %}" * 5000 + "x" + "{% endif %}" * 5000
TEMPLATES = {
    "endless loop": {"tokenizer.chat_template": LOOP},
    "deep recursion": {"tokenizer.chat_template": DEEP},
    "not jinja, named": {"tokenizer.chat_template": LOOP,
                         "tokenizer.chat_template.tool_use": "{% for %}" + "{{ " * 10000},
}
BOUND_S = 60.0  # generous: each of these runs takes about a second


@pytest.fixture(scope="module")
def hostile(gemma_gguf):
    """name -> a copy of Gemma with that hostile template (removed after the module)."""
    directory = Path(tempfile.mkdtemp(prefix="assay-hostile-"))
    try:
        yield {name: with_string_metadata(gemma_gguf, directory / f"{i}.gguf", values)
               for i, (name, values) in enumerate(TEMPLATES.items())}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(path: Path, **limits):
    start = time.monotonic()
    report = verify(Spec(model_path=path, max_tokens=4, n_ctx=128, **limits))
    return report, time.monotonic() - start


def test_the_rewritten_files_carry_the_templates(hostile):
    # The registry's side: it reads the header (a bounded parse), notes that a template
    # exists, and never renders or compiles it.
    for name, path in hostile.items():
        with open(path, "rb") as f:
            card = read_gguf_card(f, path.stat().st_size)
        assert card.error is None, (name, card.error)
        assert card.chat_template is True
        assert card.parameter_count == 268_098_176


def test_a_template_that_loops_if_rendered_is_never_rendered(hostile):
    report, elapsed = run(hostile["endless loop"], timeout_s=BOUND_S)
    assert report.passed, report.reason
    assert report.tokens_generated == 4
    assert elapsed < BOUND_S
    assert report.network_isolated is True


@pytest.mark.parametrize("name, reason", [
    ("deep recursion", "did not load: RecursionError"),
    ("not jinja, named", "did not load: TemplateSyntaxError"),
])
def test_a_template_that_breaks_jinja_fails_the_model_in_the_child(hostile, name, reason):
    limit, threads = sys.getrecursionlimit(), threading.active_count()
    report, elapsed = run(hostile[name], timeout_s=BOUND_S)
    assert (report.passed, report.failure) == (False, "load")
    assert report.reason.startswith(reason), report.reason
    assert elapsed < BOUND_S
    # The parent is unaffected: same interpreter state, no child left behind.
    assert (sys.getrecursionlimit(), threading.active_count()) == (limit, threads)
    assert verifier_children() == []


def test_the_timeout_bounds_a_hostile_model_whatever_it_does(hostile, gemma_report):
    # 1,000 tokens cannot be generated in 2 s: the limit hits, the group is killed.
    start = time.monotonic()
    report = verify(Spec(model_path=hostile["endless loop"], max_tokens=1000, n_ctx=1100,
                         timeout_s=2.0))
    elapsed = time.monotonic() - start
    assert (report.passed, report.failure) == (False, "timeout")
    assert 2.0 <= elapsed < 10
    assert verifier_children() == []
    # And the parent still verifies a good model as before.
    again = verify(Spec(model_path=hostile["endless loop"], max_tokens=16, n_ctx=256))
    assert again.passed and again.output == gemma_report.output
