"""`harness bench`: run the suites, write their Parquet files, return the Markdown report."""

from __future__ import annotations

from pathlib import Path

from harness.benchmarking import report, steps


def run(suite: str, *, quick: bool, device: str, out: Path) -> str:
    sections = []
    ctx = report.context(device)
    if suite in ("steps", "all"):
        cfg = steps.StepConfig(device=device, rounds=2 if quick else 7, steps=2 if quick else 4)
        rows = [{**r, **ctx} for r in steps.run(cfg)]
        path = report.write(rows, out, "steps")
        sections.append(
            f"## Training steps ({ctx['device']}, {ctx['threads']} threads) -> {path}\\n\\n"
            + report.markdown(
                rows, ["case", "median_s", "img_per_s", "ratio", "baseline", "spread", "detail"]
            )
        )
    return "\\n\\n".join(sections)
