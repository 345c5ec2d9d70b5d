"""timm's pretrained weights as a student's initialisation or as a teacher.

`model.pretrained: true` asks timm for the architecture's default pretrained tag, a string asks
for one tag (`a1_in1k`, or the full `resnet50.a1_in1k`); `pretrained_file: PATH` gives the
weights in a local file instead, handed to timm through its own `pretrained_cfg_overlay`
(`file=PATH`), so timm's loader adapts them exactly as it adapts hub weights (the stem to
`in_chans`, the classifier dropped when the class count differs). Hub weights come from the
Hugging Face cache in timm's normal way: set `HF_HUB_OFFLINE=1` where there is no network, and
a missing cache entry is one line naming the model and the command that fetches it.

A run records where its weights came from (`origin`: the tag, the file, its sha256) in
provenance.json. The identity of a run holds the resolved tag and, for a local file, the file's
sha256 (not its path): other weights make another run, the same file elsewhere the same run.
Hub weights are identified by their tag (the file's hash is in the provenance).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from harness.errors import RecipeError

#: repository files timm reads from the Hugging Face hub (newest format first)
HUB_FILES = ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")


def resolve_tag(arch: str, pretrained: bool | str, path: str) -> str:
    """`arch.tag` for `pretrained` (true: timm's default tag); an unknown tag is a RecipeError
    naming `path` with close matches."""
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    base, own_tag = split_model_name_tag(arch)
    known = timm.list_pretrained(f"{base}.*")
    if pretrained is True:
        if own_tag:
            name = arch
        else:
            cfg = get_pretrained_cfg(base)
            if cfg is None or not known:
                raise RecipeError(f"{path}: timm has no pretrained weights for {base}")
            name = f"{base}.{cfg.tag}" if cfg.tag else known[0]
    else:
        tag = str(pretrained)
        if "." in tag:
            other, tag = split_model_name_tag(tag)
            if other != base:
                raise RecipeError(f"{path}: {pretrained!r} names another architecture than {base!r}")
        name = f"{base}.{tag}"
    if name not in known:
        from harness.schema import suggest

        listed = suggest(name, known) or (f"; known tags: {', '.join(known[:6])}" if known else "")
        raise RecipeError(f"{path}: timm knows no pretrained weights {name!r}{listed}")
    return name


def local_file(pretrained_file: str, base: Path) -> Path:
    """The weights file (relative paths against the recipe's folder, then the current one)."""
    path = Path(pretrained_file).expanduser()
    if not path.is_absolute() and not path.exists():
        path = base / path
    return path


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file (remembered per path, size and modification time)."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def hub_file(tag: str) -> Path | None:
    """The file of `tag`'s weights in the local Hugging Face cache, if there."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    names = (cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else HUB_FILES
    for name in names:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return Path(found)
    return None


def origin(tag: str, file: Path | None) -> dict[str, Any]:
    """What a run records about its pretrained weights: the tag, the file and its sha256."""
    file = file or hub_file(tag)
    return {
        "tag": tag,
        "file": str(file) if file else None,
        "sha256": file_sha256(file) if file and file.exists() else None,
        "from": "file" if file and not str(file).startswith(_hub_cache_root()) else "hub",
    }


def _hub_cache_root() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm
        return "\0"
    return str(Path(HF_HUB_CACHE).resolve())


def fetch_hint(tag: str) -> str:
    """How to put `tag`'s weights into the Hugging Face cache (on a machine with network)."""
    return (
        f"fetch them once with network: python -c \"import timm; timm.create_model('{tag}', "
        f'pretrained=True)" (or give pretrained_file: PATH)'
    )


def create(
    tag: str,
    *,
    num_classes: int,
    in_chans: int,
    kwargs: dict[str, Any],
    file: Path | None,
    path: str,
    keep_classifier: bool = False,
) -> Any:
    """`timm.create_model(tag, pretrained=True, ...)` with a local `file` through timm's overlay.

    `keep_classifier` (teachers): the weights must already have `num_classes` outputs; timm
    would otherwise put a new, untrained classifier on them.
    """
    import timm
    from timm.models import get_pretrained_cfg

    overlay: dict[str, Any] = {}
    if file is not None:
        if not file.is_file():
            raise RecipeError(f"{path}_file: {file}: file not found")
        overlay["file"] = str(file)
        if keep_classifier:
            overlay["num_classes"] = num_classes  # the file's classifier is loaded, strictly
    elif keep_classifier:
        cfg = get_pretrained_cfg(tag)
        have = getattr(cfg, "num_classes", None)
        if have is not None and have != num_classes:
            raise RecipeError(
                f"{path}: {tag} predicts {have} classes, the data has {num_classes}; a teacher "
                "must predict the student's classes"
            )
    try:
        return timm.create_model(
            tag,
            pretrained=True,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained_cfg_overlay=overlay or None,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        if type(exc).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or (
            isinstance(exc, OSError) and file is None
        ):
            raise RecipeError(
                f"{path}: the weights of {tag} are not in the Hugging Face cache "
                f"({_first(exc)}); {fetch_hint(tag)}"
            ) from None
        raise RecipeError(f"{path}: timm cannot load {tag} weights ({_first(exc)})") from None
    except RuntimeError as exc:  # a state_dict that does not fit the architecture
        raise RecipeError(f"{path}: the weights do not fit {tag} ({_first(exc)})") from None


def _first(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text or type(exc).__name__


def identity_section(section: dict[str, Any] | None, base: Path) -> None:
    """Rewrite a recipe section's `pretrained` / `pretrained_file` for the run identity, in place:
    absent when unused (so earlier runs keep their identity), the file as its sha256."""
    if not isinstance(section, dict):
        return
    if not section.get("pretrained"):
        section.pop("pretrained", None)
    file = section.get("pretrained_file")
    if file is None:
        section.pop("pretrained_file", None)
        return
    local = local_file(file, base)
    section["pretrained_file"] = {"sha256": file_sha256(local) if local.is_file() else f"missing:{file}"}


def describe(origin_record: dict[str, Any]) -> str:
    """One line for the log."""
    sha = origin_record.get("sha256")
    return f"{origin_record['tag']} ({origin_record['from']}{', sha256 ' + sha[:12] if sha else ''})"
