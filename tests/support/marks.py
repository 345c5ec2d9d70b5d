"""Markers that take arguments, and the external tools some tests need (they skip without them)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

F = TypeVar("F", bound=Callable)

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
PDFLATEX = shutil.which("pdflatex")


def ffcv_test(timeout: int) -> Callable[[F], F]:
    """Mark a test as needing ffcv, with a timeout so that a hang fails."""

    def mark(fn: F) -> F:
        return pytest.mark.ffcv(pytest.mark.timeout(timeout)(fn))

    return mark
