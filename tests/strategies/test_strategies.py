"""Every strategy and option against losses computed by hand with plain `math` on fixed logits.

The reference implementations below follow methods.md literally (sums over classes and batch,
then the reduction), independent of the torch code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness import strategies
from harness.errors import RecipeError, TeacherError

Z = [[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -0.5], [-1.0, 1.5, 0.3, 0.7]]  # student logits
T_LOGITS = [[3.0, 1.0, -2.0, 0.5], [0.0, 0.5, 2.0, 0.1], [0.5, 2.5, -0.3, 1.0]]  # teacher logits
Y = [0, 2, 3]
N, K = 3, 4


def softmax(row: list[float], t: float = 1.0) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def ce_ref() -> float:
    return sum(-math.log(softmax(z)[y]) for z, y in zip(Z, Y, strict=True)) / N


def kl_sum(targets: list[list[float]], students: list[list[float]]) -> float:
    """sum_i sum_k p_ik (log p_ik - log q_ik)."""
    return sum(
        p * (math.log(p) - math.log(q))
        for pr, qr in zip(targets, students, strict=True)
        for p, q in zip(pr, qr, strict=True)
        if p > 0
    )


def tensors():
    return torch.tensor(Z), torch.tensor(Y), torch.tensor(T_LOGITS)


def test_registry_lists_and_rejects():
    assert {"ce", "label_smoothing", "kd", "tfkd_reg"} <= set(strategies.available())
    with pytest.raises(RecipeError, match=r"unknown strategy 'kdd'; did you mean 'kd'"):
        strategies.build("kdd")
    with pytest.raises(RecipeError, match=r"strategy.params.alpha: must be in \[0, 1\], got 2"):
        strategies.build("kd", alpha=2, temperature=4)
    with pytest.raises(RecipeError, match=r"strategy.params.temp: unknown key; did you mean 'temperature'"):
        strategies.build("kd", alpha=0.5, temp=4)

    class Duplicate(strategies.Strategy):
        name = "ce"
        Params = object

        def __call__(self, *a, **k):
            return {}

    with pytest.raises(ValueError, match="already registered"):
        strategies.register(Duplicate)


def test_build_is_reached_from_import_harness():
    """The public API as the README names it: `import harness; harness.strategies.build(...)`
    (an attribute `harness.__getattr__` imports on first use)."""
    import harness

    assert harness.__getattr__("strategies") is strategies
    assert harness.strategies.build("ce").name == "ce"


def test_ce_golden():
    z, y, _ = tensors()
    out = strategies.build("ce")(z, y)
    assert out["loss"].item() == pytest.approx(ce_ref(), rel=1e-6)
    assert set(out) == {"loss", "ce"}
    assert not strategies.build("ce").needs_teacher


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_golden(convention, eps):
    z, y, _ = tensors()
    expected = 0.0
    for zr, label in zip(Z, Y, strict=True):
        p = softmax(zr)
        for k in range(K):
            if convention == "uniform":
                q = (1 - eps) * (k == label) + eps / K
            else:
                q = 1 - eps if k == label else eps / (K - 1)
            expected -= q * math.log(p[k])
    expected /= N
    out = strategies.build("label_smoothing", epsilon=eps, convention=convention)(z, y)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["ce"].item() == pytest.approx(ce_ref(), rel=1e-6)
    # loss = (1-e) ce + e smooth, with the parts unweighted
    recon = (1 - eps) * out["ce"] + eps * out["smooth"]
    assert out["loss"].item() == pytest.approx(recon.item(), rel=1e-6)


def test_label_smoothing_targets_on_label():
    from harness.strategies.label_smoothing import smoothed_targets

    y = torch.tensor([1])
    uni = smoothed_targets(y, 10, 0.1, "uniform")[0]
    oth = smoothed_targets(y, 10, 0.1, "others")[0]
    assert uni[1].item() == pytest.approx(0.91) and uni[0].item() == pytest.approx(0.01)
    assert oth[1].item() == pytest.approx(0.9) and oth[0].item() == pytest.approx(0.1 / 9)
    assert uni.sum().item() == pytest.approx(1.0) and oth.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("reduction", ["batchmean", "legacy_mean"])
@pytest.mark.parametrize(
    ("alpha", "temperature", "multiplier"), [(0.9, 4.0, 1.0), (1.0, 1.0, 1.0), (0.95, 6.0, 50.0)]
)
def test_kd_golden(alpha, temperature, multiplier, reduction):
    z, y, t = tensors()
    targets = [softmax(r, temperature) for r in T_LOGITS]
    students = [softmax(r, temperature) for r in Z]
    kl = kl_sum(targets, students) / (N if reduction == "batchmean" else N * K)
    expected = (1 - alpha) * ce_ref() + alpha * multiplier * temperature**2 * kl
    kd = strategies.build(
        "kd", alpha=alpha, temperature=temperature, multiplier=multiplier, kl_reduction=reduction
    )
    assert kd.needs_teacher
    out = kd(z, y, t)
    # float32 against float64: T^2 x multiplier magnifies the KL's rounding (rel 1e-4)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-4)
    assert out["kl"].item() == pytest.approx(kl, rel=1e-4)
    assert out["ce"].item() == pytest.approx(ce_ref(), rel=1e-6)


def test_kd_shen_pure_soft_targets_is_soft_cross_entropy_minus_teacher_entropy():
    # alpha = 1, T = 1: KL(t || z) = soft CE(t, z) - H(t); the gradient is that of soft CE
    z, y, t = tensors()
    out = strategies.build("kd", alpha=1, temperature=1)(z, y, t)
    soft_ce = (
        sum(
            -sum(p * math.log(q) for p, q in zip(softmax(tr), softmax(zr), strict=True))
            for tr, zr in zip(T_LOGITS, Z, strict=True)
        )
        / N
    )
    h_t = sum(-sum(p * math.log(p) for p in softmax(tr)) for tr in T_LOGITS) / N
    assert out["loss"].item() == pytest.approx(soft_ce - h_t, rel=1e-5)


def test_kd_without_teacher_is_a_clear_error():
    z, y, _ = tensors()
    with pytest.raises(TeacherError, match="needs teacher logits"):
        strategies.build("kd", alpha=0.5, temperature=4)(z, y)


def virtual_teacher(label: int, a: float, temperature: float) -> list[float]:
    p_d = [a if k == label else (1 - a) / (K - 1) for k in range(K)]
    return softmax(p_d, temperature)


@pytest.mark.parametrize("variant", ["code", "paper"])
@pytest.mark.parametrize("reduction", ["batchmean", "legacy_mean"])
def test_tfkd_reg_golden(variant, reduction):
    alpha, temperature, multiplier, a = 0.1, 20.0, 100.0, 0.99
    z, y, _ = tensors()
    targets = [virtual_teacher(label, a, temperature) for label in Y]
    scale = 1.0 if variant == "code" else temperature
    students = [softmax(r, scale) for r in Z]
    kl = kl_sum(targets, students) / (N if reduction == "batchmean" else N * K)
    expected = (1 - alpha) * ce_ref() + alpha * multiplier * scale**2 * kl
    reg = strategies.build(
        "tfkd_reg",
        alpha=alpha,
        temperature=temperature,
        multiplier=multiplier,
        correct_prob=a,
        variant=variant,
        kl_reduction=reduction,
    )
    assert not reg.needs_teacher
    out = reg(z, y)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-4)
    assert out["kl"].item() == pytest.approx(kl, rel=1e-4)


@pytest.mark.parametrize(("k", "on_label", "elsewhere"), [(10, 0.1045, 0.0995), (100, 0.0105, 0.009995)])
def test_tfkd_reg_code_target_matches_methods_md(k, on_label, elsewhere):
    # methods.md: for K=10 the code's target is 0.1045 vs 0.0995; for K=100, T=20, 0.0105 vs 0.009995
    from harness.strategies.tfkd_reg import virtual_teacher_target

    target = virtual_teacher_target(torch.tensor([0]), k, 0.99, 20.0)[0]
    assert target[0].item() == pytest.approx(on_label, abs=5e-5)
    assert target[1].item() == pytest.approx(elsewhere, abs=5e-7 if k == 100 else 5e-5)


def test_legacy_mean_is_k_times_smaller():
    z, y, t = tensors()
    a = strategies.build("kd", alpha=1, temperature=2, kl_reduction="batchmean")(z, y, t)["kl"]
    b = strategies.build("kd", alpha=1, temperature=2, kl_reduction="legacy_mean")(z, y, t)["kl"]
    assert a.item() == pytest.approx(K * b.item(), rel=1e-6)


def test_bf16_logits_are_computed_in_float32():
    z, y, t = tensors()
    full = strategies.build("kd", alpha=0.5, temperature=4)(z, y, t)["loss"]
    half = strategies.build("kd", alpha=0.5, temperature=4)(z.bfloat16(), y, t.bfloat16())["loss"]
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=2e-2)
