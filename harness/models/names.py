"""The architectures harness registers with timm, by name, and the timm metadata they share.

Importing `harness.models.build` registers them (building needs torch and timm); a recipe checks
an architecture name against `HARNESS_ARCHS` without importing that code. Nothing here imports
torch or timm.
May import: nothing of harness.
"""

from __future__ import annotations

from typing import Any

#: harness's CIFAR forms of timm networks (`harness.models.build`): a 3x3 stride-1 stem, no max-pool
CIFAR_ARCHS = (
    "resnet18_cifar",
    "resnet50_cifar",
    "resnext29_8x64d_cifar",
    "mobilenetv2_cifar",
    "densenet121_cifar",
    "inception_v3_cifar",
    "mobilenetv3_small_cifar",
)

#: RepDistiller's CIFAR-100 KD benchmark networks (`harness.models.cifar`)
CIFAR_KD_ARCHS = (
    "resnet20_cifar",
    "resnet32_cifar",
    "resnet56_cifar",
    "resnet110_cifar",
    "resnet8x4_cifar",
    "resnet32x4_cifar",
    "wrn_16_2_cifar",
    "wrn_40_1_cifar",
    "wrn_40_2_cifar",
    "vgg8_cifar",
    "vgg13_cifar",
    "mobilenetv2_half_cifar",
    "shufflenetv1_cifar",
)

#: every architecture harness registers with timm
HARNESS_ARCHS = CIFAR_ARCHS + CIFAR_KD_ARCHS

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def cifar_cfg(first_conv: str, classifier: str, pool: int) -> dict[str, Any]:
    """timm pretrained-cfg metadata of a CIFAR network (no weights exist: no url, no hub id)."""
    return {
        "num_classes": 100,
        "input_size": (3, 32, 32),
        "pool_size": (pool, pool),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR100_MEAN,
        "std": CIFAR100_STD,
        "first_conv": first_conv,
        "classifier": classifier,
    }
