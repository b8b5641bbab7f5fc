"""The Hub API's pure parts: commit ids, path checks, LFS pointers, README and Modelfile
text, front matter, tree listings."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from registry.api.hf.download import folders, hub_date, listing
from registry.errors import RequestInvalid
from registry.formats.cards import ModelCard
from registry.formats.hub_readme import (
    OllamaParts,
    ReadmeFacts,
    Verification,
    card_data,
    front_matter,
    render_modelfile_for,
    render_readme,
)
from registry.services.hub import commit_id
from registry.services.hub_files import HubFile, _clean, check_path, lfs_pointer

DIGEST = "sha256:" + "ab" * 32


def facts(**more) -> ReadmeFacts:
    base = dict(repository="team/gemma3", digest=DIGEST, commit=commit_id(DIGEST), kind="ollama",
                weight_format="gguf", card=ModelCard("gguf", architecture="gemma3",
                                                     quantization="Q4_K_M"),
                status="ready", status_reason=None,
                verification=Verification("passed", "llama.cpp", "0.3.16", 42.2, 3 << 20, 7.5),
                base_url="http://assay:5000")
    return ReadmeFacts(**{**base, **more})


def test_commit_ids_are_the_digests_first_40_hex():
    assert commit_id(DIGEST) == "ab" * 20


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "..", "./a", "a//b", "a\\b", "a\x00"])
def test_paths_that_could_leave_the_repository_are_refused(path):
    with pytest.raises(RequestInvalid):
        check_path(path)


def test_stored_paths_are_normalised_or_dropped():
    assert _clean("./dir/a.json") == "dir/a.json"
    assert _clean("/x") == "x"
    assert [_clean(p) for p in ("../x", "a/../../x", "", None, "a\\b")] == [None] * 5


def test_lfs_pointer_is_gits_text():
    assert lfs_pointer("00" * 32, 5) == (b"version https://git-lfs.github.com/spec/v1\n"
                                         b"oid sha256:" + b"00" * 32 + b"\nsize 5\n")
    f = HubFile("m.gguf", 5, "sha256:" + "00" * 32)
    assert f.lfs and f.etag == "00" * 32
    assert f.oid == hashlib.sha1(b"blob %d\0" % len(f.pointer) + f.pointer).hexdigest()
    member = HubFile("config.json", 7, "sha256:" + "11" * 32, 512)
    assert not member.lfs and member.etag == "11" * 32 + "-512-7"


def test_readme_front_matter_is_the_card_data_and_the_text_is_deterministic():
    text = render_readme(facts())
    assert text == render_readme(facts())
    assert front_matter(text) == card_data(facts()) == {
        "library_name": "gguf", "tags": ["gguf", "assay", "gemma3", "Q4_K_M", "assay:ready"],
        "pipeline_tag": "text-generation"}
    body = text.decode()
    assert "| Generation | 42.2 tokens/s |" in body
    assert "| Peak memory | 3 MiB |" in body and "7.500" in body
    assert f"--revision {commit_id(DIGEST)}" in body
    assert "ollama pull assay:5000/team/gemma3" in body
    failed = render_readme(facts(status="failed", status_reason="load error")).decode()
    assert "failed verification (load error)" in failed
    st = facts(weight_format="safetensors", kind="modelpack", mlx=True,
               card=ModelCard("safetensors", architecture="Qwen3ForCausalLM"))
    assert card_data(st)["library_name"] == "mlx" and "ollama" not in render_readme(st).decode()


def test_readme_survives_hostile_card_text():
    hostile = facts(card=ModelCard("gguf", architecture='x"\n---\nevil: 1'))
    assert front_matter(render_readme(hostile))["tags"][2] == 'x"\n---\nevil: 1'


def test_front_matter_of_a_models_own_readme():
    assert front_matter(b"---\nlicense: mit\n---\n# x") == {"license": "mit"}
    for text in (b"# no front matter", b"---\n- a list\n---\n", b"---\nunclosed: [\n---\n",
                 b"---\nnever closed\n", b"\xff\xfe"):
        assert front_matter(text) is None


def test_modelfile_quotes_as_ollama_parses():
    parts = OllamaParts(template="{{ .Prompt }}\n", system="Be terse.",
                        params={"stop": ["<end>", "<eot>"], "temperature": 0.5},
                        messages=[{"role": "user", "content": "hi"}], licenses=("MIT",))
    text = render_modelfile_for("gemma3.gguf", ["adapter.gguf"], parts).decode()
    assert text == ('FROM ./gemma3.gguf\nADAPTER ./adapter.gguf\n'
                    'TEMPLATE """{{ .Prompt }}\n"""\nSYSTEM Be terse.\n'
                    'PARAMETER stop <end>\nPARAMETER stop <eot>\nPARAMETER temperature 0.5\n'
                    'MESSAGE user hi\nLICENSE MIT\n')
    assert render_modelfile_for("m.gguf", [], OllamaParts()) == b"FROM ./m.gguf\n"


def test_listing_of_folders_and_files():
    files = [HubFile(p, 1, content=b"x") for p in ("a.txt", "d/b.txt", "d/e/c.txt")]
    assert folders(files) == {"d", "d/e"}
    names = [e if isinstance(e, str) else e.path for e in listing(files, "", False)]
    assert names == ["a.txt", "d"]
    names = [e if isinstance(e, str) else e.path for e in listing(files, "d", True)]
    assert names == ["d/b.txt", "d/e", "d/e/c.txt"]


def test_dates_are_in_the_hubs_one_format():
    from datetime import UTC, datetime

    from huggingface_hub.utils import parse_datetime

    when = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert hub_date(when) == "2024-05-01T12:00:00.123Z"
    assert parse_datetime(hub_date(when)) == when.replace(microsecond=123000)
    assert yaml.safe_load("a: 1") == {"a": 1}
