"""leaderboard.tex (`harness leaderboard --format latex`) on real metrics.parquet files: the Markdown
board's rows and figures cell for cell, LaTeX's special characters escaped, a well-formed file that
pdflatex compiles (where it is installed: `scripts/setup.sh --test`), byte-identical when regenerated.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.leaderboard import MARKER, OUTPUT_FILES, LeaderboardError, generate
from tests.leaderboard.test_leaderboard import run_id_for, write_run, write_study
from tests.support.marks import PDFLATEX
from tests.support.recipes import REPO

FORMATS = ("md", "parquet", "latex")


# ------------------------------------------------------------------------------ reading both boards
def md_tables(text: str) -> dict[tuple[str, str], list[list[str]]]:
    """The Markdown board's tables, {(setting key, table): [header, *rows]}, cells unescaped."""
    names = {"Accuracy": "accuracy", "Confidence": "confidence", "Teachers": "fidelity"}
    tables: dict[tuple[str, str], list[list[str]]] = {}
    key = table = ""
    for line in text.splitlines():
        if line.startswith("Setting "):
            key = line.split(";")[0].removeprefix("Setting ")
        elif line.startswith("### "):
            table = names.get(line[4:].split(" ")[0], "")
        elif line.startswith("| ") and table and not line.startswith("| ---"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            tables.setdefault((key, table), []).append([_md_plain(c.strip()) for c in cells])
        elif not line.startswith("|"):
            table = "" if line.startswith("## ") else table
    return tables


def _md_plain(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


_TEX_SPELLINGS = {
    "$-$": "-",
    r"$\pm$": "±",
    "{[}": "[",
    "{]}": "]",
    "--": "–",
    r"$\uparrow$": "↑",
    r"$\downarrow$": "↓",
    r"$\Delta$": "Δ",
    r"$\|$": "‖",
    r"$\leftarrow$": "←",
    r"\_": "_",
    r"\%": "%",
}


def _tex_plain(cell: str) -> str:
    for spelling, plain in _TEX_SPELLINGS.items():
        cell = cell.replace(spelling, plain)
    return cell


def tex_tables(text: str) -> dict[tuple[str, str], list[list[str]]]:
    """The LaTeX tables, {(setting key, table): [header, *rows]}, keyed by their labels; the cells
    as they are written (split on unescaped `&`)."""
    tables = {}
    for m in re.finditer(
        r"\\label\{tab:leaderboard-([A-Za-z0-9-]+)-(\w+)\}\n.*?\\toprule\n(.*?)\\bottomrule", text, flags=re.S
    ):
        lines = [line for line in m.group(3).splitlines() if line != r"\midrule"]
        rows = [re.split(r"(?<!\\)&", line.removesuffix(r" \\")) for line in lines]
        tables[(m.group(1), m.group(2))] = [[c.strip() for c in row] for row in rows]
    return tables


def check_structure(text: str) -> None:
    """What pdflatex needs of the file, checked without it: braces balance (escapes skipped), no
    bare `%`, `$` or `&` in text, and every tabular row has as many cells as its column spec."""
    depth = 0
    body = "\n".join(line for line in text.splitlines() if not line.startswith("% "))
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, body[max(0, i - 80) : i + 1]
        assert ch != "%" or (body[i - 1] == "{" and body[i + 1] == "\n"), body[max(0, i - 80) : i + 1]
        i += 1
    assert depth == 0
    for line in body.splitlines():
        assert len(re.findall(r"(?<!\\)\$", line)) % 2 == 0, line
    for spec, rows in re.findall(r"\\begin\{tabular\}\{@\{\}(\w+)@\{\}\}\n(.*?)\\end\{tabular\}", body, re.S):
        for row in rows.splitlines():
            if row.endswith(r" \\"):
                assert len(re.split(r"(?<!\\)&", row)) == len(spec), row
    assert body.count(r"\begin{table}") == body.count(r"\end{table}") == body.count(r"\label{")


def assert_same_figures(out: Path) -> int:
    """Every LaTeX table is the Markdown table of the same setting: the same rows in the same order
    and, in every column the LaTeX table has, the same text (numbers included), the marks moved;
    the marks agree with leaderboard.parquet. Returns the number of cells compared."""
    md, tex = (
        md_tables((out / "leaderboard.md").read_text()),
        tex_tables((out / "leaderboard.tex").read_text()),
    )
    assert set(tex) <= set(md) and {t for _, t in tex} >= {"accuracy", "confidence"}
    assert {k for k, t in md if t == "accuracy"} == {k for k, t in tex if t == "accuracy"}
    records = {
        (r["setting_key"], r["label"]): r for r in pq.read_table(out / "leaderboard.parquet").to_pylist()
    }
    compared = 0
    for (key, table), (tex_header, *tex_rows) in tex.items():
        md_header, *md_rows = md[(key, table)]
        columns = [md_header.index(_tex_plain(h)) for h in tex_header]
        assert len(tex_rows) == len(md_rows), (key, table)
        for tex_cells, md_cells in zip(tex_rows, md_rows, strict=True):
            assert _tex_plain(tex_cells[0]) == md_cells[0]  # the row's label: the same row
            for h, tex_cell, col in zip(tex_header, tex_cells, columns, strict=True):
                shown, mark = md_cells[col].split(" ns, ")[0], md_cells[col].endswith("*")
                plain = _tex_plain(tex_cell)
                assert plain.replace("$^{*}$", "").replace(r"$^{\dagger}$", "") == shown.removesuffix("*")
                assert ("$^{*}$" in plain) == mark, (key, h, tex_cell, md_cells[col])
                if h.startswith(r"$\Delta$ vs ") and table == "accuracy":
                    kind = {"LS": "ls", "CE": "ce"}[h.split()[-1]]
                    rec = records[(key, md_cells[0])]
                    assert mark == (rec[f"gain_{kind}_status"] == "significant")
                    welch = rec[f"gain_{kind}_test"] == "welch" and rec[f"gain_{kind}_status"] != "baseline"
                    assert (r"$^{\dagger}$" in plain) == welch, (key, h, tex_cell)
                compared += 1
    return compared


# ------------------------------------------------------------------------------ tests
def test_latex_figures_are_the_markdown_boards_on_the_committed_study(tmp_path):
    """The committed study (83 real runs, validation-selected top-1, paired tests, Holm's marks)."""
    generate(REPO / "leaderboard" / "runs", tmp_path, formats=FORMATS, use_index=False)  # read-only
    tex = (tmp_path / "leaderboard.tex").read_text()
    check_structure(tex)
    assert assert_same_figures(tmp_path) > 500
    assert "top-1 selected & top-1 last" in tex and "$^{*}$" in tex and r"$\pm$" in tex
    assert "paired t intervals over the seeds both rows ran" in tex and "3 seeds per row" in tex
    assert "Holm's correction" in tex and "3 epochs" in tex


def test_latex_figures_with_teachers_one_seed_and_welch(tmp_path):
    """write_study: tests at the last epoch, the paired test marked, a one-seed setting (Welch, n/c)."""
    write_study(tmp_path / "runs")
    generate(tmp_path / "runs", tmp_path / "out", formats=FORMATS)
    tex = (tmp_path / "out" / "leaderboard.tex").read_text()
    check_structure(tex)
    assert assert_same_figures(tmp_path / "out") > 50
    assert {t for _, t in tex_tables(tex)} == {"accuracy", "confidence", "fidelity"}
    assert r"+1.00 (n/c)$^{\dagger}$" in tex and "1 seed per row" in tex


HOSTILE = 'a_b%c&d#e$f{g}h\\i^j~k[l]*m<n>o|p"q é--r ←'
HOSTILE_TEX = (
    r"a\_b\%c\&d\#e\$f\{g\}h\textbackslash{}i\textasciicircum{}j\textasciitilde{}k{[}l{]}{*}m"
    r"\textless{}n\textgreater{}o\textbar{}p{''}q e-{}-r $\leftarrow$"
)


def write_hostile(runs: Path) -> None:
    write_run(runs, HOSTILE, HOSTILE, 0, [70.0, 71.0], run_id=run_id_for("safe", 0), setting="hostile")
    write_run(runs, "b", "[x]", 1, [70.0, 72.0], setting="50%_{bad}")


def test_latex_escapes_names_from_runs(tmp_path):
    write_hostile(tmp_path / "runs")
    generate(tmp_path / "runs", tmp_path / "out", formats=("latex",))
    tex = (tmp_path / "out" / "leaderboard.tex").read_text()
    check_structure(tex)
    assert f"\n{HOSTILE_TEX} & 1 & " in tex  # the label opens its row, escaped whole
    assert "\n{[}x{]} & 1 & " in tex  # `[` opening a row would be read as the `\\` before's option
    assert HOSTILE not in tex and "_{bad}" not in tex and tex.isascii()
    labels = re.findall(r"\\label\{(.*)\}", tex)
    assert all(re.fullmatch(r"tab:leaderboard-[A-Za-z0-9-]+", lab) for lab in labels), labels
    assert len(labels) == len(set(labels)) == 4


@pytest.mark.skipif(
    PDFLATEX is None, reason="pdflatex is not installed (scripts/setup.sh --test installs it)"
)
def test_latex_compiles_with_pdflatex(tmp_path):
    """Both boards \\input into one article with booktabs; pdflatex stops on any error."""
    write_study(tmp_path / "runs")
    write_hostile(tmp_path / "runs")
    generate(tmp_path / "runs", tmp_path / "board", formats=("latex",))
    doc = tmp_path / "paper.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\input{board/leaderboard.tex}\nSee Table~\\ref{tab:leaderboard-setting-a-accuracy}.\n"
        "\\end{document}\n"
    )
    for _ in range(2):  # the second pass resolves the reference
        proc = subprocess.run(
            [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert "undefined" not in log.lower() and "multiply defined" not in log
    typeset = re.findall(r"\\newlabel\{(tab:leaderboard-[^}]*)\}", (tmp_path / "paper.aux").read_text())
    written = re.findall(r"\\label\{(.*)\}", (tmp_path / "board" / "leaderboard.tex").read_text())
    assert typeset == written and len(written) == 10  # settings a (3 tables), b (3), 2 hostile (2 each)
    assert "Output written on paper.pdf" in log


def test_latex_regenerates_byte_identical_and_alone(tmp_path):
    runs = tmp_path / "runs"
    write_study(runs)
    generate(runs, tmp_path / "a", formats=("latex",))
    first = (tmp_path / "a" / "leaderboard.tex").read_bytes()
    generate(runs, tmp_path / "a", formats=("latex",))
    generate(runs, tmp_path / "b", formats=("latex", "md"))
    assert (tmp_path / "a" / "leaderboard.tex").read_bytes() == first
    assert (tmp_path / "b" / "leaderboard.tex").read_bytes() == first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [MARKER, "leaderboard.tex"]  # no temp
    assert "leaderboard.tex" not in OUTPUT_FILES  # by default (test_leaderboard checks those files alone)


def test_cli_format_latex(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    write_run(runs, "ok", "ce", 0, [70.0, 71.0])
    result = CliRunner().invoke(
        main, ["leaderboard", "--runs-dir", str(runs), "--out", str(out), "--format", "latex"]
    )
    assert result.exit_code == 0, result.output
    assert "-> " in result.stdout and "(leaderboard.tex)" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "leaderboard.tex"]
    bad = CliRunner().invoke(
        main, ["leaderboard", "--runs-dir", str(runs), "--out", str(tmp_path / "x"), "--format", "pdf"]
    )
    assert bad.exit_code == 2
    assert bad.stderr.splitlines() == ["error: --format 'pdf': choose from md, parquet, csv, html, latex"]
    assert not (tmp_path / "x").exists()


def test_a_foreign_leaderboard_tex_is_not_replaced(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "paper"
    write_run(runs, "ok", "ce", 0, [70.0, 71.0])
    out.mkdir()
    (out / "leaderboard.tex").write_text("my own table\n")
    with pytest.raises(
        LeaderboardError, match=r"holds leaderboard.tex that harness leaderboard did not write"
    ):
        generate(runs, out, formats=("latex",))
    assert (out / "leaderboard.tex").read_text() == "my own table\n" and not (out / MARKER).exists()
    generate(runs, out, formats=("latex",), force=True)
    assert (
        (out / "leaderboard.tex")
        .read_text()
        .startswith("% Generated by `harness leaderboard --format latex`")
    )
