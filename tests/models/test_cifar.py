"""RepDistiller's CIFAR-100 KD benchmark networks (`harness.models.cifar`) as timm models.

Parameter counts: RepDistiller's own `models/` (github.com/HobbitLong/RepDistiller at b84f547,
`model_dict[name](num_classes=100)`), counted by instantiating that code; the rounded figures the
KD literature quotes for these networks (resnet8x4 1.23M, resnet32x4 7.43M, wrn_40_2 2.26M,
wrn_16_2 0.70M, vgg13 9.46M, vgg8 3.96M, resnet56 0.86M, resnet20 0.28M, MobileNetV2 0.81M,
ShuffleV1 0.95M, ResNet50 23.71M) are these rounded. With the reference's weights copied in (in
registration order) the stage features were equal to RepDistiller's `is_feat=True` outputs to the bit.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import timm
import torch
import yaml

from harness.config import load_recipe
from harness.leaderboard.reference import load_references, ours_from_recipe
from harness.models.build import build_model, count_parameters
from harness.models.cifar import CIFAR_KD_ARCHS
from harness.teachers.teacher import teacher_recipe
from tests.support.recipes import REPO

REPDISTILLER_PARAMS = {  # timm name: (RepDistiller name, parameters at 100 classes)
    "resnet20_cifar": ("resnet20", 278_324),
    "resnet32_cifar": ("resnet32", 472_756),
    "resnet56_cifar": ("resnet56", 861_620),
    "resnet110_cifar": ("resnet110", 1_736_564),
    "resnet8x4_cifar": ("resnet8x4", 1_233_540),
    "resnet32x4_cifar": ("resnet32x4", 7_433_860),
    "wrn_16_2_cifar": ("wrn_16_2", 703_284),
    "wrn_40_1_cifar": ("wrn_40_1", 569_780),
    "wrn_40_2_cifar": ("wrn_40_2", 2_255_156),
    "vgg8_cifar": ("vgg8", 3_965_028),
    "vgg13_cifar": ("vgg13", 9_462_180),
    "mobilenetv2_half_cifar": ("MobileNetV2", 812_836),
    "shufflenetv1_cifar": ("ShuffleV1", 949_258),
    "resnet50_cifar": ("ResNet50", 23_705_252),  # harness.models' timm-built ResNet-50, CIFAR stem
}

# (channels, side at 32 px) of each feature tap: RepDistiller's `is_feat=True` list minus the pooled one
FEATURES = {
    "resnet8x4_cifar": [(32, 32), (64, 32), (128, 16), (256, 8)],
    "resnet56_cifar": [(16, 32), (16, 32), (32, 16), (64, 8)],
    "wrn_40_2_cifar": [(16, 32), (32, 32), (64, 16), (128, 8)],
    "vgg13_cifar": [(64, 32), (128, 16), (256, 8), (512, 4), (512, 4)],
    "mobilenetv2_half_cifar": [(16, 16), (12, 16), (16, 8), (48, 4), (160, 2)],
    "shufflenetv1_cifar": [(24, 32), (240, 16), (480, 8), (960, 4)],
}


def test_every_network_has_a_reference_count():
    assert set(CIFAR_KD_ARCHS) | {"resnet50_cifar"} == set(REPDISTILLER_PARAMS)


@pytest.mark.parametrize("arch", sorted(REPDISTILLER_PARAMS))
def test_parameter_count_is_repdistillers(arch):
    assert timm.is_model(arch)
    model = build_model(arch, num_classes=100, in_chans=3)
    assert count_parameters(model) == REPDISTILLER_PARAMS[arch][1]


@pytest.mark.parametrize("arch", CIFAR_KD_ARCHS)
def test_features_come_from_the_logits_forward(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=100, in_chans=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
        logits = model.forward_head(final)
        assert torch.equal(logits, model(x)) and logits.shape == (2, 100)
        pooled = model.forward_head(final, pre_logits=True)
    assert pooled.shape == (2, model.num_features)
    assert len(feats) == len(model.feature_info)
    for f, info in zip(feats, model.feature_info, strict=True):  # timm's metadata is the truth
        assert f.shape[1] == info["num_chs"] and f.shape[-1] == 32 // info["reduction"], (arch, info)
        assert model.get_submodule(info["module"]) is not None
    if arch in FEATURES:
        assert [(f.shape[1], f.shape[-1]) for f in feats] == FEATURES[arch]
    last = model.forward_intermediates(x, indices=[-1], intermediates_only=True)
    assert len(last) == 1 and torch.equal(last[0], feats[-1])


@pytest.mark.parametrize("arch", ["resnet8x4_cifar", "wrn_16_2_cifar", "mobilenetv2_half_cifar"])
def test_timm_feature_extractor_and_other_inputs(arch):
    extractor = timm.create_model(arch, features_only=True, out_indices=(1, 3))
    feats = extractor(torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == extractor.feature_info.channels()
    one_channel = build_model(arch, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert one_channel(torch.randn(2, 1, 16, 16)).shape == (2, 10)  # smoke size: adaptive pooling


def test_names_do_not_shadow_timm_models():
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("vgg8_cifar", pretrained=True)
    assert timm.models.model_entrypoint("vgg13").__module__ == "timm.models.vgg"  # timm's own, untouched


# ------------------------------------------------------------------------------ recipes/cifar100_kd
SUITE = REPO / "recipes" / "cifar100_kd"
SUITE_RECIPES = sorted(SUITE.glob("*.yaml"))
SWEEP = REPO / "sweeps" / "cifar100_kd_gpu.yaml"


def _comments(path):
    return [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]


PAIRS = [  # (student, teacher): the CRD and DKD papers' pairs
    ("resnet8x4", "resnet32x4"),
    ("wrn_16_2", "wrn_40_2"),
    ("resnet20", "resnet56"),
    ("vgg8", "vgg13"),
    ("mobilenetv2_half", "resnet50_cifar"),
    ("shufflenetv1", "resnet32x4"),
    ("shufflenetv1", "wrn_40_2"),
]
METHODS = ("kd", "dkd", "dist", "crd", "fitnet", "at", "rkd")


def test_the_pairs_are_there():
    names = {p.stem for p in SUITE_RECIPES}
    for student, teacher in PAIRS:
        assert {f"{student}_ce", f"{student}_label_smoothing", f"{teacher}_ce"} <= names
        assert {f"{student}_{method}_{teacher}" for method in METHODS} <= names


@pytest.mark.parametrize("path", SUITE_RECIPES, ids=lambda p: p.stem)
def test_recipe_names_its_source_and_its_published_figure(path):
    comments = _comments(path)
    assert any(c.startswith("Source: ") for c in comments) and any(c.startswith("Target: ") for c in comments)
    recipe = load_recipe(path)
    assert recipe.data.dataset == "cifar100" and recipe.model.arch in REPDISTILLER_PARAMS
    assert (recipe.schedule.epochs, recipe.schedule.milestones, recipe.data.batch_size) == (
        240,
        [150, 180, 210],
        64,
    )
    found = load_references().matches(ours_from_recipe(recipe))
    if recipe.method == "label_smoothing":
        assert not found  # no reference trains these students with LS
    else:  # the leaderboard finds the paper's figure, and the recipe's Target line quotes it
        assert found, f"{path.name}: no figure in leaderboard/reference/results.csv matches"
        target = next(c for c in comments if c.startswith("Target: "))
        assert f"{found[0].value:.2f}%" in target


def test_gpu_sweep_lists_every_recipe_once_teachers_first():
    spec = yaml.safe_load(SWEEP.read_text())
    listed = []
    for item in spec["recipes"]:
        pattern = item if isinstance(item, str) else item["path"]
        listed += sorted(Path(p).resolve() for p in glob.glob(str(SWEEP.parent / pattern)))
    assert sorted(listed) == sorted(p.resolve() for p in SUITE_RECIPES) and len(set(listed)) == len(listed)
    position = {p: i for i, p in enumerate(listed)}
    for path in listed:
        recipe = load_recipe(path)
        if recipe.teacher is not None:
            assert position[Path(teacher_recipe(recipe).source).resolve()] < position[path]
            assert recipe.teacher.seed == 0


def test_one_published_figure_per_cifar_setting():
    """Two figures for one student, teacher, method and parameters would make the paper column ambiguous."""
    seen = {}
    refs = load_references()
    for ref in (*refs.results, *refs.pending):  # attached to a recipe, or waiting for one
        if ref.dataset != "cifar100" or ref.metric != "top1":
            continue
        params = json.dumps(ref.params, sort_keys=True)
        key = (ref.model, ref.method, ref.teacher_model, ref.teacher_method, params)
        assert key not in seen, f"{key}: {seen[key]} and {ref.source} ({ref.value})"
        seen[key] = f"{ref.source} ({ref.value})"
    methods = {key[1] for key in seen}
    assert {"dist", "ttm", "wttm", "ctkd", "kd_logit_std", "dkd_logit_std"} <= methods
