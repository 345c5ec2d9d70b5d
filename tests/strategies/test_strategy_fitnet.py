"""FitNet against mdistiller's code.

Reference: megvii-research/mdistiller, mdistiller/distillers/FitNet.py (`forward_train`: CE weight 1,
feat weight 100 on `F.mse_loss(conv_reg(f_s), f_t)`) and mdistiller/distillers/_common.py
(`ConvReg`: the connector chosen by the spatial sides, then BatchNorm and ReLU), re-implemented
below in float64 with the strategy's own connector weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness import strategies
from harness.errors import RecipeError
from tests.support.recipes import run_cli, tiny_recipe, write_recipe


def reference_conv_reg(s_shape, t_shape):
    """mdistiller's ConvReg.__init__ branches (s_shape, t_shape: N, C, H, W)."""
    _, s_c, s_h, s_w = s_shape
    _, t_c, t_h, t_w = t_shape
    if s_h == 2 * t_h:
        conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
    elif s_h * 2 == t_h:
        conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
    else:
        conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
    return nn.Sequential(conv, nn.BatchNorm2d(t_c), nn.ReLU())


def inputs(s_shape, t_shape):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(s_shape[0], 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (s_shape[0],), generator=g)
    f_s = torch.randn(*s_shape, generator=g, dtype=torch.float64)
    f_t = torch.relu(torch.randn(*t_shape, generator=g, dtype=torch.float64))
    return z, y, f_s, f_t


@pytest.mark.parametrize(
    ("s_shape", "t_shape"),
    [
        ((4, 6, 8, 8), (4, 10, 4, 4)),
        ((4, 6, 4, 4), (4, 10, 8, 8)),
        ((4, 6, 5, 5), (4, 10, 3, 3)),
        ((4, 6, 4, 4), (4, 6, 4, 4)),
    ],
)
def test_loss_and_gradients_match_mdistiller(s_shape, t_shape):
    z, y, f_s, f_t = inputs(s_shape, t_shape)
    fitnet = strategies.build("fitnet", student_stage=1, teacher_stage=2)
    fitnet.setup(
        strategies.SetupInfo(num_classes=5, student_shapes={1: s_shape[1:]}, teacher_shapes={2: t_shape[1:]})
    )
    ref = reference_conv_reg(s_shape, t_shape).double()
    ref.load_state_dict({k: v.double() for k, v in fitnet.connector.state_dict().items()})

    z_ref, fs_ref = z.clone().requires_grad_(), f_s.clone().requires_grad_()
    expected = F.cross_entropy(z_ref, y) + 100.0 * F.mse_loss(ref(fs_ref), f_t)
    expected.backward()

    z_ours, fs_ours = z.float().requires_grad_(), f_s.float().requires_grad_()
    step = strategies.StepInputs(
        student_logits=z_ours,
        targets=y,
        teacher_logits=torch.zeros(len(y), 5),
        student_features={1: fs_ours},
        teacher_features={2: f_t.float()},
    )
    out = fitnet(step)
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["hint"].item() == pytest.approx(F.mse_loss(ref(f_s), f_t).item(), rel=1e-5)
    torch.testing.assert_close(z_ours.grad.double(), z_ref.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fs_ours.grad.double(), fs_ref.grad, rtol=1e-4, atol=1e-6)
    conv_ours, conv_ref = fitnet.connector[0].weight.grad, ref[0].weight.grad
    torch.testing.assert_close(conv_ours.double(), conv_ref, rtol=1e-4, atol=1e-6)


def test_a_map_the_connector_cannot_reach_is_refused():
    fitnet = strategies.build("fitnet")
    with pytest.raises(RecipeError, match=r"^strategy\.params\.student_stage: a 4x4 student map"):
        fitnet.setup(
            strategies.SetupInfo(
                num_classes=5, student_shapes={2: (6, 4, 4)}, teacher_shapes={2: (6, 16, 16)}
            )
        )


@pytest.mark.slow
def test_a_stage_the_student_lacks_stops_the_run_with_exit_2(tmp_path):
    write_recipe(tmp_path / "teacher.yaml", tiny_recipe())
    recipe = write_recipe(
        tmp_path / "student.yaml",
        tiny_recipe(
            strategy={"name": "fitnet", "params": {"student_stage": 9}}, teacher={"run": "teacher.yaml"}
        ),
    )
    proc = run_cli("run", str(recipe), "--smoke", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "strategy.params" in last and "student stage 9 is out of range for test_resnet" in last
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("runs/student*/metrics.parquet"))  # no student step ran
