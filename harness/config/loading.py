"""Reading recipes: YAML with its limits, `extends:`, `--set` overrides and validation.

`load_recipe` reads a recipe file and the recipes it `extends:`, applies the `--set a.b=value`
overrides and validates the result into a `Recipe` (`harness.config.recipe`); any problem is one
`RecipeError` line naming the file or the override. `parse_yaml` refuses documents over
YAML_MAX_BYTES and aliases expanding past YAML_MAX_NODES values (or into a cycle).
May import: `harness.errors`, `harness.schema`, `harness.config.recipe`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harness.config.recipe import Recipe, safe_name
from harness.errors import RecipeError
from harness.schema import fail, from_dict


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], value parsed as a YAML scalar/list/mapping)."""
    if "=" not in text:
        raise RecipeError(f"--set {text}: expected KEY=VALUE, e.g. optim.lr=0.05")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(keys):
        raise RecipeError(f"--set {text}: empty key in {key!r}")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except ValueError as exc:
        raise RecipeError(f"--set {text}: value is not valid YAML ({exc})") from None
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `data` with each `a.b=value` applied (validated later with the whole recipe)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            elif not isinstance(child, dict):
                raise RecipeError(f"--set {text}: {'.'.join(keys[: i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return data


#: the largest YAML document read (a recipe is a few kB; a sweep file a few more)
YAML_MAX_BYTES = 1 << 20
#: the most values a document may hold once its aliases are expanded: a "billion laughs" document
#: is small, but every later step (merging, hashing, validation) would walk its expansion
YAML_MAX_NODES = 100_000


def parse_yaml(text: str) -> Any:
    """`yaml.safe_load(text)`; any failure is a ValueError with a one-line reason.

    PyYAML raises more than `YAMLError` on hostile input: an explicit tag with a value it cannot
    construct (`!!float x`, `!!timestamp`, `2001-13-01`) raises ValueError, KeyError, IndexError or
    AttributeError from inside the constructor, and deep nesting a RecursionError. A document over
    YAML_MAX_BYTES, or whose aliases expand to more than YAML_MAX_NODES values or refer to
    themselves, is refused before anything walks it.
    """
    if len(text.encode("utf-8", "surrogatepass")) > YAML_MAX_BYTES:
        raise ValueError(f"document larger than {YAML_MAX_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
        _check_expansion(data)
        return data
    except Exception as exc:  # every parser failure means "invalid YAML" (see above)
        if isinstance(exc, (yaml.YAMLError, YamlTooLarge)):
            reason = _first_line(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(" ".join(reason.split())[:300]) from None


class YamlTooLarge(ValueError):
    """A YAML document whose aliases expand past YAML_MAX_NODES or refer to themselves."""


def _check_expansion(data: Any) -> None:
    """Count the values of `data` with every alias expanded, in time linear in the document
    (shared sub-trees are counted once and multiplied); refuse a self-referring alias."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (list, dict)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise YamlTooLarge("an alias refers to a value that holds it (a cycle)")
        open_ids.add(key)
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += size(item)
            if total > YAML_MAX_NODES:
                raise YamlTooLarge(f"aliases expand to more than {YAML_MAX_NODES} values")
        open_ids.discard(key)
        sizes[key] = total
        return total

    size(data)


def read_yaml_file(path: Path, what: str) -> Any:
    """Parse a YAML file (safe_load); a missing, unreadable or invalid file is one line naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RecipeError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read {what} ({exc})") from None
    try:
        return parse_yaml(text)
    except ValueError as exc:
        raise RecipeError(f"{path}: invalid YAML ({exc})") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a recipe file as a mapping (safe_load); errors name the file."""
    data = read_yaml_file(path, "recipe")
    if data is None:
        raise RecipeError(f"{path}: recipe is empty")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping, got {type(data).__name__}")
    return data


# Keys that describe one file and are never inherited through `extends`.
NOT_INHERITED = ("name", "method", "description")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_recipe_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and, through `extends: <file>`, the recipes it builds on (deep-merged).

    `extends` is resolved relative to the file that names it. The base's `name`, `method` and
    `description` are not inherited: they describe the base file alone.
    """
    data = read_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise RecipeError(f"{path}: extends: must be the path of another recipe")
    if "\x00" in base:
        raise RecipeError(f"{path}: extends: a path cannot contain a NUL byte, got {base!r}")
    base_path = (path.resolve().parent / base).resolve()  # beside the real file, not a symlink
    if base_path in (*chain, path.resolve()):
        raise RecipeError(f"{path}: extends: {base} makes a cycle")
    try:
        parent = read_recipe_tree(base_path, (*chain, path.resolve()))
    except RecipeError as exc:
        raise RecipeError(f"{path}: extends: {exc}") from None
    for key in NOT_INHERITED:
        parent.pop(key, None)
    return deep_merge(parent, data)


def from_mapping(data: dict[str, Any], name: str, source: str = "") -> Recipe:
    """Validate a recipe mapping; `name` is used when the recipe gives none."""
    try:
        recipe = from_dict(Recipe, data)
    except RecipeError as exc:
        if not source:
            raise
        raise RecipeError(f"{source}: {exc}") from None
    if recipe.name is None:
        problem = safe_name(name)
        if problem:
            fail("name", f"not given, and the file name cannot name a run folder: it {problem}")
        recipe.name = name
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, override and validate the recipe at `path`; any problem is one RecipeError line."""
    path = Path(path)
    data = read_recipe_tree(path)
    try:
        data = apply_overrides(data, list(overrides))
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    try:
        recipe = from_mapping(data, path.stem)
    except RecipeError as exc:
        raise RecipeError(f"{_source_of(exc, path, overrides)}: {exc}") from None
    recipe.source = str(path)
    return recipe


def _source_of(error: RecipeError, path: Path, overrides: list[str] | tuple[str, ...]) -> str:
    """Where a bad value came from: the last `--set` that wrote the failing field (or a section
    holding it), else the recipe file."""
    if error.field:
        for text in reversed(overrides):
            key = text.split("=", 1)[0].strip()
            if error.field == key or error.field.startswith(f"{key}.") or error.field.startswith(f"{key}["):
                return f"--set {text}"
    return str(path)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
