"""The contract every registered strategy keeps, checked over `strategies.available()`.

A new strategy is checked here without editing a list: built from its `example` parameters on a
real timm student and teacher (`test_resnet`), with the features it declares taken the way the
runner takes them, it must return a finite loss and detached scalar parts, send gradients to the
student and to its own trainable modules only (never the teacher), stay finite on extreme logits,
reject out-of-range parameters with a line naming the field, be documented in docs/recipe.md,
and, when it owns state, resume bit-identically after a SIGTERM mid-run.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import sys
import typing

import pytest
import torch

from harness import strategies
from harness.config import load_recipe
from harness.errors import RecipeError
from harness.models.build import build_model
from harness.models.features import feature_shapes, forward_with_features
from harness.store.metrics_file import read_metrics
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.recipes import REPO, SMALL, run_cli, tiny_recipe, write_recipe
from tests.support.runs import STEPS_PER_EPOCH, exact, start_run, strike_when

NAMES = strategies.available()
K, N = 10, 8
EPOCHS = 100


def build(name: str) -> strategies.Strategy:
    cls = strategies.get(name)
    return strategies.build(name, **cls.example)


def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    student = build_model("test_resnet", K, 1)
    teacher = build_model("test_resnet", K, 1).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def make_step(
    strategy: strategies.Strategy, student, teacher, x, y, epoch: int = EPOCHS - 2, teacher_grad: bool = False
):
    """StepInputs as the runner builds them (setup first, then one student forward).

    The runner runs the teacher under no_grad; `teacher_grad` tracks its gradients instead, so
    that a strategy which trains through the teacher's logits or features shows it.
    """
    spec = strategy.features
    if not hasattr(strategy, "_contract_setup"):
        strategy.setup(
            strategies.SetupInfo(
                num_classes=K,
                train_size=64,
                epochs=EPOCHS,
                steps_per_epoch=4,
                student_shapes=feature_shapes(student, spec.student, x[:2]),
                teacher_shapes=feature_shapes(teacher, spec.teacher, x[:2]),
            )
        )
        strategy._contract_setup = True
    logits, feats = forward_with_features(student, x, spec.student)
    with torch.set_grad_enabled(teacher_grad):
        t_logits, t_feats = forward_with_features(teacher, x, spec.teacher)
    return strategies.StepInputs(
        student_logits=logits,
        targets=y,
        teacher_logits=t_logits if strategy.needs_teacher else None,
        indices=torch.arange(N),
        epoch=epoch,
        epochs=EPOCHS,
        step=epoch * 4 + 1,
        progress=(epoch + 0.25) / EPOCHS,
        num_classes=K,
        student_features=feats,
        teacher_features=t_feats,
    )


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 1, 28, 28, generator=g), torch.randint(0, K, (N,), generator=g)


@pytest.mark.parametrize("name", NAMES)
def test_parts_and_gradients(name):
    strategy = build(name)
    student, teacher = models()
    teacher.requires_grad_(True)  # so that a gradient reaching the teacher would be recorded
    x, y = inputs()
    step = make_step(strategy, student, teacher, x, y, teacher_grad=True)
    parts = strategy(step)
    assert "loss" in parts and parts["loss"].dim() == 0 and parts["loss"].requires_grad
    assert torch.isfinite(parts["loss"])
    for key, value in parts.items():
        assert isinstance(key, str) and isinstance(value, torch.Tensor) and value.dim() == 0, key
        assert torch.isfinite(value), key
        if key != "loss":
            assert not value.requires_grad, f"part {key!r} must be detached"
    parts["loss"].backward()
    head = student.get_classifier().weight.grad
    assert head is not None and head.abs().sum() > 0, "no gradient reached the student"
    assert all(p.grad is None for p in teacher.parameters()), "a gradient reached the teacher"
    for pname, p in strategy.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"strategy parameter {pname}"


@pytest.mark.parametrize("scale", [1e4, -1e4])
@pytest.mark.parametrize("name", NAMES)
def test_finite_on_extreme_logits(name, scale):
    strategy = build(name)
    student, teacher = models()
    x, y = inputs()
    step = make_step(strategy, student, teacher, x, y)
    g = torch.Generator().manual_seed(2)
    z = (torch.randn(N, K, generator=g) * scale).requires_grad_()
    t = torch.randn(N, K, generator=g) * scale
    step = dataclasses.replace(step, student_logits=z, teacher_logits=t if strategy.needs_teacher else None)
    parts = strategy(step)
    assert all(torch.isfinite(v) for v in parts.values()), {k: float(v) for k, v in parts.items()}
    parts["loss"].backward()
    assert torch.isfinite(z.grad).all()


def _bad_values(f: dataclasses.Field, tp: object) -> list[object]:
    """Values the field must refuse: numbers its check rejects, or a choice not in its Literal."""
    check = f.metadata.get("check")
    if check is not None:
        return [v for v in (-1e9, -1.0, 0.0, 1.0, 1e9) if check(v) is not None]
    if typing.get_origin(tp) is typing.Literal:
        return ["no-such-choice"]
    return []


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_validated(name):
    cls = strategies.get(name)
    with pytest.raises(RecipeError, match=r"^strategy\.params\.no_such_key: unknown key"):
        strategies.build(name, **cls.example, no_such_key=1)
    hints = typing.get_type_hints(cls.Params, include_extras=True)
    for f in dataclasses.fields(cls.Params):
        for bad in _bad_values(f, hints.get(f.name)):
            with pytest.raises(RecipeError, match=rf"^strategy\.params\.{f.name}: "):
                strategies.build(name, **{**cls.example, f.name: bad})


@pytest.mark.parametrize("name", NAMES)
def test_documented(name):
    cls = strategies.get(name)
    doc = sys.modules[cls.__module__].__doc__ or ""
    cites = re.search(r"(19|20)\d\d", doc) or "baseline" in doc
    assert cites, f"{name}: the module docstring cites no paper (a year)"
    assert "=" in doc, f"{name}: the module docstring states no formula"
    assert f"### `{name}`" in (REPO / "docs" / "recipe.md").read_text(), "run: python -m harness.docs"


# ------------------------------------------------------------------------------ resume
def _stateful(name: str) -> bool:
    strategy = build(name)
    student, teacher = models()
    x, y = inputs()
    make_step(strategy, student, teacher, x, y)
    return len(strategy.state_dict()) > 0


@pytest.mark.fashion
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_stateful_strategy_resumes_exactly(name, tmp_path, teacher_weights):
    if not _stateful(name):
        pytest.skip(f"{name} owns no state (the model's resume is checked in test_resume)")
    cls = strategies.get(name)
    teacher = {"arch": "test_resnet", "weights": str(teacher_weights)} if cls.needs_teacher else None
    recipe = tiny_recipe(
        data=SMALL,
        strategy={"name": name, "params": dict(cls.example)},
        checkpoint={"every_steps": 1},
        schedule={"epochs": 3, "name": "cosine"},  # steps enough after the strike for it to land
        teacher=teacher,
    )
    if teacher is None:
        del recipe["teacher"]
    path = write_recipe(tmp_path / "recipes" / f"{name}.yaml", recipe)
    expected = train(load_recipe(path), tmp_path / "reference", RunOptions(progress=False)).rows
    runs = tmp_path / "runs"
    last = runs / load_recipe(path).run_id / "checkpoints" / "last.pt"
    k = STEPS_PER_EPOCH + 2  # mid-epoch 2, after an epoch end has updated any epoch-level state
    proc = start_run(path, runs)
    state = strike_when(proc, last, lambda s: s["step"] >= k, signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 130 and state["step"] < 3 * STEPS_PER_EPOCH
    assert state["strategy"], "the checkpoint holds no strategy state"
    train(load_recipe(path), runs, RunOptions(resume=True, progress=False))
    rows = read_metrics(runs / load_recipe(path).run_id / "metrics.parquet")
    assert exact(rows) == exact(expected)
    parts = [r["train_parts"] for r in rows]
    assert parts == [r["train_parts"] for r in expected]


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ({"name": "dkdd"}, "strategy.name: unknown strategy 'dkdd'; did you mean 'dkd'"),
        ({"name": "dist", "params": {"beta": -1}}, "strategy.params.beta: must be >= 0, got -1"),
        ({"name": "ttm", "params": {"exponent": 2}}, "strategy.params.exponent: must be in (0, 1]"),
        ({"name": "uskd", "params": {"stage": 9}}, "strategy.params: student stage 9 is out of range"),
    ],
)
def test_bad_strategy_input_is_refused_at_validation(strategy, message, recipe_file):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file("bad", strategy=strategy))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.fashion
@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.slow
def test_bad_strategy_input_is_one_line_and_exit_2(command, recipe_file, runs_dir):
    path = recipe_file("bad", strategy={"name": "uskd", "params": {"stage": -6}})
    proc = (
        run_cli(command, str(path), "--runs-dir", str(runs_dir))
        if command == "run"
        else run_cli(command, str(path))
    )
    assert proc.returncode == 2, proc.stderr
    message = "strategy.params: student stage -6 is out of range for test_resnet (5 stages: -5..4)"
    assert proc.stderr.strip().splitlines() == [f"error: {path}: {message}"]
    assert not runs_dir.exists()  # refused before any run folder, let alone training
