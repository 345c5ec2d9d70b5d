"""`harness data`: the data-set commands (`harness data convert`: a data set to an FFCV .beton file).

Parse, call, print: the conversion is `harness.data.convert`. May import: click and, inside the
commands, `harness.data`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group(
    epilog="\b\nExamples:\n"
    "  harness data convert --help\n"
    "  harness data convert /usr/share/datasets/fashion-mnist /tmp/fashion_val.beton --split test"
)
def data() -> None:
    """Data sets: convert them to FFCV .beton files.

    One sub-command: `harness data convert SOURCE OUT` (docs/data.md, docs/paper_suite.md).
    """


@data.command(
    "convert",
    epilog="\b\nExamples:\n"
    "  harness data convert /usr/share/datasets/fashion-mnist /tmp/fashion_val.beton --split test\n"
    "  harness data convert /data/imagenet/val /tmp/in1k_val.beton --max-resolution 500 "
    "--write-mode proportion",
)
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["imagefolder", "cifar", "fashion-mnist"]),
    help="Source format (default: detected from SOURCE).",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    help="Split to write: required for cifar / fashion-mnist; a sub-folder of an image folder.",
)
@click.option("--max-resolution", type=int, help="Cap the longest side (pixels).")
@click.option(
    "--jpeg-quality", type=int, default=90, show_default=True, help="JPEG quality (jpg, proportion)."
)
@click.option(
    "--write-mode",
    type=click.Choice(["raw", "jpg", "proportion"]),
    help="Pixels raw, JPEG, or JPEG for a random share (default: jpg for image folders, else raw).",
)
@click.option(
    "--compress-probability", type=float, default=0.5, show_default=True, help="JPEG share (proportion)."
)
@click.option("--workers", type=int, help="Worker processes (default: one per CPU core).")
@click.option("--page-size", type=int, help="ffcv page size in MiB, a power of two >= 2 (default 8).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists (replaced only once complete).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def convert(
    source: Path,
    out: Path,
    fmt: str | None,
    split: str | None,
    max_resolution: int | None,
    jpeg_quality: int,
    write_mode: str | None,
    compress_probability: float,
    workers: int | None,
    page_size: int | None,
    force: bool,
    progress: bool | None,
) -> None:
    """Write a data set to an FFCV .beton file.

    SOURCE (an ImageFolder tree, CIFAR python batches or Fashion-MNIST IDX files) to OUT.beton.
    """
    from harness.data import convert as conversion

    options = conversion.ConvertOptions(
        format=fmt,
        split=split,
        max_resolution=max_resolution,
        jpeg_quality=jpeg_quality,
        write_mode=write_mode,
        compress_probability=compress_probability,
        workers=workers,
        page_size=None if page_size is None else page_size * 2**20,
        force=force,
        progress=progress,
    )
    try:
        result = conversion.convert(source, out, options)
    except KeyboardInterrupt:
        click.echo(f"error: interrupted; {out} was not written", err=True)
        raise SystemExit(130) from None
    click.echo(result.summary())
