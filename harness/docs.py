"""Reference pages generated from the code (recipe fields, metrics columns), so docs never drift.

`python -m harness.docs` rewrites docs/recipe.md, docs/metrics.md and docs/leaderboard.md, and the
generated sections of hand-written pages (`SECTIONS`: the part of a page between its
`<!-- generated: NAME -->` and `<!-- end generated: NAME -->` lines, e.g. the paper recipes'
settings beside their sources in docs/paper_suite.md); tests/cli/test_docs.py checks they match.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from harness.config.recipe import Recipe
from harness.metrics import columns, functions
from harness.schema import describe_fields

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def recipe_reference() -> str:
    lines = [
        "# Recipe fields",
        "",
        "Generated from `harness/config/recipe.py` by `python -m harness.docs`; do not edit by hand.",
        "Every key is checked: an unknown key, a wrong type or an out-of-range value fails with one",
        "line naming its dotted path (`harness validate` lists every independent problem of a file,",
        "one line each). `strategy.params` are checked by the strategy (see `harness/strategies/`).",
        "`runtime`, `checkpoint`, `description`, `data.num_workers`, `data.eval_batch_size` and",
        "`data.loader_timeout_s` are not part of a run's identity (its",
        "`run_id` hash). Every integer lies in [-2**31, 2**31 - 1] (seeds in [0, 2**32 - 1]); text",
        "holds no NUL byte; a recipe's name (or, without one, its file name) names a folder: 1 to",
        '150 bytes of UTF-8, no leading dot, none of `/\\<>:"|?*` or control characters. A YAML',
        "file over 1 MiB, whose aliases expand to more than 100,000 values, or that writes a key",
        "twice in one mapping (the error gives both lines) is refused. An integer field refuses",
        "a float (`1.0` too). A free mapping (`strategy.params`, the `kwargs`) given null is as if",
        "absent.",
        "",
        "`extends: other.yaml` (relative to the file) builds on another recipe: mappings merge key by",
        "key, anything else is replaced; the base's `name`, `method` and `description` are not",
        "inherited. A recipe (or a `--set`) that names another strategy (`strategy.name`), optimizer",
        "(`optim.name`) or teacher (`teacher.run`, `weights`, `pretrained`, `pretrained_file` or",
        "`arch`) than its base does not inherit what belonged to the base's: the strategy's `params`,",
        "the optimizer's `kwargs`, the teacher's source, `seed`, `epoch`, `train_if_missing` and",
        "`kwargs`; its own apply to the new one (`params: {}`: none).",
        "",
        "| field | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for path, tp, default, doc in describe_fields(Recipe):
        lines.append(f"| `{path}` | {_cell(tp)} | `{_cell(default)}` | {_cell(doc)} |")
    from harness import strategies

    lines += ["", "## Strategy parameters", ""]
    for name in strategies.available():
        cls = strategies.get(name)
        module_doc = (sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip()
        lines += [f"### `{name}`", "", module_doc, ""]
        rows = describe_fields(cls.Params)
        if not rows:
            lines += ["No parameters.", ""]
            continue
        lines += ["| param | type | default | meaning |", "| --- | --- | --- | --- |"]
        for path, tp, default, doc in rows:
            lines.append(f"| `{path}` | {_cell(tp)} | `{_cell(default)}` | {_cell(doc)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def metrics_reference() -> str:
    lines = [
        "# metrics.parquet",
        "",
        "Generated from `harness/metrics/columns.py` by `python -m harness.docs`; do not edit by hand.",
        "Each run writes `<runs-dir>/<run_id>/metrics.parquet`, one row per evaluated epoch,",
        "rewritten atomically (temporary file, fsync, rename) after each epoch by",
        "`harness/store/metrics_file.py`. Confidence metrics are computed on the evaluation split",
        "named in `eval_split` (the test split for Fashion-MNIST and CIFAR, the validation split for",
        "ImageNet).",
        "",
        "| column | type | meaning |",
        "| --- | --- | --- |",
    ]
    for f in columns.SCHEMA:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        lines.append(f"| `{f.name}` | {f.type} | {_cell(doc)} |")
    lines += _board_reference()
    lines += ["", "## Definitions", "", "From the docstring of `harness/metrics/functions.py`:", ""]
    lines += inspect.cleandoc(functions.__doc__ or "").splitlines()
    return "\n".join(lines) + "\n"


def _board_reference() -> list[str]:
    """The columns `harness leaderboard` summarises over seeds, as declared in `columns.COLUMNS`."""
    reduce = {"last": "last epoch", "throughput": "all epochs: sum(train_samples) / sum(epoch_time_s)"}
    lines = [
        "",
        "## On the leaderboard",
        "",
        "Every column above is declared once, in `harness.metrics.columns.COLUMNS` (name, type,",
        "meaning, its `teacher_` twin, how the leaderboard shows it); the schema, the runner's rows and",
        "the leaderboard are derived from it. A row written without one of the columns, or with an",
        "undeclared one, is refused (`harness.store.metrics_file.write_metrics`). `harness leaderboard`",
        "summarises these per run, then over seeds (mean and sample std, as `<value>_mean` and",
        "`<value>_std` in leaderboard.parquet); `top1` also gives each run's epoch selected on the",
        "held-out split (`top1_selected`, `selected_epoch`; `top1_best_on_test` for runs without one).",
        "`label` and `decimals` are how the pages show a figure; `better` is the",
        "direction of a score (`-`: a measure, not a score).",
        "",
        "| column | per-run value | from | label | decimals | better |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in columns.BOARD_COLUMNS:
        b = c.board
        better = b.better or "-"
        cells = [f"`{c.name}`", f"`{b.value}`", reduce[b.reduce], _cell(b.label), str(b.decimals), better]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def leaderboard_reference() -> str:
    from harness.leaderboard import aggregate, compare, run_index, table

    lines = [
        "# leaderboard.parquet / leaderboard.csv",
        "",
        "Generated from `harness/leaderboard/table.py` by `python -m harness.docs`; do not edit by hand.",
        "`harness leaderboard` writes one record per row of every matched setting. Numbers stay",
        "numbers: Parquet keeps the types; the CSV writes floats in their shortest exact form, nulls",
        "as empty fields and lists joined by `;`. `harness leaderboard --format latex` writes the same",
        "figures as leaderboard.md into `leaderboard.tex` instead: booktabs tables to `\\input` in a paper",
        "(`harness/leaderboard/latex.py`).",
        "",
        "How the runs are read, through the run index (`harness/leaderboard/run_index.py`):",
        "",
        *inspect.cleandoc(run_index.__doc__ or "").splitlines(),
        "",
        "How settings, rows, labels and baselines are formed:",
        "",
        *inspect.cleandoc(aggregate.__doc__ or "").splitlines(),
        "",
        "How gains are tested and marked (`harness/leaderboard/compare.py`):",
        "",
        *inspect.cleandoc(compare.__doc__ or "").splitlines(),
        "",
        "| column | type | meaning |",
        "| --- | --- | --- |",
    ]
    for f in table.SCHEMA:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        lines.append(f"| `{f.name}` | {f.type} | {_cell(doc)} |")
    return "\n".join([*lines, "", *tuning_reference()]) + "\n"


def tuning_reference() -> list[str]:
    """The tuning summary: how it is read and counted, the expected-max curve, tuning.parquet."""
    from harness.leaderboard import expected_max, tuning

    lines = [
        "## The tuning summary (tuning.parquet)",
        "",
        *inspect.cleandoc(tuning.__doc__ or "").splitlines(),
        "",
        "**The expected-best curve** (`harness/leaderboard/expected_max.py`):",
        "",
        *inspect.cleandoc(expected_max.__doc__ or "").splitlines(),
        "",
        "| column | type | meaning |",
        "| --- | --- | --- |",
    ]
    for f in tuning.SCHEMA:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        lines.append(f"| `{f.name}` | {f.type} | {_cell(doc)} |")
    return lines


def settings_table() -> str:
    """The paper recipes' training settings beside their sources (harness.leaderboard.official)."""
    from harness.leaderboard import official

    rows = official.compare()
    deviations = sum(1 for c in rows if c.deviating)
    return (
        "Generated by `python -m harness.docs` from `leaderboard/reference/official_settings.csv` (the\n"
        'official values, with their sources) and the recipes themselves; do not edit by hand. "same"\n'
        "means every recipe of the line has the official value; a deviation gives ours and why.\n"
        f"{len(rows)} official values, {deviations} with a deviation.\n\n" + official.render_table(rows)
    )


#: page -> {section name: renderer} of the generated sections of hand-written pages
SECTIONS = {"paper_suite.md": {"settings": settings_table}}


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} (python -m harness.docs) -->"


def end_marker(name: str) -> str:
    return f"<!-- end generated: {name} -->"


def with_sections(page: str, sections: dict[str, Callable[[], str]]) -> str:
    """`page` with the text between each section's markers replaced by its renderer's output."""
    for name, render in sections.items():
        begin, end = begin_marker(name), end_marker(name)
        if page.count(begin) != 1 or page.count(end) != 1:
            raise ValueError(f"the page must hold one {begin!r} line and one {end!r} line")
        head, rest = page.split(begin + "\n", 1)
        _, tail = rest.split(end, 1)
        page = f"{head}{begin}\n{render()}{end}{tail}"
    return page


PAGES = {
    "recipe.md": recipe_reference,
    "metrics.md": metrics_reference,
    "leaderboard.md": leaderboard_reference,
}


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    for name, render in PAGES.items():
        (DOCS / name).write_text(render())
        print(f"wrote docs/{name}")
    for name, sections in SECTIONS.items():
        path = DOCS / name
        path.write_text(with_sections(path.read_text(), sections))
        print(f"wrote docs/{name} ({', '.join(sections)})")


if __name__ == "__main__":
    main()
