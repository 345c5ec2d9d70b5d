"""The CIFAR-100 knowledge-distillation benchmark networks, registered as timm models.

The teacher/student pairs of the CRD (Tian et al., ICLR 2020) and DKD (Zhao et al., CVPR 2022)
papers use the CIFAR networks of RepDistiller's `models/` (github.com/HobbitLong/RepDistiller,
copied into mdistiller's `mdistiller/models/cifar/`). They are written here after those files and
registered with timm's `register_model`, so recipes name them like any timm model
(`model.arch: resnet8x4_cifar`). The `_cifar` suffix keeps them apart from timm's own ImageNet
models of the same name (timm's `vgg13`) and from harness's other CIFAR variants
(`mobilenetv2_cifar` is the Tf-KD code's full-width MobileNetV2; RepDistiller's is half width).

* `resnet20_cifar`, `resnet32_cifar`, `resnet56_cifar`, `resnet110_cifar` (RepDistiller `resnet20` ...):
  He et al. 2016's CIFAR ResNet, 16/32/64 channels, 3 stages of (depth-2)/6 basic blocks;
* `resnet8x4_cifar`, `resnet32x4_cifar` (`resnet8x4`, `resnet32x4`): the same with a 32-channel stem
  and 64/128/256-channel stages;
* `wrn_16_2_cifar`, `wrn_40_1_cifar`, `wrn_40_2_cifar` (`wrn_16_2`, ...): Zagoruyko and Komodakis 2016,
  pre-activation blocks, a final BN-ReLU;
* `vgg8_cifar`, `vgg13_cifar` (`vgg8` = `vgg8_bn`, `vgg13` = `vgg13_bn`): VGG with BatchNorm, 5 blocks,
  max-pools after the first 3 (at 32 px), a 512-d linear classifier;
* `mobilenetv2_half_cifar` (`MobileNetV2` = `mobile_half`): MobileNetV2, expansion 6, width 0.5, a
  stride-2 stem, a 1280-channel 1x1 convolution before the pooling;
* `shufflenetv1_cifar` (`ShuffleV1`): ShuffleNet v1, 3 groups, 240/480/960 channels.

RepDistiller's `ResNet50` (`models/resnetv2.py`) is harness's `resnet50_cifar` (timm's ResNet-50 with
a 3x3 stride-1 stem and no max-pool: the same layers and parameter count, 23,705,252 at 100 classes).

Departures from the reference code, none of which changes a network at 32 px: global average pooling is
adaptive (the reference hard-codes the 32 px pool size: `AvgPool2d(8)`, `avg_pool2d(out, 4)`), so the
networks also run on smaller smoke images; VGG never pools after its 4th block (the reference does only at
64 px); the first convolution takes `in_chans` channels.

timm's feature API: `feature_info` lists the stem and every stage, the taps of RepDistiller's
`is_feat=True` (and mdistiller's `feats["feats"]`): for ResNet the stem's ReLU and each stage's output;
for WRN each block group's output before the final BN-ReLU; for VGG each block after its ReLU; for
MobileNetV2 the stem and blocks 1, 2, 4, 6 (of 0-6); for ShuffleNet the stem and each stage.
`forward_intermediates` returns these from the same forward pass as the logits (`forward_head` on its
final output gives them), `prune_intermediate_layers` drops what follows a tap, and `features_only=True`
builds timm's feature extractor around `forward_intermediates`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from harness.models.names import CIFAR_KD_ARCHS, cifar_cfg


# ------------------------------------------------------------------------------ base
class CifarStageNet(nn.Module):
    """stem -> stages -> `head_prep` -> global pool -> dropout -> fc, with timm's feature API.

    `head_prep` is what sits between the last stage and the pooling (WRN's final BN-ReLU,
    MobileNetV2's 1x1 convolution to 1280 channels, or nothing). The feature taps are the stem's
    output and each stage's output; `feature_info[i]` describes tap i.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: list[nn.Module],
        head_prep: nn.Module,
        num_features: int,
        feature_info: list[dict[str, Any]],
        num_classes: int = 100,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.head_prep = head_prep
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = num_features
        self.drop_rate = drop_rate
        self.global_pool, self.fc = create_classifier(num_features, num_classes, pool_type=global_pool)
        self.feature_info = feature_info
        self.grad_checkpointing = False

    # timm classifier API
    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> nn.Module | str:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": r"^stem", "blocks": r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)"}

    # timm feature API
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The taps in `indices` (timm's rules: None all, int the last n, a list by position).

        Returns `(final, intermediates)` where `forward_head(final)` gives the logits, or the
        intermediates alone. `norm=True` passes the last stage's tap through `head_prep`.
        """
        assert output_fmt == "NCHW", "Output shape must be NCHW."
        last = len(self.stages)
        take, max_index = feature_take_indices(last + 1, indices)
        out: list[torch.Tensor] = []
        x = self.stem(x)
        if 0 in take:
            out.append(x)
        stages = self.stages[:max_index] if stop_early else self.stages
        for i, stage in enumerate(stages, start=1):
            x = stage(x)
            if i in take:
                out.append(self.head_prep(x) if norm and i == last else x)
        if intermediates_only:
            return out
        if len(stages) == last:
            x = self.head_prep(x)
        return x, out

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last tap asked for (and the head, when asked)."""
        take, max_index = feature_take_indices(len(self.stages) + 1, indices)
        self.stages = self.stages[:max_index]
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.head_prep = nn.Identity()
        if max_index < len(self.feature_info) - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or max_index < len(self.feature_info) - 1:
            self.reset_classifier(0, "")
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_prep(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _info(channels: list[int], reductions: list[int]) -> list[dict[str, Any]]:
    """feature_info of the stem (`stem`) and stages (`stages.<i>`)."""
    modules = ["stem"] + [f"stages.{i}" for i in range(len(channels) - 1)]
    return [
        {"num_chs": c, "reduction": r, "module": m}
        for c, r, m in zip(channels, reductions, modules, strict=True)
    ]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


def _init_normal_fan_out(model: nn.Module, linear_std: float | None) -> None:
    """RepDistiller's WRN/VGG/MobileNetV2 init: conv weights N(0, 2/(k*k*out)), BN 1/0, linear bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / n))
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                m.weight.data.normal_(0, linear_std)
            m.bias.data.zero_()


# ------------------------------------------------------------------------------ ResNet (CIFAR)
class CifarBasicBlock(nn.Module):
    """He et al. 2016 basic block: relu(bn(conv(relu(bn(conv x)))) + shortcut x)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def cifar_resnet(
    depth: int, widths: tuple[int, int, int, int], in_chans: int = 3, **kwargs: Any
) -> CifarStageNet:
    """RepDistiller `models/resnet.py` `ResNet(depth, widths, 'basicblock')`: (depth-2)/6 blocks per stage."""
    assert (depth - 2) % 6 == 0, depth
    n = (depth - 2) // 6
    stem = nn.Sequential(
        nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
    )
    stages, cin = [], widths[0]
    for i, cout in enumerate(widths[1:]):
        blocks = [
            CifarBasicBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1)
            for j in range(n)
        ]
        stages.append(nn.Sequential(*blocks))
        cin = cout
    model = CifarStageNet(stem, stages, nn.Identity(), widths[3], _info(list(widths), [1, 1, 2, 4]), **kwargs)
    for m in model.modules():  # the reference's init: Kaiming (fan_out) convs, BN 1/0, default Linear
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return model


# ------------------------------------------------------------------------------ Wide ResNet
class WideBasicBlock(nn.Module):
    """Pre-activation block of RepDistiller `models/wrn.py`; a width change has a 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        # the reference's shortcut: the input itself, or a 1x1 conv of the pre-activated input
        return out + (x if self.shortcut is None else self.shortcut(act))


def wide_resnet(depth: int, widen: int, in_chans: int = 3, **kwargs: Any) -> CifarStageNet:
    """RepDistiller `WideResNet(depth, widen_factor)`: (depth-4)/6 blocks per stage, 16/32/64 x widen."""
    assert (depth - 4) % 6 == 0, depth
    n = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    stem = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
    stages, cin = [], 16
    for i, cout in enumerate(widths[1:]):
        first_stride = 1 if i == 0 else 2
        stages.append(
            nn.Sequential(
                *[
                    WideBasicBlock(cin if j == 0 else cout, cout, first_stride if j == 0 else 1)
                    for j in range(n)
                ]
            )
        )
        cin = cout
    head_prep = nn.Sequential(nn.BatchNorm2d(widths[3]), nn.ReLU())
    model = CifarStageNet(stem, stages, head_prep, widths[3], _info(widths, [1, 1, 2, 4]), **kwargs)
    _init_normal_fan_out(model, linear_std=None)
    return model


# ------------------------------------------------------------------------------ VGG
VGG_CFGS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}


def _vgg_block(cin: int, widths: list[int]) -> list[nn.Module]:
    """conv-BN-ReLU for each width, the last ReLU left to the caller (as the reference's `_make_layers`)."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        cin = w
    return layers[:-1]


def vgg_bn(cfg: list[list[int]], in_chans: int = 3, **kwargs: Any) -> CifarStageNet:
    """RepDistiller `VGG(cfg, batch_norm=True)`: 5 blocks, max-pools after the first 3 (32 px)."""
    stem = nn.Sequential(*_vgg_block(in_chans, cfg[0]), nn.ReLU())
    stages = []
    for i in range(1, 5):
        pool = [nn.MaxPool2d(2, 2)] if i <= 3 else []
        stages.append(nn.Sequential(*pool, *_vgg_block(cfg[i - 1][-1], cfg[i]), nn.ReLU()))
    channels = [c[-1] for c in cfg]
    model = CifarStageNet(stem, stages, nn.Identity(), 512, _info(channels, [1, 2, 4, 8, 8]), **kwargs)
    _init_normal_fan_out(model, linear_std=0.01)
    return model


# ------------------------------------------------------------------------------ MobileNetV2
class InvertedResidual(nn.Module):
    """RepDistiller `models/mobilenetv2.py` block: pw (even at expansion 1), dw, linear pw."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            *_conv_bn(cin, mid, 1), nn.ReLU(),
            *_conv_bn(mid, mid, 3, stride, groups=mid), nn.ReLU(),
            *_conv_bn(mid, cout, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


def mobilenetv2_cifar_rd(
    expand: int = 6, width: float = 0.5, in_chans: int = 3, **kwargs: Any
) -> CifarStageNet:
    """RepDistiller `mobilenetv2_T_w(T, W)`; `mobile_half` is T 6, W 0.5.

    Settings (t, c, n, s): (1,16,1,1) (T,24,2,1) (T,32,3,2) (T,64,4,2) (T,96,3,1) (T,160,3,2) (T,320,1,1),
    a stride-2 stem of 32 W channels and a 1x1 convolution to 1280 channels before the pooling. The
    taps after blocks 1, 2, 4 and 6 make the 4 stages here.
    """
    settings = [(1, 16, 1, 1), (expand, 24, 2, 1), (expand, 32, 3, 2), (expand, 64, 4, 2),
                (expand, 96, 3, 1), (expand, 160, 3, 2), (expand, 320, 1, 1)]  # fmt: skip
    cin = int(32 * width)
    stem = nn.Sequential(*_conv_bn(in_chans, cin, 3, 2), nn.ReLU())
    groups: list[list[nn.Module]] = []
    for t, c, n, s in settings:
        cout = int(c * width)
        groups.append(
            [InvertedResidual(cin if j == 0 else cout, cout, s if j == 0 else 1, t) for j in range(n)]
        )
        cin = cout
    stages = [
        nn.Sequential(*groups[0], *groups[1]),
        nn.Sequential(*groups[2]),
        nn.Sequential(*groups[3], *groups[4]),
        nn.Sequential(*groups[5], *groups[6]),
    ]
    last = int(1280 * width) if width > 1.0 else 1280
    head_prep = nn.Sequential(*_conv_bn(cin, last, 1), nn.ReLU())
    channels = [int(32 * width)] + [int(c * width) for c in (24, 32, 96, 320)]
    model = CifarStageNet(stem, stages, head_prep, last, _info(channels, [2, 2, 4, 8, 16]), **kwargs)
    _init_normal_fan_out(model, linear_std=0.01)
    return model


# ------------------------------------------------------------------------------ ShuffleNet v1
class ShuffleV1Block(nn.Module):
    """RepDistiller `models/ShuffleNetv1.py` bottleneck: grouped 1x1, shuffle, dw 3x3, grouped 1x1.

    A stride-2 block concatenates an average-pooled shortcut; the others add the input.
    """

    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = cout // 4
        self.g = 1 if cin == 24 else groups  # the first block's input (24 channels) is not grouped
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=self.g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    @staticmethod
    def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(F.relu(self.bn1(self.conv1(x))), self.g)
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        res = self.shortcut(x)
        return F.relu(torch.cat([out, res], 1) if self.stride == 2 else out + res)


def shufflenet_v1(
    out_planes: tuple[int, ...] = (240, 480, 960),
    num_blocks: tuple[int, ...] = (4, 8, 4),
    groups: int = 3,
    in_chans: int = 3,
    **kwargs: Any,
) -> CifarStageNet:
    """RepDistiller `ShuffleV1`: a 1x1 stem to 24 channels, 3 stages each starting at stride 2."""
    stem = nn.Sequential(nn.Conv2d(in_chans, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
    stages, cin = [], 24
    for out, n in zip(out_planes, num_blocks, strict=True):
        blocks = [ShuffleV1Block(cin, out - cin, 2, groups)]  # concatenation restores `out` channels
        blocks += [ShuffleV1Block(out, out, 1, groups) for _ in range(n - 1)]
        stages.append(nn.Sequential(*blocks))
        cin = out
    info = _info([24, *out_planes], [1, 2, 4, 8])
    return CifarStageNet(
        stem, stages, nn.Identity(), out_planes[-1], info, **kwargs
    )  # PyTorch's default init


# ------------------------------------------------------------------------------ registration
ARCHS: dict[str, tuple[Any, dict[str, Any]]] = {
    "resnet20_cifar": (cifar_resnet, {"depth": 20, "widths": (16, 16, 32, 64)}),
    "resnet32_cifar": (cifar_resnet, {"depth": 32, "widths": (16, 16, 32, 64)}),
    "resnet56_cifar": (cifar_resnet, {"depth": 56, "widths": (16, 16, 32, 64)}),
    "resnet110_cifar": (cifar_resnet, {"depth": 110, "widths": (16, 16, 32, 64)}),
    "resnet8x4_cifar": (cifar_resnet, {"depth": 8, "widths": (32, 64, 128, 256)}),
    "resnet32x4_cifar": (cifar_resnet, {"depth": 32, "widths": (32, 64, 128, 256)}),
    "wrn_16_2_cifar": (wide_resnet, {"depth": 16, "widen": 2}),
    "wrn_40_1_cifar": (wide_resnet, {"depth": 40, "widen": 1}),
    "wrn_40_2_cifar": (wide_resnet, {"depth": 40, "widen": 2}),
    "vgg8_cifar": (vgg_bn, {"cfg": VGG_CFGS["vgg8"]}),
    "vgg13_cifar": (vgg_bn, {"cfg": VGG_CFGS["vgg13"]}),
    "mobilenetv2_half_cifar": (mobilenetv2_cifar_rd, {"expand": 6, "width": 0.5}),
    "shufflenetv1_cifar": (shufflenet_v1, {}),
}
assert tuple(ARCHS) == CIFAR_KD_ARCHS, "harness.models.names lists the networks registered here, in order"
STRIDE8_ARCHS = tuple(name for name in ARCHS if name != "mobilenetv2_half_cifar")
"""The networks of overall stride 8 or less (MobileNetV2's is 16: its stride-2 stem)."""


def _pool_size(name: str) -> int:
    """Side of the last feature map at 32 px (timm's `pool_size`)."""
    if name.startswith(("resnet", "wrn")):
        return 8
    return 2 if name.startswith("mobilenetv2") else 4


# timm's register_model reads this module-level name to attach each network's cfg.
default_cfgs = generate_default_cfgs(
    {
        name: cifar_cfg("stem" if name.startswith("wrn") else "stem.0", "fc", _pool_size(name))
        for name in ARCHS
    }
)


def _build(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    kwargs = dict(kwargs)
    if pretrained:
        raise ValueError(f"{name}: no pretrained weights exist (harness never downloads weights)")
    for key in ("pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    fn, args = ARCHS[name]
    return build_model_with_cfg(
        lambda **kw: fn(**args, **kw),
        name,
        pretrained=False,
        feature_cfg={"feature_cls": "getter"},
        **kwargs,
    )


def _entrypoint(name: str) -> Any:
    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _build(name, pretrained, kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"RepDistiller's CIFAR network as `{name}` (see harness.models.cifar)."
    return entry


for _name in ARCHS:
    globals()[_name] = register_model(_entrypoint(_name))
