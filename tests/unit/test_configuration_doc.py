"""docs/configuration.md's settings table is generated from ``Settings``: it cannot drift."""

from __future__ import annotations

import pytest

from registry import settings_doc
from registry.settings import Settings


def test_every_setting_has_a_description():
    missing = [name for name, field in Settings.model_fields.items()
               if not (field.description or "").strip()]
    assert missing == []


def test_configuration_doc_is_what_the_generator_renders():
    current = settings_doc.DOC_PATH.read_text(encoding="utf-8")
    assert current == settings_doc.render(current), (
        "docs/configuration.md is out of date: run python -m registry.settings_doc")


def test_every_setting_is_in_the_table():
    table = settings_doc.render_table()
    for name in Settings.model_fields:
        assert f"| `ASSAY_{name.upper()}` |" in table


def test_check_mode_reports_a_stale_page(tmp_path):
    page = tmp_path / "configuration.md"
    page.write_text(f"intro\n\n{settings_doc.BEGIN}\n| stale |\n{settings_doc.END}\n\noutro\n",
                    encoding="utf-8")
    assert settings_doc.main(["--check", str(page)]) == 1
    assert settings_doc.main([str(page)]) == 0
    written = page.read_text(encoding="utf-8")
    assert written.startswith("intro\n\n") and written.endswith("\n\noutro\n")
    assert "| stale |" not in written
    assert settings_doc.main(["--check", str(page)]) == 0


def test_a_page_without_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        settings_doc.render("no markers here\n")
