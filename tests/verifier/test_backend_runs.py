"""The backends' run matrix and prompts, called in-process on real models: llama.cpp on
Gemma 3 270M (KV cache types, sequences decoded together, contexts it cannot serve, chat
templates from the file, built in, and hostile) and mlx-lm on the tiny generated models.

Gemma 3 270M here is the pretrained model, not the instruction-tuned one: it completes a
question-and-answer text ("Q: ...\\nA:") with the right answer, but answers a chat turn with
noise, so the chat tests check how the prompt was made, not what the model says to it.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.support.gguf_files import with_string_metadata
from verifier import chat_template
from verifier.backends import Unsupported
from verifier.backends import llama_cpp as llama_backend
from verifier.backends import mlx as mlx_backend
from verifier.spec import PromptSpec, RunSpec, Spec

QUESTION = "What is the capital of France?"
RAW = PromptSpec(f"Q: {QUESTION}\nA:", "Paris", max_tokens=8)  # " The capital of France is Paris."
CHAT = PromptSpec(QUESTION, ".", chat=True, max_tokens=8)
# Hugging Face's Gemma 3 template, text only: the format llama.cpp's built-in "gemma"
# renders, with BOS written by the template.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}"


def _load(backend, path, **spec):
    spec = Spec(model_path=path, **spec)
    return backend.load(spec), spec


@pytest.fixture(scope="module")
def gemma(gemma_gguf):
    llm, spec = _load(llama_backend, gemma_gguf, n_ctx=512)
    yield llm, spec
    llm.close()


@pytest.fixture(scope="module")
def gemma_with_template(gemma_gguf, tmp_path_factory):
    """Loads a copy of Gemma whose GGUF carries the chat template it is given."""
    loaded = []

    def load(template: str):
        path = tmp_path_factory.mktemp("templated") / "gemma.gguf"
        with_string_metadata(gemma_gguf, path, {"tokenizer.chat_template": template})
        loaded.append(_load(llama_backend, path, n_ctx=512))
        return loaded[-1]

    yield load
    for llm, _ in loaded:
        llm.close()


@pytest.fixture(scope="module")
def tiny_mlx(mlx_model_dir):
    return _load(mlx_backend, mlx_model_dir)


def _check_figures(figures, run: RunSpec) -> None:
    assert figures.tokens == [run.max_tokens] * run.parallel
    assert figures.prompt_tokens == run.prompt_tokens
    assert not figures.non_finite
    assert 0 < figures.prompt_s <= figures.first_s <= figures.last_s
    assert re.fullmatch(r"[0-9a-f]{64}", figures.output_sha256)


# ---- llama.cpp ---------------------------------------------------------------------------

@pytest.mark.parametrize("kv_cache", ["f16", "q8_0", "q4_0"])
def test_each_kv_cache_type_runs(gemma, kv_cache):
    llm, spec = gemma
    run = RunSpec(context=512, kv_cache=kv_cache, prompt_tokens=32, max_tokens=8)
    _check_figures(llama_backend.measure(llm, spec, run), run)


def test_parallel_sequences_are_decoded_together(gemma):
    llm, spec = gemma
    run = RunSpec(context=512, parallel=4, prompt_tokens=32, max_tokens=32)
    figures = llama_backend.measure(llm, spec, run)
    _check_figures(figures, run)
    assert sum(figures.tokens) / (figures.last_s - figures.first_s) > 0  # aggregate tokens/s


def test_parallel_sequences_are_kept_apart(gemma):
    # Sequence 0 has the prompt a single sequence gets: batched with three others it must
    # start the same way. Only start: the batch's shape changes the order of the sums, and
    # after a few tokens the greedy path may part (here after 4 to 6 tokens).
    llm, spec = gemma
    runs = [RunSpec(context=512, parallel=p, prompt_tokens=32, max_tokens=2) for p in (1, 4)]
    single, batched = (llama_backend.measure(llm, spec, run) for run in runs)
    assert batched.output_sha256 == single.output_sha256


def test_q8_0_output_is_the_same_twice(gemma):
    llm, spec = gemma
    run = RunSpec(context=512, kv_cache="q8_0", prompt_tokens=32, max_tokens=8)
    first, second = (llama_backend.measure(llm, spec, run) for _ in range(2))
    assert first.output_sha256 == second.output_sha256


def test_context_beyond_training_is_unsupported(gemma):
    llm, spec = gemma
    with pytest.raises(Unsupported, match="context 65536 is beyond the model's training "
                                          "context 32768"):
        llama_backend.measure(llm, spec, RunSpec(context=65536))


def test_tokens_beyond_the_context_are_refused_when_the_run_is_declared():
    with pytest.raises(ValueError, match="must fit in context"):
        RunSpec(context=512, parallel=4, prompt_tokens=128)


def test_a_context_llama_cpp_refuses_says_why_from_its_log(gemma):
    llm, spec = gemma
    with pytest.raises(Unsupported) as refused:
        llama_backend.measure(llm, spec, RunSpec(context=1024, parallel=300, prompt_tokens=1,
                                                 max_tokens=1))
    assert str(refused.value) == (
        "llama.cpp could not create a context of 1024 tokens with a f16 KV cache for 300 "
        "sequence(s): failed to initialize the context: n_seq_max must be <= 256")


def test_raw_prompt_is_answered(gemma):
    llm, spec = gemma
    answer = llama_backend.answer(llm, spec, RAW)
    assert answer.template is None
    assert 0 < answer.tokens <= RAW.max_tokens
    assert re.search(RAW.expect, answer.text), answer.text


def test_chat_renders_the_models_own_template_or_is_unsupported(gemma, gemma_with_template):
    llm, spec = gemma
    with pytest.raises(Unsupported, match="the model has no chat template of its own"):
        llama_backend.answer(llm, spec, CHAT)  # this Gemma GGUF is a base model
    llm, spec = gemma_with_template(GEMMA_TEMPLATE)
    from_file = llama_backend.answer(llm, spec, CHAT)
    assert from_file.template == "gguf"
    assert from_file.tokens > 0  # a base model's answer to a chat turn: not judged here


def test_a_hostile_template_in_the_file_is_refused(gemma_with_template):
    llm, spec = gemma_with_template(ESCAPE)
    with pytest.raises(Unsupported, match="the chat template failed: SecurityError: access to "
                                          "attribute '__class__'"):
        llama_backend.answer(llm, spec, CHAT)
    raw = llama_backend.answer(llm, spec, RAW)
    assert "Paris" in raw.text  # the template matters for chat prompts only


@pytest.mark.parametrize(("template", "reason"), [
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "SecurityError"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "ran for more than 0.2 s of CPU time"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}"
     "{% endfor %}", "renders more than 1048576 characters"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s }}", "needs more than 256 MiB"),
    ("{{ 'x' * 10 ** 10 }}", "needs more than 256 MiB"),
    ("{{ 9 ** (9 ** 9) }}", "the power is too large"),
    ("{{ raise_exception('Conversation roles must alternate') }}",
     "TemplateError: Conversation roles must alternate"),
])
def test_rendering_a_template_is_bounded(template, reason, monkeypatch):
    monkeypatch.setattr(chat_template, "_RENDER_SECONDS", 0.2)
    with pytest.raises(Unsupported, match=re.escape(reason)):
        chat_template.render(template, QUESTION, "<bos>", "<eos>")


def test_a_template_renders_as_hugging_face_renders_it():
    rendered = chat_template.render(GEMMA_TEMPLATE, f"  {QUESTION} ", "<bos>", "<eos>")
    assert rendered == (f"<bos><start_of_turn>user\n{QUESTION}<end_of_turn>\n"
                        "<start_of_turn>model\n")


# ---- MLX ---------------------------------------------------------------------------------

@pytest.mark.parametrize("parallel", [1, 2])
def test_mlx_runs(tiny_mlx, parallel):
    model, spec = tiny_mlx
    run = RunSpec(context=256, parallel=parallel, prompt_tokens=16, max_tokens=8)
    _check_figures(mlx_backend.measure(model, spec, run), run)


def test_mlx_quantized_kv_needs_a_head_dim_the_group_divides(tiny_mlx):
    model, spec = tiny_mlx
    with pytest.raises(Unsupported, match="head_dim 16 is not a multiple of 64"):
        mlx_backend.measure(model, spec, RunSpec(context=256, kv_cache="q8_0", prompt_tokens=16,
                                                 max_tokens=8))


def test_mlx_context_beyond_training_is_unsupported(tiny_mlx):
    model, spec = tiny_mlx
    with pytest.raises(Unsupported, match=r"context 1024 is beyond the model's training context "
                                          r"512 \(max_position_embeddings\)"):
        mlx_backend.measure(model, spec, RunSpec(context=1024))


def test_mlx_chat_uses_the_tokenizer_template(tiny_mlx):
    model, spec = tiny_mlx
    answer = mlx_backend.answer(model, spec, PromptSpec("hello", ".", chat=True, max_tokens=4))
    assert answer.template == "tokenizer"
    assert answer.tokens == 4  # random weights never emit the special tokens


def test_mlx_chat_without_a_template_is_unsupported(mlx_model_dir, tmp_path):
    directory = shutil.copytree(mlx_model_dir, tmp_path / "no-template")
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["chat_template"]
    config_path.write_text(json.dumps(config))
    model, spec = _load(mlx_backend, directory)
    with pytest.raises(Unsupported, match="the model has no chat template"):
        mlx_backend.answer(model, spec, PromptSpec("hello", ".", chat=True))
    assert mlx_backend.answer(model, spec, PromptSpec("hello", ".", max_tokens=4)).tokens == 4


# ---- through the child -------------------------------------------------------------------

def test_a_run_beyond_the_training_context_is_reported_unsupported_not_failed(gemma_gguf):
    from verifier import verify

    report = verify(Spec(model_path=gemma_gguf, max_tokens=4, n_ctx=256,
                         runs=(RunSpec(context=65536, prompt_tokens=16, max_tokens=4),
                               RunSpec(context=512, kv_cache="q4_0", prompt_tokens=16,
                                       max_tokens=4))))
    assert report.passed, report.reason
    beyond, quantized = report.runs
    assert beyond["unsupported"] == ("context 65536 is beyond the model's training context "
                                     "32768"), beyond
    assert beyond["generation_tps"] is None
    assert quantized["unsupported"] is None and quantized["generation_tps"] > 0, quantized
