"""The MLX model derived from the real Gemma 3 270M GGUF (``tests.support.derived_mlx``):
mlx-lm loads it, its tokenizer gives llama.cpp's ids, and the verifier scores it like the
GGUF it came from (its perplexity next to the GGUF's: tests/e2e/test_profile_verification.py),
so llama.cpp and MLX can be compared on the same weights."""

from __future__ import annotations

import json

import pytest

from tests.support.derived_mlx import derived_mlx_path
from verifier import Report, Spec, quality, verify

# Slow: loads the real model (and derives it on a machine's first run).
pytestmark = pytest.mark.slow

# The base 270M model continues "The capital of France is" with "the capital of the country
# of France..." on both engines; in question-and-answer form both answer Paris at once.
PARIS_PROMPT = "Q: What is the capital of France?\nA:"
MLX_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def loaded(derived_mlx):
    import mlx_lm

    return mlx_lm.load(str(derived_mlx))


@pytest.fixture(scope="module")
def vocab(gemma_gguf):
    """llama.cpp's tokenizer for the GGUF (vocabulary only, no weights)."""
    from llama_cpp import Llama

    return Llama(str(gemma_gguf), vocab_only=True, verbose=False)


@pytest.fixture(scope="module")
def mlx_report(derived_mlx) -> Report:
    # Its perplexity against the GGUF's is measured once, side by side with the GGUF, in
    # tests/e2e/test_profile_verification.py: MLX's CPU backend (a reference BLAS) needs
    # minutes for it on this machine.
    return verify(Spec(model_path=derived_mlx, prompt=PARIS_PROMPT, max_tokens=12,
                       timeout_s=MLX_TIMEOUT_S))


def test_the_cache_holds_one_complete_copy(derived_mlx):
    assert derived_mlx_path() == derived_mlx
    names = {p.name for p in derived_mlx.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "derived.json"} <= names
    assert not list(derived_mlx.parent.glob(f".{derived_mlx.name}.*.partial"))


def test_mlx_lm_loads_it_as_gemma3_with_tied_embeddings(loaded, derived_mlx):
    model, tokenizer = loaded
    config = json.loads((derived_mlx / "config.json").read_text())
    assert config["model_type"] == "gemma3_text"
    shape = config["hidden_size"], config["num_hidden_layers"], config["head_dim"]
    assert shape == (640, 18, 256)
    assert model.tie_word_embeddings
    assert model.args.sliding_window_pattern == 6
    assert set(tokenizer.eos_token_ids) == {1, 106}
    assert tokenizer.bos_token_id == 2


def test_tokenizer_gives_llama_cpps_ids_on_the_english_text(loaded, vocab):
    _, tokenizer = loaded
    text = quality.text()
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == vocab.tokenize(text.encode(), add_bos=False, special=False)
    assert len(ids) > 2000
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode("Hello") == vocab.tokenize(b"Hello", add_bos=True)  # BOS added


def test_special_tokens_round_trip(loaded, vocab):
    _, tokenizer = loaded
    for token, expected in (("<bos>", 2), ("<start_of_turn>", None), ("<end_of_turn>", 106)):
        llama_ids = vocab.tokenize(token.encode(), add_bos=False, special=True)
        assert len(llama_ids) == 1
        assert expected in (None, llama_ids[0])
        assert tokenizer.encode(token, add_special_tokens=False) == llama_ids
        assert tokenizer.convert_ids_to_tokens(llama_ids) == [token]
        assert tokenizer.decode(llama_ids) == token


def test_chat_template_is_gemmas_and_tokenizes_as_llama_cpp(loaded, vocab):
    _, tokenizer = loaded
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
                    "<start_of_turn>model\n")
    assert (tokenizer.encode(text, add_special_tokens=False)
            == vocab.tokenize(text.encode(), add_bos=False, special=True))


@pytest.mark.timeout(MLX_TIMEOUT_S + 300)
def test_greedy_answer_names_paris(mlx_report):
    assert mlx_report.passed, mlx_report.reason
    assert "Paris" in mlx_report.output, mlx_report.output
