"""Reading recipes: YAML with its limits, `extends:`, `--set` overrides and validation.

`load_recipe` reads a recipe file and the recipes it `extends:`, applies the `--set a.b=value`
overrides and validates the result into a `Recipe` (`harness.config.recipe`); any problem is one
`RecipeError` line naming the file or the override. `parse_yaml` refuses documents over
YAML_MAX_BYTES and aliases expanding past YAML_MAX_NODES values (or into a cycle).
May import: `harness.errors`, `harness.schema`, `harness.config.recipe`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config.recipe import Recipe, safe_name
from harness.errors import RecipeError
from harness.schema import RecipeProblems, describe_fields, fail, from_dict_all, problems_of


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
    """A copy of `data` with each `a.b=value` applied (validated later with the whole recipe).

    A `--set` naming another thing in a NAMED section (`strategy.name=ce`) drops the keys of the
    thing the file named (its `params`), but not those an earlier `--set` wrote; a free mapping
    set to null (`strategy.params=null`) is as if not set (`free_mappings`).
    """
    data = copy.deepcopy(data)
    written: list[tuple[list[str], Any, str]] = []
    for text in overrides:
        keys, value = parse_override(text)
        if value is None and ".".join(keys) in free_mappings():
            continue
        holder = _holder(data, keys, text)
        if len(keys) == 2 and renames(keys[0], holder, {keys[1]: value}):
            own = NAMED[keys[0]].own
            for key in own:
                holder.pop(key, None)
            for earlier, earlier_value, earlier_text in written:  # what earlier --sets wrote stays
                if len(earlier) > 1 and earlier[0] == keys[0] and earlier[1] in own:
                    _holder(data, earlier, earlier_text)[earlier[-1]] = copy.deepcopy(earlier_value)
        holder[keys[-1]] = value
        written.append((keys, value, text))
    return data


def _holder(data: dict[str, Any], keys: list[str], text: str) -> dict[str, Any]:
    """The mapping of `data` that holds the dotted key `keys` (`data[k1]...[k(n-1)]`), made where
    missing; a key on the way that is not a section is an error naming the `--set text`."""
    node = data
    for i, k in enumerate(keys[:-1]):
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        elif not isinstance(child, dict):
            raise RecipeError(f"--set {text}: {'.'.join(keys[: i + 1])} is not a section")
        node = child
    return node


@dataclass(frozen=True)
class Named:
    """A recipe section that names one thing (a strategy, an optimizer, a teacher): the keys `by`
    name it, the keys `own` belong to the thing named (its parameters) and never follow a new name."""

    by: tuple[str, ...]
    own: tuple[str, ...]


#: what names a teacher: a run, a weights file or timm's pretrained weights of an architecture
TEACHER_SOURCE = ("run", "weights", "pretrained", "pretrained_file", "arch")
#: the sections whose own keys a child recipe (`extends:`) or a `--set` drops when it names another
# thing: `strategy: {name: ce}` over a base's label smoothing leaves its `epsilon` behind
NAMED = {
    "strategy": Named(by=("name",), own=("params",)),
    "optim": Named(by=("name",), own=("kwargs",)),
    "teacher": Named(by=TEACHER_SOURCE, own=(*TEACHER_SOURCE, "seed", "epoch", "train_if_missing", "kwargs")),
}


def renames(section: str, base: Any, update: dict[str, Any]) -> bool:
    """Whether `update` names another thing than `base` in the NAMED `section`: it gives a key of
    `by` a value other than the base's (or, where the base gives none, than the default)."""
    named = NAMED.get(section)
    if named is None or not isinstance(base, dict):
        return False
    defaults = _defaults(section)
    return any(key in update and update[key] != base.get(key, defaults.get(key)) for key in named.by)


def _defaults(section: str) -> dict[str, Any]:
    """The defaults of the fields of the recipe section `section` (a dataclass, or one or null)."""
    tp = typing.get_type_hints(Recipe)[section]
    cls = next(a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a))
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


@functools.cache
def free_mappings() -> frozenset[str]:
    """Dotted paths of the recipe's free mappings (`strategy.params`, `model.kwargs`, ...): given
    null, one is as if absent (it holds no null: its empty value is `{}`)."""
    return frozenset(path for path, tp, _, _ in describe_fields(Recipe) if tp == "a mapping")


def drop_null_mappings(data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a recipe file's mapping) without the free mappings given null (`free_mappings`)."""
    for path in free_mappings():
        *sections, key = path.split(".")
        node: Any = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] is None:
            del node[key]
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
    themselves, is refused before anything walks it; so is a mapping that names a key twice
    (YAML says keys are unique; PyYAML would keep the last silently).
    """
    if len(text.encode("utf-8", "surrogatepass")) > YAML_MAX_BYTES:
        raise ValueError(f"document larger than {YAML_MAX_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
        _check_expansion(data)
        return data
    except Exception as exc:  # every parser failure means "invalid YAML" (see above)
        if isinstance(exc, (yaml.YAMLError, YamlTooLarge, YamlDuplicateKey)):
            reason = _first_line(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(" ".join(reason.split())[:300]) from None


class YamlDuplicateKey(ValueError):
    """A YAML mapping that holds the same key twice (at any level)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` refusing a mapping that names a key twice, with the lines of both."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def _check_unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """Raise YamlDuplicateKey at the first key of `node` written twice (a merge key `<<` merges
    another mapping under this one's keys, as YAML defines: not a duplicate)."""
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = lines.get(key)
            lines[key] = line
        except TypeError:  # an unhashable key: PyYAML refuses it itself
            continue
        if first is not None:
            raise YamlDuplicateKey(f"duplicate key {key!r} at lines {first} and {line}")


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


def deep_merge(base: dict[str, Any], override: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, anything else is replaced; where the
    override names another thing in a NAMED section (`renames`), the base's own keys are dropped."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            below = out[key]
            if top and renames(key, below, value):
                below = {k: v for k, v in below.items() if k not in NAMED[key].own}
            out[key] = deep_merge(below, value, top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_recipe_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and, through `extends: <file>`, the recipes it builds on (deep-merged).

    `extends` is resolved relative to the file that names it. The base's `name`, `method` and
    `description` are not inherited: they describe the base file alone; nor are the parameters of
    a strategy, optimizer or teacher the file replaces (NAMED). A free mapping given null is as if
    absent (`drop_null_mappings`).
    """
    data = drop_null_mappings(read_yaml(path))
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
        recipe = from_dict_all(Recipe, data)
    except RecipeError as exc:
        if not source:
            raise
        raise _placed(exc, lambda _: source) from None
    if recipe.name is None:
        problem = safe_name(name)
        if problem:
            fail("name", f"not given, and the file name cannot name a run folder: it {problem}")
        recipe.name = name
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, override and validate the recipe at `path`; any problem is one RecipeError line (a
    RecipeProblems where the recipe holds several independent ones: each its own line)."""
    path = Path(path)
    data = read_recipe_tree(path)
    try:
        data = apply_overrides(data, list(overrides))
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    try:
        recipe = from_mapping(data, path.stem)
    except RecipeError as exc:
        raise _placed(exc, lambda problem: _source_of(problem, path, overrides)) from None
    recipe.source = str(path)
    return recipe


def _placed(error: RecipeError, source: Callable[[RecipeError], str]) -> RecipeProblems:
    """Every problem of `error` (`problems_of`) as one line prefixed by where it came from; the
    message is the first's."""
    return RecipeProblems([RecipeError(f"{source(problem)}: {problem}") for problem in problems_of(error)])


def _source_of(error: RecipeError, path: Path, overrides: list[str] | tuple[str, ...]) -> str:
    """Where a bad value came from: the last `--set` that wrote the failing field (or a section
    holding it), or that named another thing in the NAMED section of the field's own keys
    (`strategy.name=kd` for `strategy.params.temperature: required`), else the recipe file."""
    if error.field:
        for text in reversed(overrides):
            key = text.split("=", 1)[0].strip()
            if any(_within(error.field, written) for written in (key, *_own_keys(key))):
                return f"--set {text}"
    return str(path)


def _own_keys(key: str) -> list[str]:
    """The dotted keys a `--set key=...` drops when it names another thing (NAMED), else none."""
    section, _, name = key.partition(".")
    named = NAMED.get(section)
    return [f"{section}.{own}" for own in named.own] if named and name in named.by else []


def _within(field: str, key: str) -> bool:
    """Whether the dotted `field` is `key` or lies under it."""
    return field == key or field.startswith(f"{key}.") or field.startswith(f"{key}[")


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
