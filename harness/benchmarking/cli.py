"""`harness bench`: run the suites, write their Parquet files, return the Markdown report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.benchmarking import report, steps
from harness.errors import HarnessError

LOADER_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_loader.py"


def run_loader(quick: bool, out: Path) -> None:
    """The FFCV-vs-torchvision loader benchmark (benchmarks/bench_loader.py, a source checkout)."""
    if not LOADER_SCRIPT.exists():
        raise HarnessError(f"{LOADER_SCRIPT}: loader benchmark not found (it ships with the source tree)")
    spec = importlib.util.spec_from_file_location("bench_loader", LOADER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--out", str(out / "loader.parquet")] + (["--quick"] if quick else [])
    if module.main(args) != 0:
        raise HarnessError("loader benchmark failed")


def run(suite: str, *, quick: bool, device: str, out: Path, rounds: int = 7) -> str:
    sections = []
    ctx = report.context(device)
    if suite in ("steps", "all"):
        cfg = steps.StepConfig(device=device, rounds=2 if quick else rounds, steps=2 if quick else 4)
        rows = [{**r, **ctx} for r in steps.run(cfg)]
        path = report.write(rows, out, "steps")
        columns = ["case", "median_s", "img_per_s", "ratio", "baseline", "spread", "detail"]
        sections.append(
            f"## Training steps ({ctx['device']}, {ctx['threads']} threads) -> {path}\n\n"
            + report.markdown(rows, columns)
        )
    if suite in ("loader", "all"):
        out.mkdir(parents=True, exist_ok=True)
        run_loader(quick, out)  # prints its own table
    return "\n\n".join(sections)
