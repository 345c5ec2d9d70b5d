"""The generated reference pages match the code, and the README names the two commands."""

from __future__ import annotations

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
