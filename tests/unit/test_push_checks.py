"""What ``assay push`` checks on the local files before sending a byte, and ``--unchecked``,
which sends a broken file anyway (to watch the registry's verification fail it)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from client.errors import InputError
from client.layouts import build_layout
from client.progress import silent
from registry.cli import main
from registry.formats.cards import LocalCards
from tests.support.gguf_files import write_gguf


@pytest.fixture
def truncated(tmp_path):
    path = write_gguf(tmp_path / "whole.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-100])
    return cut


def test_a_truncated_gguf_is_refused_before_anything_is_sent(truncated):
    with pytest.raises(InputError, match=r"not a readable GGUF file: truncated: .*"
                                         r"\(--unchecked pushes it anyway\)"):
        build_layout(truncated, LocalCards(), None, silent())


def test_unchecked_builds_the_layout_and_keeps_the_cards_error(truncated):
    layout = build_layout(truncated, LocalCards(checked=False), None, silent())
    assert layout.kind == "ollama"
    assert layout.card.error.startswith("truncated: tensor "), layout.card.error
    assert [blob.size for blob in layout.layers] == [truncated.stat().st_size]


def test_the_cli_refusal_names_the_option(truncated):
    # Refused while reading the file: the registry address is never contacted.
    result = CliRunner().invoke(main, ["push", str(truncated), "127.0.0.1:9/t/m:1"])
    assert result.exit_code != 0 or result.return_value, result.output
    assert "--unchecked pushes it anyway" in result.output, result.output
