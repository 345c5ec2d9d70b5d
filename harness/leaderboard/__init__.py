"""The leaderboard: every strategy against its matched label-smoothing and CE baselines, over seeds.

`generate(runs_dir, out_dir)` reads every `<runs_dir>/*/metrics.parquet` (read-only; through the
run index `<runs_dir>/.index/runs.parquet`, a cache of what it read, `run_index`), groups the
completed runs into matched settings and rows (`aggregate`), adds the published reference
numbers (`reference`) and writes, into `out_dir`:

* `leaderboard.md`: Markdown tables per setting, the legend, the runs set apart;
* `leaderboard.parquet` and `leaderboard.csv`: the aggregated table, numeric (`table.COLUMNS`);
* `index.html`: a self-contained page with the tables and inline SVG plots;
* `tuning.parquet`, with the parquet format, when `<runs_dir>/tuning/*/trials.parquet` exist: per
  study and method, what `harness tune` spent and found, and Dodge et al. 2019's expected best of
  n trials (`tuning`, `expected_max`); leaderboard.md and index.html then have a Tuning section;
* `leaderboard.tex`, on request only (`formats`): booktabs tables a paper can `\\input`.

The outputs depend on the runs (and the reference data) alone: no time stamps, everything
sorted, fixed float formats, so regenerating gives byte-identical files. Modules: `runs`
(reading), `run_index` (the cache of what `runs` read, re-reading only changed folders),
`stats` (every statistic: mean, std, pooled std, throughput, Welch and paired t intervals,
Holm's correction, seeds needed, with scipy's distributions; `harness nightly` uses it too),
`baselines` (the baseline strategies, declared once), `aggregate` (settings, rows, the
validation-selected epoch), `compare` (each gain: which top-1, which test, the families and their
marks), `reference` (the published figures and the recipe each belongs to), `official` (the paper
recipes' training settings beside their sources' values, for docs/paper_suite.md), `table`,
`markdown`, `svg`, `html_page`, `latex`, `text` (escaping, number formats), `tuning`,
`tuning_page`, `expected_max` (the tuning summary).
May import: pyarrow, scipy, `harness.metrics.columns`, `harness.store.files`, `harness.errors`,
`harness.config` (the recipes a reference figure or an official value names); never torch
(statsmodels only in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.leaderboard.aggregate import Setting, build_settings
from harness.leaderboard.baselines import CE, LS
from harness.leaderboard.html_page import render_html
from harness.leaderboard.latex import render_latex
from harness.leaderboard.markdown import render_markdown
from harness.leaderboard.reference import Ours, References, load_references, seen_of_run
from harness.leaderboard.run_index import load_indexed_runs
from harness.leaderboard.runs import LeaderboardError, SetApart, load_runs
from harness.leaderboard.table import records, to_csv, to_parquet
from harness.leaderboard.text import counted
from harness.leaderboard.tuning import TUNING_FILE, load_tuning
from harness.leaderboard.tuning import to_parquet as tuning_parquet
from harness.store.files import atomic_write_bytes

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "OUTPUT_FILES",
    "LeaderboardError",
    "LeaderboardResult",
    "SetApart",
    "SettingSummary",
    "generate",
]

#: The file each output format is written to (`harness leaderboard --format`), in writing order.
FORMATS = {
    "md": "leaderboard.md",
    "parquet": "leaderboard.parquet",
    "csv": "leaderboard.csv",
    "html": "index.html",
    "latex": "leaderboard.tex",
}
#: The formats written unless others are asked for, and their files.
DEFAULT_FORMATS = ("md", "parquet", "csv", "html")
OUTPUT_FILES = tuple(FORMATS[f] for f in DEFAULT_FORMATS)
#: written beside the outputs: files in a folder holding it were written by `generate`
MARKER = ".harness-leaderboard"
MARKER_TEXT = b"This folder's leaderboard files are written by `harness leaderboard`, which replaces them.\n"


@dataclass(frozen=True)
class SettingSummary:
    """One matched setting of the leaderboard."""

    key: str
    dataset: str
    arch: str
    epochs: int
    rows: int
    runs: int
    has_ls_baseline: bool
    has_ce_baseline: bool


@dataclass(frozen=True)
class LeaderboardResult:
    """What `generate` wrote and what it read."""

    files: tuple[Path, ...]
    settings: tuple[SettingSummary, ...]
    set_apart: tuple[SetApart, ...]
    runs_used: int

    def summary(self) -> str:
        """One line for the command line."""
        out = self.files[0].parent if self.files else Path(".")
        return (
            f"leaderboard: {counted(self.runs_used, 'run')} in {counted(len(self.settings), 'setting')}, "
            f"{len(self.set_apart)} set apart -> {out}/ ({', '.join(f.name for f in self.files)})"
        )


def generate(
    runs_dir: Path,
    out_dir: Path,
    *,
    reference_dir: Path | None = None,
    force: bool = False,
    formats: Sequence[str] = DEFAULT_FORMATS,
    use_index: bool = True,
) -> LeaderboardResult:
    """Read the runs under `runs_dir` and write the leaderboard files of `formats` (keys of
    FORMATS) into `out_dir`.

    Raises `LeaderboardError` (a one-line `HarnessError`) when `runs_dir` is not a folder, a format
    is unknown, the reference data is malformed or `out_dir` cannot be written, or holds output
    files that no earlier `generate` wrote (no MARKER file) and `force` is not set. Run files are
    never modified. With `use_index` the runs are read through the run index
    (`<runs_dir>/.index/runs.parquet`, `run_index`): the same runs, fewer files opened.
    """
    names = output_files(formats)
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    tuning_name = (TUNING_FILE,) if "leaderboard.parquet" in names else ()
    check_out_dir(out_dir, force, (*names, *tuning_name))
    owned = (out_dir / MARKER).is_file()
    runs, apart = (load_indexed_runs if use_index else load_runs)(runs_dir)
    settings, duplicates = build_settings(runs)
    apart = sorted([*apart, *duplicates], key=lambda a: a.folder)
    refs = load_references(reference_dir)
    attach_references(settings, refs)
    used = sum(s.n_runs for s in settings)
    recs = records(settings)
    tuning = load_tuning(runs_dir, runs)
    render = {
        "leaderboard.md": lambda: render_markdown(settings, apart, refs, used, tuning).encode("utf-8"),
        "leaderboard.parquet": lambda: to_parquet(recs),
        "leaderboard.csv": lambda: to_csv(recs),
        "index.html": lambda: render_html(settings, apart, refs, used, tuning).encode("utf-8"),
        "leaderboard.tex": lambda: render_latex(settings, apart, used).encode("utf-8"),
    }
    contents = {name: render[name]() for name in names}
    if tuning.studies and tuning_name:
        contents[TUNING_FILE] = tuning_parquet(tuning)
    files = write_outputs(out_dir, contents)
    if tuning_name and not tuning.studies and owned:
        drop_stale(out_dir / TUNING_FILE)
    summaries = tuple(
        SettingSummary(
            key=s.key,
            dataset=s.dataset,
            arch=s.arch,
            epochs=s.epochs,
            rows=len(s.rows),
            runs=s.n_runs,
            has_ls_baseline=s.baselines.get(LS.kind) is not None,
            has_ce_baseline=s.baselines.get(CE.kind) is not None,
        )
        for s in settings
    )
    return LeaderboardResult(files, summaries, tuple(apart), used)


def attach_references(settings: list[Setting], refs: References) -> None:
    """Give every row the published figures of its own setting: its recipe, data set (the whole
    of it, as each run recorded it), architecture, epochs, method, parameters and teacher
    (`References.same_setting`); a row denied one for its data alone says why (`paper_withheld`)."""
    for s in settings:
        for row in s.rows:
            ours = Ours(
                recipe_name=row.recipe_name,
                dataset=s.dataset,
                arch=s.arch,
                epochs=s.epochs,
                method=row.method,
                params=row.params,
                teacher_arch=row.teacher_arch,
                teacher_method=row.teacher_method,
                teacher_kind=row.teacher_kind,
                seen=tuple(seen_of_run(run) for run in row.runs),
            )
            row.paper = refs.matches(ours)
            row.paper_withheld = "" if row.paper else refs.withheld(ours)


def output_files(formats: Sequence[str]) -> tuple[str, ...]:
    """The files of `formats`, in FORMATS order; an unknown or missing format is a LeaderboardError."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise LeaderboardError(
            f"--format {', '.join(map(repr, unknown)) or '(none)'}: choose from {', '.join(FORMATS)}"
        )
    return tuple(name for fmt, name in FORMATS.items() if fmt in formats)


def check_out_dir(out_dir: Path, force: bool, names: Sequence[str] = OUTPUT_FILES) -> None:
    """Refuse to replace output files (`names`) that `generate` did not write (no MARKER beside them)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise LeaderboardError(f"--out {out_dir}: exists and is not a folder")
    if force or (out_dir / MARKER).is_file() or _written_before_markers(out_dir):
        return
    foreign = [name for name in names if (out_dir / name).exists()]
    if foreign:
        raise LeaderboardError(
            f"--out {out_dir}: holds {', '.join(foreign)} that harness leaderboard did not write "
            f"(no {MARKER} file); choose another --out or pass --force to replace them"
        )


#: how the files of a folder written before MARKER existed begin (read to recognise them)
_SIGNATURES = {"leaderboard.md": b"# Leaderboard\n\nGenerated by `harness leaderboard`"}


def _written_before_markers(out_dir: Path) -> bool:
    """True if the folder's leaderboard.md is one `generate` wrote before it left MARKER files."""
    try:
        with open(out_dir / "leaderboard.md", "rb") as fh:
            return fh.read(100).startswith(_SIGNATURES["leaderboard.md"])
    except OSError:
        return False


def drop_stale(path: Path) -> None:
    """Remove an output an earlier `generate` wrote into this folder and this one has no content
    for (tuning.parquet once the runs folder holds no study), so no file outlives its inputs."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise LeaderboardError(
            f"--out {path.parent}: cannot remove {path.name} ({exc.strerror or exc})"
        ) from None


def write_outputs(out_dir: Path, contents: dict[str, bytes]) -> tuple[Path, ...]:
    """Write each file atomically (temporary file, fsync, rename) into `out_dir`, and MARKER."""
    if out_dir.exists() and not out_dir.is_dir():
        raise LeaderboardError(f"--out {out_dir}: exists and is not a folder")
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / MARKER, lambda fh: fh.write(MARKER_TEXT))
        for name, data in contents.items():
            atomic_write_bytes(out_dir / name, lambda fh, data=data: fh.write(data))
            written.append(out_dir / name)
    except OSError as exc:
        raise LeaderboardError(f"--out {out_dir}: cannot write ({exc.strerror or exc})") from None
    return tuple(written)
