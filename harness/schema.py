"""Strict, typed loading of nested dataclasses from plain dicts (YAML).

Every component owns its configuration as a kw-only dataclass whose fields carry their type, a
default and, where needed, a check. `from_dict` builds one from a mapping and fails with a
`RecipeError` whose one-line message names the dotted path of the offending key:

    optim.lr: must be > 0, got -1
    model.arhc: unknown key; did you mean 'arch'?

Unknown keys are errors (never silently ignored), types are checked (ints are accepted where
floats are expected, never floats where ints are; booleans are never numbers, but where a field's
choices hold 'on' or 'off', YAML's on/off booleans are those words: `on_off`), and each field's
`check` runs after coercion.
Every integer is bounded by what the code can use: |n| <= INT_MAX (2**31 - 1: torch sizes,
indices and Parquet's int64 all hold it) unless the field says otherwise (`int_max`; seeds go up
to SEED_MAX = 2**32 - 1, what every generator accepts, NumPy's legacy one included). Text never
holds a NUL byte (it ends up in paths and folder names).
A dataclass may define `validate(self, path)` for checks that span several fields.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union

from harness.errors import RecipeError

T = TypeVar("T")
Check = Callable[[Any], "str | None"]

#: the largest integer a field holds unless it says otherwise (`field(int_max=...)`)
INT_MAX = 2**31 - 1
#: the largest seed: torch, Python and NumPy (legacy `np.random.seed` included) all accept it
SEED_MAX = 2**32 - 1


#: common misnames of a choice and what they mean: suggested first where the choice exists
ALIASES = {"gpu": "cuda", "nvidia": "cuda", "cuda:0": "cuda", "bfloat16": "bf16", "none": "off"}


def close_matches(word: str, candidates: typing.Iterable[str], n: int = 3) -> list[str]:
    """Up to `n` candidates that look like `word`: its alias (ALIASES) if a candidate, then difflib
    ratio >= 0.6, or sharing its start."""
    pool = list(candidates)
    alias = ALIASES.get(word.lower())
    matches = [alias] if alias in pool else []
    matches += [m for m in difflib.get_close_matches(word, pool, n=n, cutoff=0.6) if m not in matches]
    if len(word) >= 3:
        matches += [c for c in pool if c.startswith(word) and c not in matches]
    return matches[:n]


def suggest(word: str, candidates: typing.Iterable[str]) -> str:
    """'; did you mean 'x' or 'y'?' for the close matches of `word`, or ''."""
    matches = close_matches(word, candidates)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


def join(path: str, key: str | int) -> str:
    """Dotted path of `key` under `path` ('optim' + 'lr' -> 'optim.lr'; list items as '[i]')."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def fail(path: str, message: str) -> typing.NoReturn:
    """Raise the one-line recipe error `path: message` (the error keeps `path` as `.field`)."""
    error = RecipeError(f"{path}: {message}" if path else message)
    error.field = path
    raise error


# ---------------------------------------------------------------------------- checks
def show(value: Any) -> str:
    """A value as the user wrote it: numbers without a spurious `.0`, strings quoted."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    return repr(value)


def gt(bound: float) -> Check:
    """Value must be strictly greater than `bound`."""
    return lambda v: None if v is None or v > bound else f"must be > {bound:g}, got {show(v)}"


def ge(bound: float) -> Check:
    """Value must be at least `bound`."""
    return lambda v: None if v is None or v >= bound else f"must be >= {bound:g}, got {show(v)}"


def between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """Value must lie in the interval [lo, hi] (ends open where asked)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"

    def check(v: Any) -> str | None:
        if v is None:
            return None
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok else f"must be in {left}{lo:g}, {hi:g}{right}, got {show(v)}"

    return check


def each(inner: Check) -> Check:
    """Apply `inner` to every item of a list value."""

    def check(v: Any) -> str | None:
        for i, item in enumerate(v or []):
            msg = inner(item)
            if msg:
                return f"item {i} {msg}"
        return None

    return check


def field(
    default: Any = dataclasses.MISSING,
    *,
    check: Check | None = None,
    doc: str = "",
    int_max: int = INT_MAX,
) -> Any:
    """A dataclass field with an optional value check, a one-line description and, for integers,
    the largest magnitude allowed (INT_MAX unless given)."""
    meta = {"check": check, "doc": doc, "int_max": int_max}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---------------------------------------------------------------------------- coercion
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Check `value` against the type `tp` and return it converted (int -> float, dict -> dataclass)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return plain(value, path)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            fail(path, f"must be {_type_name(tp)}, got null")
        others = [option for option in options if option is not type(None)]
        if len(others) == 1:
            return coerce(others[0], value, path)
        token = _COLLECTED.set(None)  # an option that fails leaves no problem behind
        try:
            for option in others:
                try:
                    return coerce(option, value, path)
                except RecipeError:
                    continue
        finally:
            _COLLECTED.reset(token)
        fail(path, f"must be {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        value = on_off(value, choices)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        extra = suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        fail(path, f"must be {_type_name(tp)}, got {_describe(value)}{extra}")
    if origin is list:
        if not isinstance(value, list):
            fail(path, f"must be a list, got {_describe(value)}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [coerce(item_tp, item, join(path, i)) for i, item in enumerate(value)]
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            fail(path, f"must be a mapping, got {_describe(value)}")
        _, val_tp = typing.get_args(tp) or (str, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                fail(path, f"keys must be strings, got {k!r}")
            out[k] = coerce(val_tp, v, join(path, k))
        return out
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail(path, f"must be true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail(path, f"must be an integer, got {_describe(value)}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # PyYAML reads `5e-4` (no dot) as a string: accept numeric text for numeric fields.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            fail(path, f"must be a number, got {_describe(value)}")
        if not math.isfinite(number):
            fail(path, f"must be a finite number, got {_describe(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            if "\x00" in value:
                fail(path, f"must not contain a NUL byte, got {value!r}")
            return value
        fail(path, f"must be a string, got {_describe(value)}")
    raise TypeError(f"schema type {tp!r} at {path} is not supported")  # a bug in a schema


def on_off(value: Any, choices: tuple[Any, ...]) -> Any:
    """YAML 1.1 reads `on`/`off` (and `yes`/`no`) as booleans: where a field's choices include
    'on' or 'off', true is 'on' and false is 'off'; any other value is returned as given."""
    if isinstance(value, bool):
        word = "on" if value else "off"
        if word in choices:
            return word
    return value


def plain(value: Any, path: str) -> Any:
    """`value` if it is plain data (what JSON holds), else a RecipeError naming the path.

    Free-form values (`model.kwargs`, `strategy.params`) are hashed as JSON into the run's
    identity, so YAML's other types (dates, binary, sets) and non-string keys are refused here.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list):
        return [plain(item, join(path, i)) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                fail(path, f"keys must be strings, got {key!r}")
        return {k: plain(v, join(path, k)) for k, v in value.items()}
    fail(
        path,
        f"must be plain data (text, numbers, true/false, null, lists, mappings), got {type(value).__name__}",
    )


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from mapping `data`, strictly; errors name the dotted path.

    Under `from_dict_all` a problem of one key or field is collected and the others are still
    checked; the checks that span fields (`validate`) run only where every field loaded."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        fail(path, f"must be a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    step = _Step()
    for key in data:
        if key not in known:
            with step:
                fail(join(path, str(key)), "unknown key" + suggest(str(key), known) + _known(known))
    kwargs = {}
    for name, f in known.items():
        sub = join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                with step:
                    fail(sub, "required")
            continue
        with step:
            kwargs[name] = _field_value(f, hints[name], data[name], sub)
    if step.failed:
        raise _Reported(path)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path)
    return obj


def _field_value(f: dataclasses.Field, tp: Any, value: Any, path: str) -> Any:
    """`value` of the field `f` coerced to its type `tp`, in range and past its check."""
    value = coerce(tp, value, path)
    _check_int_range(value, f.metadata.get("int_max", INT_MAX), path)
    check = f.metadata.get("check")
    if check is not None:
        msg = check(value)
        if msg:
            fail(path, msg)
    return value


class RecipeProblems(RecipeError):
    """Every independent problem `from_dict_all` found; its message (and `field`) is the first's."""

    def __init__(self, problems: list[RecipeError]) -> None:
        super().__init__(RecipeError.__str__(problems[0]))
        self.problems = problems
        self.field = problems[0].field


def problems_of(error: RecipeError) -> list[RecipeError]:
    """The problems an error holds: all of a RecipeProblems', else the error itself."""
    return list(error.problems) if isinstance(error, RecipeProblems) else [error]


def from_dict_all(cls: type[T], data: Any, path: str = "") -> T:
    """`from_dict` that reports every independent problem (each unknown key, each bad value, in
    the order `from_dict` meets them) as one RecipeProblems, not the first alone."""
    problems: list[RecipeError] = []
    token = _COLLECTED.set(problems)
    try:
        return from_dict(cls, data, path)
    except RecipeError as exc:
        if not isinstance(exc, _Reported):
            problems.append(exc)
    finally:
        _COLLECTED.reset(token)
    raise RecipeProblems(problems)


#: where `from_dict_all` collects the problems (None: `from_dict` raises the first)
_COLLECTED: contextvars.ContextVar[list[RecipeError] | None] = contextvars.ContextVar(
    "collected", default=None
)


class _Reported(RecipeError):
    """Out of a `from_dict` whose problems were collected: its caller adds none for it."""


class _Step:
    """A `with` block of `from_dict` whose RecipeError is collected (under `from_dict_all`) rather
    than raised; `failed` says whether any block failed."""

    def __init__(self) -> None:
        self.failed = False

    def __enter__(self) -> _Step:
        return self

    def __exit__(self, tp: Any, exc: BaseException | None, tb: Any) -> bool:
        problems = _COLLECTED.get()
        if not isinstance(exc, RecipeError) or problems is None:
            return False
        if not isinstance(exc, _Reported):
            problems.append(exc)
        self.failed = True
        return True


def _check_int_range(value: Any, int_max: int, path: str) -> None:
    """Fail if an integer (or an integer of a list) lies outside [-int_max - 1, int_max]."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if item > int_max:
                fail(path, f"must be <= {int_max}, got {item}")
            if item < -int_max - 1:
                fail(path, f"must be >= {-int_max - 1}, got {item}")


def _known(known: Mapping[str, Any]) -> str:
    return " (known: " + ", ".join(known) + ")" if len(known) <= 12 else ""


def _on_off_note(tp: Any) -> str:
    """The note on the booleans a field whose choices hold 'on' or 'off' takes (`on_off`), else ''."""
    literals = [a for a in (tp, *typing.get_args(tp)) if typing.get_origin(a) is Literal]
    choices = {c for literal in literals for c in typing.get_args(literal)}
    pairs = [f"{flag} = {word!r}" for flag, word in (("true", "on"), ("false", "off")) if word in choices]
    return f" ({', '.join(pairs)}, as YAML reads unquoted on/off)" if pairs else ""


def to_dict(obj: Any) -> Any:
    """Plain dict/list/scalar form of a dataclass tree (what YAML and JSON get)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def describe_fields(cls: type, path: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted path, type, default, doc) for every field of a dataclass tree, for docs and --help."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        sub = join(path, f.name)
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        target = tp if dataclasses.is_dataclass(tp) else (inner[0] if inner else None)
        if target is not None:
            rows.extend(describe_fields(target, sub))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append((sub, _type_name(tp) + _on_off_note(tp), default, f.metadata.get("doc", "")))
    return rows
