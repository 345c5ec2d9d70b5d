"""The data options that let a recipe follow the code it cites (issue 26, item 7).

* `data.augment.rotation_interpolation: nearest`: the Tf-KD CIFAR code rotates with
  `transforms.RandomRotation(15)` (data_loader.py line 23), whose default interpolation is nearest:
  every output pixel is one input pixel (or the black fill), never a blend.
* `data.normalize`: RepDistiller (dataset/cifar100.py line 57) and mdistiller
  (mdistiller/dataset/cifar100.py line 123) normalise CIFAR-100 with (0.5071, 0.4867, 0.4408) /
  (0.2675, 0.2565, 0.2761), not the Tf-KD constants harness uses by default.

Unset, neither option changes a recipe's identity, so runs from before they existed keep their ids.
"""

from __future__ import annotations

import pytest
import torch

from harness.config import from_mapping
from harness.data import augment_spec
from harness.data.augment import AugmentSpec, apply_views, rotate
from harness.data.datasets import INFOS
from harness.data.pipeline import DeviceStage, Plan, normalization
from harness.errors import RecipeError
from tests.support.recipes import tiny_recipe

REPDISTILLER = {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]}


def _cifar_recipe(**data):
    return from_mapping(tiny_recipe(data={"dataset": "cifar100", **data}), "cifar")


def _image(seed: int = 0) -> torch.Tensor:
    """A (1, 1, 9, 9) image of distinct integer values 1..81 in a random order (no zeros)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randperm(81, generator=g) + 1).float().view(1, 1, 9, 9)


def test_nearest_rotation_copies_pixels_and_bilinear_blends_them():
    x = _image()
    values = set(x.flatten().tolist()) | {0.0}  # the input's pixels and the black fill
    angle = torch.tensor([15.0])
    nearest = rotate(x, angle, "nearest")
    bilinear = rotate(x, angle, "bilinear")
    assert set(nearest.flatten().tolist()) <= values
    assert not set(bilinear.flatten().tolist()) <= values
    assert nearest[0, 0, 4, 4] == x[0, 0, 4, 4]  # the centre stays where it is


def test_nearest_rotation_by_a_right_angle_is_rot90():
    x = _image(1)
    turned = rotate(x, torch.tensor([90.0]), "nearest")
    assert torch.equal(turned, torch.rot90(x, 1, dims=(-2, -1))) or torch.equal(
        turned, torch.rot90(x, -1, dims=(-2, -1))
    )


def test_the_recipe_field_reaches_every_backend_rotation():
    recipe = _cifar_recipe(augment={"rotation_degrees": 15, "rotation_interpolation": "nearest"})
    spec = augment_spec(recipe.data)  # memory backend
    assert spec == AugmentSpec(0, False, 15.0, "nearest")
    plan = Plan.from_config(recipe.data)  # torch and ffcv backends
    assert plan.rotation_mode == "nearest" and "rotate 15 deg (nearest)" in plan.describe(True)
    x = _image(2)
    views = torch.tensor([[0.0, 0.0, 0.0, 15.0]])
    assert torch.equal(apply_views(x, views, spec), rotate(x, views[:, 3], "nearest"))
    stage = DeviceStage(
        "cpu", (0.0,), (1.0 / 255.0,), channels=1, rotation_degrees=15, rotation_mode="nearest"
    )
    out = stage.images(x.to(torch.uint8), angles=torch.tensor([15.0]))
    assert torch.allclose(out, rotate(x, torch.tensor([15.0]), "nearest"), atol=1e-4)  # pixels, not blends
    default = Plan.from_config(_cifar_recipe(augment={"rotation_degrees": 15}).data)
    assert default.rotation_mode == "bilinear"


def test_recipe_statistics_replace_the_data_sets():
    recipe = _cifar_recipe(normalize=REPDISTILLER)
    mean, std = normalization(recipe.data)
    assert (list(mean), list(std)) == (REPDISTILLER["mean"], REPDISTILLER["std"])
    plan = Plan.from_config(recipe.data)
    assert (list(plan.mean), list(plan.std)) == (REPDISTILLER["mean"], REPDISTILLER["std"])
    assert normalization(_cifar_recipe().data) == (INFOS["cifar100"].mean, INFOS["cifar100"].std)
    stage = DeviceStage("cpu", plan.mean, plan.std, channels=3)
    u8 = torch.full((1, 3, 2, 2), 128, dtype=torch.uint8)
    out = stage.images(u8)
    expected = (128 / 255 - torch.tensor(REPDISTILLER["mean"])) / torch.tensor(REPDISTILLER["std"])
    assert torch.allclose(out[0, :, 0, 0], expected, atol=1e-6)


def test_unset_options_keep_the_identity_and_set_ones_change_it():
    plain = _cifar_recipe(augment={"rotation_degrees": 15})
    assert "normalize" not in plain.identity()["data"]
    assert "rotation_interpolation" not in plain.identity()["data"]["augment"]
    nearest = _cifar_recipe(augment={"rotation_degrees": 15, "rotation_interpolation": "nearest"})
    normalised = _cifar_recipe(augment={"rotation_degrees": 15}, normalize=REPDISTILLER)
    assert len({plain.run_id, nearest.run_id, normalised.run_id}) == 3
    assert len({plain.setting()[0], nearest.setting()[0], normalised.setting()[0]}) == 3


@pytest.mark.parametrize(
    ("normalize", "message"),
    [
        ({"mean": [0.5, 0.5], "std": [0.2]}, "data.normalize.std: must have as many values as mean"),
        ({"mean": [0.5], "std": [0.0]}, "data.normalize.std: every value must be > 0"),
    ],
)
def test_malformed_statistics_are_refused(normalize, message):
    with pytest.raises(RecipeError, match=message):
        _cifar_recipe(normalize=normalize)
