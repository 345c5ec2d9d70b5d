"""Recipe files named by a path or a glob, as `harness sweep` and `harness validate` take them.

Owns `expand`: a path as given, or the files a glob matches (`**` recursive, sorted); a glob that
matches nothing is an error. May import: `harness.errors`.
"""

from __future__ import annotations

import glob
from pathlib import Path

from harness.errors import RecipeError


def expand(pattern: str, base: Path) -> list[Path]:
    """Recipe paths of `pattern` (relative to `base`); a glob that matches nothing is an error."""
    path = Path(pattern).expanduser()
    if not path.is_absolute():
        path = base / path
    if not any(c in pattern for c in "*?["):
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not matches:
        raise RecipeError(f"{pattern}: no recipe file matches this glob (looked in {base})")
    return matches
