"""The generated reference pages match the code, and the README names the two commands."""

from __future__ import annotations

import pytest

from harness import docs
from tests.support.recipes import REPO


def test_generated_docs_are_current():
    for name, render in docs.PAGES.items():
        assert (REPO / "docs" / name).read_text() == render(), f"run: python -m harness.docs ({name})"


def test_readme_commands_and_ci_agree():
    readme = (REPO / "README.md").read_text()
    assert "scripts/setup.sh --default" in readme
    assert "scripts/test.sh" in readme
    assert "exec scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_generated_sections_are_current():
    for name, sections in docs.SECTIONS.items():
        page = (REPO / "docs" / name).read_text()
        assert docs.with_sections(page, sections) == page, f"run: python -m harness.docs ({name})"


def test_a_section_is_replaced_between_its_markers_only():
    page = f"head\n{docs.begin_marker('x')}\nold\n{docs.end_marker('x')}\ntail\n"
    out = docs.with_sections(page, {"x": lambda: "new\n"})
    assert out == f"head\n{docs.begin_marker('x')}\nnew\n{docs.end_marker('x')}\ntail\n"
    with pytest.raises(ValueError, match="must hold one"):
        docs.with_sections("no markers\n", {"x": lambda: "new\n"})
