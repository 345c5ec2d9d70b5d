"""The package's architecture, stated as data and checked on the source: which part may import which.

`ORDER` lists the parts from the bottom up: a module may import its own part and the parts of
lower rows, never those of its row or above. `RULES` are the hard rules (a subset of `ORDER`, kept
apart because they matter most and say why in docs/architecture.md). `LAZY_EXPORTS` is the one
exception to the order: `harness/__init__.py`'s imports of the public parts inside its
`__getattr__`. Every import counts: at the top of a file, inside a function, under `if
TYPE_CHECKING:`. Files are read with `ast`, nothing is imported. docs/architecture.md states the
same rules: a test checks that each one appears there (`python tests/test_architecture.py` prints
them in the docs' form).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
TOP_LEVEL_FILES = ("__init__.py", "__main__.py", "errors.py", "schema.py", "docs.py")

ORDER: tuple[tuple[str, ...], ...] = (  # the parts, lowest first
    ("harness", "harness.errors"),
    ("harness.schema",),
    ("harness.strategies",),
    ("harness.models",),
    ("harness.config",),
    ("harness.runtime",),
    ("harness.data",),
    ("harness.metrics",),
    ("harness.store",),
    ("harness.teachers",),
    ("harness.training",),
    ("harness.leaderboard",),
    ("harness.sweeps",),
    ("harness.benchmarking",),
    ("harness.docs", "harness.cli"),
    ("harness.__main__",),
)


@dataclass(frozen=True)
class Rule:
    """The modules under `importer` (but those under `unless`) never import a module under `forbidden`."""

    importer: str
    forbidden: tuple[str, ...]
    unless: tuple[str, ...] = ()

    def applies_to(self, module: str) -> bool:
        return within(module, self.importer) and not any(within(module, u) for u in self.unless)

    def doc_line(self) -> str:
        """The rule as docs/architecture.md states it (one line of its list)."""
        who = f"`{self.importer}`"
        if self.unless:
            who = f"every module of {who} but {', '.join(f'`{u}`' for u in self.unless)}"
        return f"- {who} never imports {', '.join(f'`{f}`' for f in self.forbidden)}"


RULES: tuple[Rule, ...] = (
    Rule(
        "harness.strategies",
        ("harness.training", "harness.data", "harness.teachers", "harness.sweeps", "harness.cli"),
    ),
    Rule(
        "harness.metrics",
        ("harness.store", "harness.teachers", "harness.training", "harness.sweeps", "harness.leaderboard"),
    ),
    Rule(
        "harness.leaderboard",
        (
            "harness.training",
            "harness.strategies",
            "harness.sweeps",
            "harness.teachers",
            "harness.models",
            "harness.runtime",
            "harness.data",
            "torch",
            "timm",
        ),
    ),
    Rule("harness.teachers", ("harness.training", "harness.sweeps", "harness.leaderboard", "harness.cli")),
    Rule("harness.training", ("harness.sweeps", "harness.leaderboard", "harness.cli")),
    Rule("harness.data", ("harness.strategies", "harness.teachers", "harness.training", "harness.sweeps")),
    Rule("harness", ("harness.cli",), unless=("harness.cli", "harness.__main__")),
)


@dataclass(frozen=True)
class LazyExport:
    """The one exception to the order: `module` imports `targets`, parts above it, inside its
    top-level function `function` alone (PEP 562's module `__getattr__`): a re-export run on the
    first access of the attribute, never at import time. The order's checks let exactly these
    imports through; the same import anywhere else in the file (at its top, in another function)
    counts as any import does, and the hard rules still apply to it."""

    module: str
    function: str
    targets: tuple[str, ...]

    def doc_line(self) -> str:
        """The exception as docs/architecture.md states it."""
        targets = ", ".join(f"`{t}`" for t in self.targets)
        return (
            f"- `{self.module}` imports {targets} inside `{self.function}` alone: a lazy re-export "
            "(PEP 562) on first attribute access, never at import time"
        )


LAZY_EXPORTS: tuple[LazyExport, ...] = (
    LazyExport("harness", "__getattr__", ("harness.leaderboard", "harness.metrics", "harness.strategies")),
)


# ------------------------------------------------------------------------------ reading the source
def within(module: str, prefix: str) -> bool:
    """`module` is `prefix` or one of its submodules."""
    return module == prefix or module.startswith(prefix + ".")


def module_name(path: Path, root: Path) -> str:
    """harness/store/files.py -> harness.store.files; a package's __init__.py is the package."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(root: Path) -> dict[str, Path]:
    """Every module of the package at `root` (a folder named harness), by name."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imported_modules(path: Path, module: str, modules: Collection[str]) -> Iterator[tuple[str, int]]:
    """(module, line) of every import in the file, wherever it stands.

    `from a import b` is a.b where that is a module of the tree, else a; a name outside the tree
    (torch, numpy) is kept as written.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield resolve(alias.name, modules), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield (name if name in modules else resolve(base, modules)), node.lineno


def resolve(name: str, modules: Collection[str]) -> str:
    """The module a dotted name lands in: the longest module of the tree it starts with, else the name."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return name


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module (harness or external): first line}; attribute names resolved away."""
    modules = source_files(root)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imported_modules(path, module, modules):
            if target != module and (target in modules or not within(target, root.name)):
                edges[target] = min(line, edges.get(target, line))
        graph[module] = edges
    return graph


# ------------------------------------------------------------------------------ the checks
@dataclass(frozen=True)
class Import:
    """One import of `target` by `module`, at `file`:`line`."""

    file: str
    line: int
    module: str
    target: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.module} imports {self.target}"


def imports_of(root: Path) -> Iterator[Import]:
    """Every import between modules of the tree, or of an outside module, by file and line."""
    files = source_files(root)
    for module, edges in import_graph(root).items():
        file = str(files[module].relative_to(root.parent))
        for target, line in sorted(edges.items(), key=lambda edge: edge[1]):
            yield Import(file, line, module, target)


def breaks_rule(rule: Rule, imp: Import) -> bool:
    return rule.applies_to(imp.module) and any(within(imp.target, f) for f in rule.forbidden)


def rule_violations(rule: Rule, root: Path) -> list[Import]:
    return [imp for imp in imports_of(root) if breaks_rule(rule, imp)]


def part_of(module: str) -> str | None:
    """The part of ORDER a harness module belongs to (the longest match; `harness` only itself)."""
    parts = [p for row in ORDER for p in row if within(module, p) and (p != "harness" or module == p)]
    return max(parts, key=len, default=None)


def level(part: str) -> int:
    return next(i for i, row in enumerate(ORDER) if part in row)


def breaks_order(part: str, imp: Import) -> bool:
    """`imp` goes from `part` into another part of its own row or of a row above it."""
    other = part_of(imp.target) if part_of(imp.module) == part else None
    return other is not None and other != part and level(other) >= level(part)


def layer_violations(part: str, root: Path) -> list[Import]:
    return [imp for imp in imports_of(root) if breaks_order(part, imp) and not lazily_exported(imp, root)]


def lazily_exported(imp: Import, root: Path) -> bool:
    """`imp` is one of `LAZY_EXPORTS`: a listed target whose every import in the file stands
    inside the listed function (none at the top of the file or in another function)."""
    files = source_files(root)
    for lazy in LAZY_EXPORTS:
        if imp.module == lazy.module and imp.target in lazy.targets:
            path = files[imp.module]
            inside = function_lines(path, lazy.function)
            found = imported_modules(path, imp.module, files)
            return all(line in inside for target, line in found if target == imp.target)
    return False


def function_lines(path: Path, function: str) -> range:
    """The lines of the function `function` at the top of the file (none there: no line)."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            assert node.end_lineno is not None
            return range(node.lineno, node.end_lineno + 1)
    return range(0)


def cycles(root: Path) -> list[tuple[list[str], frozenset[str]]]:
    """One import circle per strongly connected group of modules (Tarjan): a shortest closed path
    from the group's first module, and the group's modules."""
    imports = import_graph(root)
    graph = {m: [t for t in edges if t in imports] for m, edges in imports.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    found = []
    for group in groups:
        found.append((circle_through(group, graph), frozenset(group)))
    return found


def describe(circle: list[str], group: frozenset[str]) -> str:
    rest = sorted(group - set(circle))
    return " -> ".join(circle) + (f" (with {', '.join(rest)})" if rest else "")


def circle_through(group: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A shortest closed path from the group's first module back to it, inside the group."""
    start = group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in group and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no circle through {start}")  # unreachable: the group is strongly connected


# ------------------------------------------------------------------------------ the tests
HARNESS = REPO / "harness"


@pytest.mark.parametrize("importer", [r.importer for r in RULES])
def test_no_forbidden_import(importer):
    (rule,) = [r for r in RULES if r.importer == importer]
    found = rule_violations(rule, HARNESS)
    assert not found, f"{rule.doc_line()[2:]}, but:\n" + "\n".join(map(str, found))


@pytest.mark.parametrize("part", [p for row in ORDER for p in row])
def test_a_part_imports_only_lower_parts(part):
    found = layer_violations(part, HARNESS)
    assert not found, f"{part} may import only the parts below it in ORDER, but:\n" + "\n".join(
        map(str, found)
    )


def test_every_module_belongs_to_a_part():
    assert [m for m in source_files(HARNESS) if part_of(m) is None] == []


def test_no_import_cycle():
    found = cycles(HARNESS)
    assert not found, "import circles:\n" + "\n".join(describe(*c) for c in found)


def test_no_top_level_file_but_the_known_ones():
    files = sorted(p.name for p in HARNESS.glob("*.py"))
    assert set(files) <= set(TOP_LEVEL_FILES), f"put {set(files) - set(TOP_LEVEL_FILES)} in a part's folder"


def test_the_leaderboard_loads_no_torch():
    """Nor statsmodels: the tests' independent reference, not a dependency of the leaderboard."""
    code = (
        "import sys, harness.leaderboard; print(sorted({'torch', 'timm', 'statsmodels'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", f"importing harness.leaderboard loads {proc.stdout.strip()}"


def test_import_harness_loads_no_part_and_reaches_the_public_api_lazily():
    """`import harness` imports no part of it (nor torch); the public parts are its attributes,
    loaded on first use (the torch-free ones here: `harness.strategies` in tests/strategies)."""
    code = (
        "import sys, harness\n"
        "print(sorted(m for m in sys.modules if m.startswith(('harness.', 'torch', 'timm'))))\n"
        "print(sorted(set(harness.__all__) & set(dir(harness))))\n"
        "print(harness.leaderboard.generate.__module__, harness.metrics.COLUMNS[0].name)\n"
        "print(sorted({'torch', 'harness.strategies'} & set(sys.modules)))\n"
        "harness.nothing\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.splitlines() == [
        "[]",
        "['__version__', 'leaderboard', 'metrics', 'strategies']",
        "harness.leaderboard run_id",
        "[]",
    ]
    assert proc.stderr.strip().endswith("AttributeError: module 'harness' has no attribute 'nothing'")


def test_a_lazy_export_passes_only_inside_its_function(tmp_path):
    """The same import of a part above: let through in `__getattr__`, caught at the top of the file
    or in another function."""
    lazy = "def __getattr__(name):\n    import harness.strategies as part\n    return part\n"
    root = plant(tmp_path, {"__init__.py": lazy, "strategies/__init__.py": "", "errors.py": ""})
    assert layer_violations("harness", root) == []
    elsewhere = "def f():\n    from harness import strategies\n"
    for planted in ("import harness.strategies\n" + lazy, lazy + elsewhere):
        root = plant(tmp_path, {"__init__.py": planted})
        (found,) = map(str, layer_violations("harness", root))
        assert found.endswith("harness imports harness.strategies")


def test_the_docs_state_every_rule():
    doc = DOC.read_text()
    missing = [line for line in doc_lines() if line not in doc]
    assert not missing, f"{DOC.name} lacks (python tests/test_architecture.py):\n" + "\n".join(missing)


def doc_lines() -> list[str]:
    """The rules as docs/architecture.md lists them: the order, then each hard rule."""
    order = " -> ".join(", ".join(f"`{p}`" for p in row) for row in ORDER)
    return [
        f"Order, lowest first: {order}",
        *(r.doc_line() for r in RULES),
        *(lazy.doc_line() for lazy in LAZY_EXPORTS),
    ]


# ------------------------------------------------------------------------------ the checks, checked
def plant(root: Path, files: dict[str, str]) -> Path:
    """A package named harness under `root` with the given files (path -> source)."""
    for name, source in files.items():
        path = root / "harness" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "harness"


def test_a_planted_forbidden_import_is_caught_wherever_it_stands(tmp_path):
    root = plant(
        tmp_path,
        {
            "__init__.py": "",
            "strategies/__init__.py": "",
            "strategies/ok.py": "from harness.errors import HarnessError\n",
            "strategies/lazy.py": "def f():\n    from harness.training import loop\n",
            "strategies/typed.py": "import typing\nif typing.TYPE_CHECKING:\n    import harness.data.base\n",
            "strategies/relative.py": "from ..teachers.cache import TeacherCache\n",
            "errors.py": "",
            "training/__init__.py": "",
            "training/loop.py": "",
            "data/__init__.py": "",
            "data/base.py": "",
            "teachers/__init__.py": "",
            "teachers/cache.py": "",
        },
    )
    (rule,) = [r for r in RULES if r.importer == "harness.strategies"]
    assert [str(v) for v in rule_violations(rule, root)] == [
        "harness/strategies/lazy.py:2: harness.strategies.lazy imports harness.training.loop",
        "harness/strategies/relative.py:1: harness.strategies.relative imports harness.teachers.cache",
        "harness/strategies/typed.py:3: harness.strategies.typed imports harness.data.base",
    ]
    assert layer_violations("harness.strategies", root) == rule_violations(rule, root)


def test_a_planted_cycle_is_caught(tmp_path):
    root = plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from harness import b\n",
            "b.py": "def f():\n    import harness.c\n",
            "c.py": "from harness.a import thing\n",
            "d.py": "import harness.a\n",
        },
    )
    assert [describe(*c) for c in cycles(root)] == ["harness.a -> harness.b -> harness.c -> harness.a"]


def test_the_real_tree_copied_with_a_planted_import_fails(tmp_path):
    """The checks read the tree they are given: a copy of harness/ with one bad import more."""
    root = tmp_path / "harness"
    shutil.copytree(HARNESS, root, ignore=shutil.ignore_patterns("__pycache__"))
    (rule,) = [r for r in RULES if r.importer == "harness"]
    assert [str(v) for v in rule_violations(rule, root)] == []
    with (root / "store" / "files.py").open("a") as fh:
        fh.write("\n\ndef _planted():\n    from harness.cli import main\n")
    (found,) = map(str, rule_violations(rule, root))
    assert found.startswith("harness/store/files.py:") and found.endswith("imports harness.cli")


if __name__ == "__main__":
    print("\n".join(doc_lines()))
