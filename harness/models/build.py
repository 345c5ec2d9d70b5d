"""Model construction through timm (plus the CIFAR variants harness registers with timm).

Models start from random weights unless a recipe asks for timm's pretrained ones
(`model.pretrained`, `model.pretrained_file`: `harness.models.pretrained`); teachers get theirs from a
file, a harness run or timm (see `harness.teachers.teacher`).

CIFAR variants
--------------
The CIFAR-100 experiments of Yuan et al. (2020) use the CIFAR form of each network: a 3x3,
stride-1 first convolution and no stem max-pool, so the first stage sees the full 32x32 image
(He et al. 2016, Sec. 4.2). Importing this module registers these forms with timm's own
`register_model`, built from timm's own constructors with the stem changed, so recipes name them
like any timm model (`model.arch: resnet18_cifar`):

* `resnet18_cifar`, `resnet50_cifar`: timm `resnet18` / `resnet50`, 3x3/1 stem conv, no max-pool
  (last stage 4x4 at 32 px);
* `resnext29_8x64d_cifar`: timm `ResNet` with Bottleneck blocks, 3 stages of 3, cardinality 8,
  base width 64 (Xie et al. 2017), the same stem (8x8);
* `mobilenetv2_cifar`: timm `mobilenetv2_100` with a stride-1 stem, and its 160-channel stage
  kept at stride 1: overall stride 8, as the Tf-KD code's model (4x4);
* `densenet121_cifar`: timm `densenet121`, 3x3/1 stem conv, no max-pool (4x4);
* `inception_v3_cifar`: timm `inception_v3`, stem convs at stride 1 and padded, no stem
  max-pools (7x7);
* `mobilenetv3_small_cifar`: timm `mobilenetv3_small_100`, stride-1 stem and first block (4x4).

timm has no GoogLeNet (Inception v1) and no ShuffleNetV2. `inception_v3_cifar` stands in for
GoogLeNet (the same family of multi-branch Inception blocks; 22M parameters against about 6M)
and `mobilenetv3_small_cifar` for ShuffleNetV2 1.0x (a mobile network of the same generation
and size: depthwise-separable blocks, a 1024-wide head, overall stride 8 as the CIFAR
ShuffleNetV2; 1.6M parameters at 100 classes against about 1.4M: ShuffleNetV2's 2.3M at 1000
classes less 900 rows of its 1024-wide classifier). Their numbers are not the papers'
GoogLeNet / ShuffleNetV2 numbers; docs/paper_suite.md says so beside each target.

Importing this module also registers RepDistiller's networks (`harness.models.cifar`). The names of
both sets are in `harness.models.names`, which a recipe checks without importing this code.
May import: `harness.errors`, `harness.models` (names, cifar, pretrained); never `harness.config`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import (
    ResNet,
    build_model_with_cfg,
    generate_default_cfgs,
    get_pretrained_cfg,
    model_entrypoint,
    register_model,
)
from timm.models.resnet import Bottleneck
from torch import nn

# RepDistiller's CIFAR-100 KD benchmark networks (resnet8x4_cifar, wrn_40_2_cifar, ...): registered
# with timm on import, like the variants below.
import harness.models.cifar  # noqa: F401
from harness.errors import RecipeError
from harness.models.names import CIFAR_ARCHS, cifar_cfg

__all__ = ["CIFAR_ARCHS", "build_model", "build_student", "count_parameters"]


def build_model(
    arch: str, num_classes: int, in_chans: int, kwargs: dict[str, Any] | None = None
) -> torch.nn.Module:
    """`timm.create_model(arch, num_classes=..., in_chans=..., pretrained=False, **kwargs)`.

    timm rejecting the keyword arguments (an unknown name, a bad value) is a RecipeError naming
    `model.kwargs`, not a traceback.
    """
    try:
        return timm.create_model(
            arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **(kwargs or {})
        )
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"model.kwargs: timm cannot build {arch} with {kwargs or {}} ({first})") from None


def build_student(
    recipe: Any, num_classes: int, in_chans: int, base: Path
) -> tuple[torch.nn.Module, dict | None]:
    """The recipe's student and the origin of its pretrained weights (None when it starts from
    random weights). A relative `model.pretrained_file` is looked for in `base` (the recipe's
    folder: `harness.config.recipe.recipe_dir`) when it is not in the current folder."""
    from harness.models import pretrained

    cfg = recipe.model
    if not cfg.pretrained and cfg.pretrained_file is None:
        return build_model(cfg.arch, num_classes, in_chans, cfg.kwargs), None
    tag = pretrained.resolve_tag(cfg.arch, cfg.pretrained or True, "model.pretrained")
    file = None if cfg.pretrained_file is None else pretrained.local_file(cfg.pretrained_file, base)
    model = pretrained.create(
        tag, num_classes=num_classes, in_chans=in_chans, kwargs=cfg.kwargs, file=file, path="model.pretrained"
    )
    return model, pretrained.origin(tag, file)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------ CIFAR variants
# timm's register_model reads this module-level name to attach each variant's cfg.
default_cfgs = generate_default_cfgs(
    {
        "resnet18_cifar": cifar_cfg("conv1", "fc", 4),
        "resnet50_cifar": cifar_cfg("conv1", "fc", 4),
        "resnext29_8x64d_cifar": cifar_cfg("conv1", "fc", 8),
        "mobilenetv2_cifar": cifar_cfg("conv_stem", "classifier", 4),
        "densenet121_cifar": cifar_cfg("features.conv0", "classifier", 4),
        "inception_v3_cifar": cifar_cfg("Conv2d_1a_3x3.conv", "fc", 7),
        "mobilenetv3_small_cifar": cifar_cfg("conv_stem", "classifier", 4),
    }
)


def _halve_reductions(model: nn.Module, first: int) -> None:
    """A stride-2 layer became stride 1: feature_info entries from index `first` on halve."""
    for info in model.feature_info[first:]:
        info["reduction"] //= 2


def _stride1_conv(old: nn.Conv2d, kernel: int, init_mode: str) -> nn.Conv2d:
    """A `kernel`x`kernel`, stride-1, same-padded replacement for stem conv `old` (Kaiming init)."""
    new = nn.Conv2d(
        old.in_channels,
        old.out_channels,
        kernel,
        stride=1,
        padding=kernel // 2,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    nn.init.kaiming_normal_(new.weight, mode=init_mode, nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _set_stride1(conv: nn.Conv2d) -> None:
    """Turn a padded 3x3 stride-2 convolution into a stride-1 one (same weights shape)."""
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2), conv
    conv.stride = (1, 1)
    conv.padding = (1, 1)


def _resnet_stem(model: ResNet) -> None:
    """timm ResNet: 7x7/2 conv + 3x3/2 max-pool -> 3x3/1 conv (He et al. 2016, CIFAR form)."""
    model.conv1 = _stride1_conv(model.conv1, 3, "fan_out")  # timm ResNet's own conv init
    model.maxpool = nn.Identity()
    _halve_reductions(model, 0)  # the stem conv
    _halve_reductions(model, 1)  # the max-pool, before layer1


def _mobilenetv2_cifar(model: nn.Module) -> None:
    """Stride-1 stem; the 160-channel stage (blocks[5]) keeps stride 1: overall stride 8."""
    _set_stride1(model.conv_stem)
    _halve_reductions(model, 0)
    _set_stride1(model.blocks[5][0].conv_dw)
    _halve_reductions(model, [f["module"] for f in model.feature_info].index("blocks.6"))


def _mobilenetv3_small_cifar(model: nn.Module) -> None:
    """Stride-1 stem and first (depthwise-separable, 16 -> 16 channel) block: overall stride 8."""
    _set_stride1(model.conv_stem)
    _halve_reductions(model, 0)
    first = model.blocks[0][0]
    _set_stride1(first.conv_dw)
    first.has_skip = first.conv_dw.in_channels == first.conv_pw.out_channels  # as timm sets it at stride 1
    _halve_reductions(model, 1)


def _densenet_stem(model: nn.Module) -> None:
    """timm DenseNet: 7x7/2 conv + max-pool -> 3x3/1 conv (Huang et al. 2017, CIFAR form)."""
    model.features.conv0 = _stride1_conv(model.features.conv0, 3, "fan_in")  # timm DenseNet's init
    model.features.pool0 = nn.Identity()
    _halve_reductions(model, 0)
    _halve_reductions(model, 1)


def _inception_v3_stem(model: nn.Module) -> None:
    """timm Inception-v3: stride-1, padded stem convs and no stem max-pools (keeps 32x32)."""
    model.Conv2d_1a_3x3.conv.stride = (1, 1)
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_4a_3x3"):
        getattr(model, name).conv.padding = (1, 1)
    model.Pool1 = nn.Identity()
    model.Pool2 = nn.Identity()
    _halve_reductions(model, 0)  # Conv2d_1a
    _halve_reductions(model, 1)  # Pool1, before Conv2d_4a
    _halve_reductions(model, 2)  # Pool2, before Mixed_5b


def _from_timm(name: str, base: str, adapt: Callable[[nn.Module], None], **kwargs: Any) -> nn.Module:
    """Build timm's `base` with its own entrypoint, then apply the CIFAR stem `adapt`."""
    model = model_entrypoint(base)(pretrained=False, **kwargs)
    adapt(model)
    model.pretrained_cfg = model.default_cfg = get_pretrained_cfg(name).to_dict()
    return model


def _check_args(name: str, pretrained: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Refuse what a CIFAR variant cannot do; drop timm's pretrained-cfg plumbing arguments."""
    if pretrained:
        raise ValueError(f"{name}: no pretrained weights exist (harness never downloads weights)")
    if kwargs.get("features_only"):
        raise ValueError(f"{name}: features_only is not supported by the CIFAR variants")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return kwargs


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 with the CIFAR stem (the Tf-KD code's `ResNet18`)."""
    kwargs = _check_args("resnet18_cifar", pretrained, kwargs)
    return _from_timm("resnet18_cifar", "resnet18", _resnet_stem, **kwargs)


@register_model
def resnet50_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 with the CIFAR stem (the Tf-KD code's `ResNet50`)."""
    kwargs = _check_args("resnet50_cifar", pretrained, kwargs)
    return _from_timm("resnet50_cifar", "resnet50", _resnet_stem, **kwargs)


@register_model
def resnext29_8x64d_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNeXt-29 (8x64d) for CIFAR (Xie et al. 2017): 3 stages of 3 bottlenecks, 256/512/1024 out.

    timm's Bottleneck with planes 64/128/256, cardinality 8 and base width 64 gives grouped 3x3
    convolutions of 512/1024/2048 channels, as the Tf-KD code's `CifarResNeXt(8, 29)`.
    """
    kwargs = _check_args("resnext29_8x64d_cifar", pretrained, kwargs)
    args = {
        "block": Bottleneck,
        "layers": (3, 3, 3),
        "channels": (64, 128, 256),
        "cardinality": 8,
        "base_width": 64,
        **kwargs,
    }
    model = build_model_with_cfg(ResNet, "resnext29_8x64d_cifar", pretrained=False, **args)
    _resnet_stem(model)
    model.layer4 = nn.Identity()  # timm's ResNet.forward_features always calls layer4
    return model


@register_model
def mobilenetv2_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 1.0 for CIFAR (overall stride 8, as the Tf-KD code's `mobilenetv2`)."""
    kwargs = _check_args("mobilenetv2_cifar", pretrained, kwargs)
    return _from_timm("mobilenetv2_cifar", "mobilenetv2_100", _mobilenetv2_cifar, **kwargs)


@register_model
def densenet121_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """DenseNet-121 (growth 32) with the CIFAR stem (the Tf-KD code's `densenet121`)."""
    kwargs = _check_args("densenet121_cifar", pretrained, kwargs)
    return _from_timm("densenet121_cifar", "densenet121", _densenet_stem, **kwargs)


@register_model
def inception_v3_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Inception-v3 with a CIFAR stem: timm's closest model to the papers' CIFAR GoogLeNet."""
    kwargs = _check_args("inception_v3_cifar", pretrained, kwargs)
    return _from_timm("inception_v3_cifar", "inception_v3", _inception_v3_stem, **kwargs)


@register_model
def mobilenetv3_small_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV3-Small 1.0 with a CIFAR stem: timm's stand-in for the papers' ShuffleNetV2."""
    kwargs = _check_args("mobilenetv3_small_cifar", pretrained, kwargs)
    return _from_timm("mobilenetv3_small_cifar", "mobilenetv3_small_100", _mobilenetv3_small_cifar, **kwargs)
