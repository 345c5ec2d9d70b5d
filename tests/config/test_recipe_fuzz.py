"""Fuzzing the recipe loader: whatever the input, a Recipe or a one-line HarnessError, never a crash.

Hypothesis generates YAML text, mutated recipe mappings (any value at any known or unknown dotted
path, including YAML's dates, binary and sets) and `--set` strings. A few generated cases also go
through the real CLI, which must answer `ok:` or one `error:` line, never a traceback.
"""

from __future__ import annotations

import datetime
import random

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import Recipe, from_mapping, load_recipe
from harness.errors import HarnessError
from harness.schema import describe_fields
from harness.sweeps.spec import load_sweep_file
from tests.support.recipes import run_cli, tiny_recipe, write_recipe

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same cases on every machine: a failure here is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

KNOWN_PATHS = [path for path, *_ in describe_fields(Recipe)]
SECTIONS = sorted({p.split(".")[0] for p in KNOWN_PATHS})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["resnet18", "test_resnet", "ce", "kd", "cosine", "sgd", "cpu", "5e-4", "1e999", ""]),
    st.dates(),  # what YAML makes of 2001-01-01
    st.binary(max_size=4),  # !!binary
    st.frozensets(st.integers(0, 3), max_size=2),  # !!set
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=8,
)
# free-form mappings (timm and strategy keyword arguments) take any value: the riskiest places
FREE_FORM = ["model.kwargs.drop_rate", "model.kwargs.x", "optim.kwargs.eps", "strategy.params.epsilon"]
paths = st.one_of(
    st.sampled_from(KNOWN_PATHS),
    st.sampled_from(FREE_FORM),
    st.sampled_from(SECTIONS),
    st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3).map(".".join),
)


def loads(data) -> Recipe | None:
    """from_mapping must return a Recipe or raise a one-line HarnessError."""
    try:
        recipe = from_mapping(data, "fuzz")
    except HarnessError as exc:
        assert "\n" not in str(exc), str(exc)
        return None
    assert isinstance(recipe, Recipe)
    assert "/" not in recipe.run_id and not recipe.run_id.startswith(".")  # a folder inside runs/
    return recipe


def set_path(data: dict, path: str, value) -> dict:
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value
    return data


@FUZZ
@given(st.lists(st.tuples(paths, values), min_size=1, max_size=3))
def test_mutated_recipes_load_or_fail_in_one_line(changes):
    data = tiny_recipe()
    for path, value in changes:
        data = set_path(data, path, value)
    loads(data)


@FUZZ
@given(st.sampled_from(FREE_FORM), values)
def test_free_form_values_load_or_fail_in_one_line(path, value):
    # alone, so that nothing else in the recipe fails first: the value reaches the run's identity hash
    recipe = loads(set_path(tiny_recipe(), path, value))
    if recipe is not None:
        assert len(recipe.hash()) == 64


@FUZZ
@given(st.one_of(values, st.dictionaries(st.sampled_from([*SECTIONS, "x"]), values, max_size=4)))
def test_any_top_level_value_loads_or_fails_in_one_line(data):
    loads(data)


yaml_tokens = st.sampled_from(
    [
        *(f"{s}:" for s in SECTIONS),
        "arch: test_resnet",
        "lr: ",
        "\n",
        "\n  ",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "!!float ",
        "!!int ",
        "!!binary ",
        "!!set ",
        "!!timestamp ",
        "!!python/object:os.system ",
        "2001-13-01",
        "2001-01-01",
        "&a ",
        "*a",
        "<<: ",
        "1e999",
        ".nan",
        "0x1F",
        "~",
        "'",
        '"',
        "#",
        "---\n",
        "\t",
        "é",
    ]
)


@FUZZ
@given(st.lists(yaml_tokens, max_size=25).map("".join))
def test_yaml_text_loads_or_fails_in_one_line(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        load_recipe(path)
    except HarnessError as exc:
        assert "\n" not in str(exc)
    try:
        load_sweep_file(path)  # the sweep file reader shares the parser and the schema
    except HarnessError as exc:
        assert "\n" not in str(exc)


def as_yaml(value) -> str:
    """A generated value as `--set` text (YAML flow style where YAML can write it)."""
    if isinstance(value, (datetime.date, bytes, frozenset)):
        return str(value)
    try:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
    except yaml.YAMLError:
        return repr(value)


set_strings = st.one_of(
    st.text(max_size=30),
    st.tuples(paths, st.text(max_size=20)).map("=".join),
    st.tuples(paths, values.map(as_yaml)).map("=".join),
)


@FUZZ
@given(st.lists(set_strings, min_size=1, max_size=3))
def test_set_overrides_load_or_fail_in_one_line(tmp_path, overrides):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    try:
        recipe = load_recipe(path, overrides)
    except HarnessError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(recipe, Recipe)


def generated_cases(n: int, seed: int) -> list[dict]:
    """`n` mutated recipes drawn with a seeded generator (for the CLI round below)."""
    rng = random.Random(seed)
    odd = [None, True, -1, 0, 1e999, "x", [], {}, [1, [2]], {"a": {"b": 1}}, "2001-13-01", 10**30, "5e-4"]
    cases = []
    for _ in range(n):
        data = tiny_recipe()
        for _ in range(rng.randint(1, 3)):
            path = (
                rng.choice(KNOWN_PATHS) if rng.random() < 0.8 else rng.choice(["bogus", "model.arhc", "x.y"])
            )
            set_path(data, path, rng.choice(odd))
        cases.append(data)
    return cases


@pytest.mark.slow
def test_generated_cases_through_the_real_cli(tmp_path):
    files = [write_recipe(tmp_path / f"case{i}.yaml", case) for i, case in enumerate(generated_cases(24, 1))]
    (tmp_path / "text.yaml").write_text("model: !!float x\ndata: [2001-13-01\n")
    # a key with a newline and a terminal escape: still one line, shown escaped
    escape = write_recipe(
        tmp_path / "escape.yaml", tiny_recipe(model={"arch": "test_resnet", "ar\nch\x1b[2J": 1})
    )
    files += [tmp_path / "text.yaml", escape]
    proc = run_cli("validate", *map(str, files))
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr
    out, err = proc.stdout.strip().splitlines(), proc.stderr.strip().splitlines()
    assert all(line.startswith("ok: ") for line in out)
    assert all(line.startswith("error: ") for line in err), err
    failed = {line.split(": ")[1] for line in err}  # one line per problem, each naming its file
    assert len(out) + len(failed) == len(files) and len(err) > len(failed)  # a case holds several
    assert err[-1].startswith(f"error: {escape}: model.ar\\nch\\x1b[2J: unknown key")
