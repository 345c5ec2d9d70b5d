"""The strategy interface end to end: features from the student's one forward, a strategy's own
trainable module in the optimizer and the checkpoint, exact resume, and the errors a feature
strategy meets (a stage the architecture lacks, a cached teacher).

A probe strategy, registered for these tests only, uses every part of the interface: it declares
student and teacher stages, owns a trainable projection and a buffer, and reads the step's
progress.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from harness import strategies
from harness.config import load_recipe
from harness.errors import InterruptedRun, RecipeError
from harness.models.build import build_model
from harness.models.features import forward_with_features
from harness.schema import field
from harness.store import checkpoint
from harness.store.metrics_file import read_metrics
from harness.strategies import registry
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.recipes import SMALL, tiny_recipe, write_recipe
from tests.support.runs import STEPS_PER_EPOCH, exact

pytestmark = pytest.mark.fashion


@dataclass(kw_only=True)
class ProbeParams:
    stage: int = field(-1, doc="student stage (and the teacher's by default)")
    teacher_stage: int | None = field(None, doc="teacher stage")
    weight: float = field(1.0, doc="weight of the hint term")


class Probe(strategies.Strategy):
    """CE + weight * MSE(proj(pooled student stage), pooled teacher stage) (a test probe, 2026)."""

    name = "_probe"
    Params = ProbeParams
    needs_teacher = True
    stop_at: ClassVar[int] = -1  # raise SIGTERM at this global step (in-process interruption)
    student_calls: ClassVar[int] = 0

    @classmethod
    def declared_features(cls, params: ProbeParams) -> strategies.FeatureSpec:
        t_stage = params.stage if params.teacher_stage is None else params.teacher_stage
        return strategies.FeatureSpec(student=(params.stage, "pre_logits"), teacher=(t_stage,))

    def __init__(self, params: ProbeParams) -> None:
        super().__init__(params)
        self.t_stage = self.features.teacher[0]

    def setup(self, info: strategies.SetupInfo) -> None:
        c_s = info.student_shapes[self.params.stage][0]
        c_t = info.teacher_shapes[self.t_stage][0]
        assert info.student_shapes["pre_logits"] == (info.student_shapes[self.params.stage][0],)
        self.proj = torch.nn.Linear(c_s, c_t)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, step: strategies.StepInputs) -> registry.LossDict:
        if step.step == Probe.stop_at:
            signal.raise_signal(signal.SIGTERM)
        s = step.student_features[self.params.stage].mean(dim=(2, 3))
        t = step.teacher_features[self.t_stage].mean(dim=(2, 3))
        assert not t.requires_grad and s.requires_grad
        assert 0.0 <= step.progress < 1.0 and step.indices is not None
        self.seen += len(step.targets)
        ce = F.cross_entropy(step.student_logits, step.targets)
        hint = F.mse_loss(self.proj(s), t)
        return {"loss": ce + self.params.weight * hint, "ce": ce.detach(), "hint": hint.detach()}


@pytest.fixture
def probe():
    strategies.register(Probe)
    Probe.stop_at = -1
    yield Probe
    registry._REGISTRY.pop(Probe.name, None)


def probe_recipe(tmp_path, weights, **params):
    recipe = tiny_recipe(
        data=SMALL,
        strategy={"name": "_probe", "params": params},
        teacher={"arch": "test_resnet", "weights": str(weights)},
        checkpoint={"every_steps": 1},
    )
    return write_recipe(tmp_path / "recipes" / "probe.yaml", recipe)


def test_features_come_from_the_same_forward_as_the_logits():
    torch.manual_seed(0)
    model = build_model("test_resnet", 10, 1)
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(1)
    plain = model(x)
    plain.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.manual_seed(1)
    logits, feats = forward_with_features(model, x, (0, -1, "pre_logits"))
    assert torch.equal(logits, plain)  # training mode, BatchNorm on batch statistics: the same ops
    logits.sum().backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters(), strict=True))
    assert feats[0].shape[:2] == (4, model.feature_info[0]["num_chs"])
    assert feats[-1].shape[:2] == (4, model.feature_info[-1]["num_chs"])
    assert feats["pre_logits"].shape == (4, model.num_features)
    assert feats["pre_logits"].grad_fn is not None  # part of the logits' graph


@pytest.mark.slow
def test_probe_trains_its_module_once_per_step_and_resumes_exactly(probe, tmp_path, teacher_weights):
    path = probe_recipe(tmp_path, teacher_weights)
    recipe = load_recipe(path)

    calls = {"n": 0}

    def count(module, args):  # the student's stem: the one 1-channel conv run in training mode
        if module.training and isinstance(module, torch.nn.Conv2d) and module.in_channels == 1:
            calls["n"] += 1

    hook = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        expected = train(recipe, tmp_path / "reference", RunOptions(progress=False)).rows
    finally:
        hook.remove()
    assert calls["n"] == 2 * STEPS_PER_EPOCH  # one student forward per training step
    assert all(r["train_parts"]["hint"] > 0 for r in expected)

    # interrupted mid-epoch 2 in-process (SIGTERM from inside the step), then resumed
    runs = tmp_path / "runs"
    Probe.stop_at = STEPS_PER_EPOCH + 2
    with pytest.raises(InterruptedRun):
        train(recipe, runs, RunOptions(progress=False))
    state = checkpoint.load(runs / recipe.run_id / "checkpoints" / "last.pt")
    assert set(state["strategy"]) == {"proj.weight", "proj.bias", "seen"}
    assert float(state["strategy"]["seen"]) == (STEPS_PER_EPOCH + 3) * SMALL["batch_size"]
    groups = state["optimizer"]["param_groups"]
    assert len(groups[-1]["params"]) == 2  # the projection's weight and bias: their own group
    Probe.stop_at = -1
    train(recipe, runs, RunOptions(resume=True, progress=False))
    rows = read_metrics(runs / recipe.run_id / "metrics.parquet")
    assert exact(rows) == exact(expected)
    assert [r["train_parts"] for r in rows] == [r["train_parts"] for r in expected]


def test_a_stage_the_architecture_lacks_is_one_line(probe, tmp_path, teacher_weights):
    # the student's stages are checked at validation (the arch built on the meta device)...
    path = probe_recipe(tmp_path, teacher_weights, stage=7)
    message = r"probe\.yaml: strategy\.params: student stage 7 is out of range for test_resnet \(5 stages"
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)
    # ...the teacher's once it is built, before any training
    runs = tmp_path / "runs"
    recipe = load_recipe(probe_recipe(tmp_path, teacher_weights, teacher_stage=-6))
    with pytest.raises(
        RecipeError, match=r"^strategy\.params: teacher stage -6 is out of range for test_resnet"
    ):
        train(recipe, runs, RunOptions(progress=False))
    assert not (runs / recipe.run_id / "metrics.parquet").exists()


def test_feature_strategy_with_cached_teacher_is_refused(probe, tmp_path):
    recipe = tiny_recipe(
        strategy={"name": "_probe"},
        teacher={"run": "teacher.yaml", "cache": True},
        data={"view_seed": 0},
    )
    path = write_recipe(tmp_path / "probe.yaml", recipe)
    message = r"probe\.yaml: teacher\.cache: strategy '_probe' needs teacher features"
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)
