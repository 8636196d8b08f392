"""Backbones: VGG16, ResNet-18/34/50/101 and aligned Xception-65 with output stride 8, 16, 32.

State-dict keys match torchvision's ``vgg16`` / ``resnetXX`` so ImageNet weights load
directly (VGG's ``classifier.0/3`` Linear layers are reshaped into the ``fc6``/``fc7``
convolutions), and timm's ``xception65`` feature extractor for Xception-65. Output stride
below 32 replaces strides by dilation, for basic-block ResNets too (torchvision's
``replace_stride_with_dilation`` refuses BasicBlock).

Every backbone's ``forward`` returns a dict of stage outputs keyed by their nominal stride
(``"stride2"`` (only with ``early_features``), ``"stride4"`` (ResNet, Xception, and VGG with
``early_features``), ``"stride8"``, ``"stride16"``, ``"out"``) and has ``channels`` and
``strides`` (the actual strides: with output stride 8, ``"stride16"`` is at stride 8) and
``output_stride``. Xception-65 is defined in :mod:`seglit.models.xception`;
:func:`build_backbone` builds each of them by name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seglit.models.knobs import (
    BackboneName,
    DropoutKind,
    OutputStride,
    ResNetName,
    check_choice,
    check_width,
    choices,
)
from seglit.models.xception import XceptionBackbone

RESNET_LAYERS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
assert tuple(RESNET_LAYERS) == choices(ResNetName)
TORCHVISION_WEIGHTS = {
    "vgg16": "VGG16_Weights",
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
}


def load_imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """Load torchvision's ImageNet weights for ``name`` from the torch hub cache only.

    Never downloads: if the file is not already cached, raises a RuntimeError saying which
    file is missing and how to get it.
    """
    import torchvision.models as tvm

    weights = getattr(tvm, TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    if not os.path.isfile(path):
        raise RuntimeError(
            f"pretrained=True for backbone {name!r} needs torchvision's ImageNet weights "
            f"{filename}, which are not in the torch hub cache ({path}). seglit never "
            "downloads during model construction. On a machine with internet run:\n"
            f'  python -c "import torchvision; torchvision.models.{name}(weights='
            f"'IMAGENET1K_V1')\"\n"
            f"and copy the file to {path} (or set TORCH_HOME), or download {weights.url} "
            "there yourself."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def check_stages(stages: int, output_stride: int) -> None:
    """Reject a ResNet stage count, or an output stride the kept stages cannot give.

    Stem + ``layer1`` (``stages=1``) end at stride 4, so only ``output_stride=4``; two stages
    end at 8; three at 16 (8 by dilating ``layer3``); all four give 8, 16 or 32.
    """
    if stages not in (1, 2, 3, 4):
        raise ValueError(
            f"invalid backbone_stages={stages!r}; expected 1, 2, 3 or 4 (ResNet stages kept "
            "after the stem)"
        )
    if stages == 4:
        check_choice("output_stride", output_stride, OutputStride)
        return
    valid = {1: (4,), 2: (8,), 3: (8, 16)}[stages]
    if output_stride not in valid:
        raise ValueError(
            f"backbone_stages={stages} ends at stride {2 ** (stages + 1)}: it needs "
            f"output_stride in {list(valid)}, got output_stride={output_stride!r}"
        )


# ----------------------------------------------------------------------------------- ResNet


class _ResidualBlock(nn.Module):
    """A ResNet block, ``relu(branch(x) + shortcut(x))``, with torchvision's layers and order.

    Subclasses create the branch's layers (and ``relu``) in :meth:`_build_branch`, in
    torchvision's order, so the state-dict keys and seeded initialisations match it; the
    shortcut (``downsample``) is registered after them, as torchvision does.

    Args:
        inplanes: Input channels.
        planes: Width of the block (its output has ``planes * expansion`` channels).
        stride: Stride of the block's strided conv.
        dilation: Dilation of its 3x3 conv(s).
        downsample: The shortcut's projection, or ``None`` for the identity.
    """

    expansion: int
    relu: nn.ReLU

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        self._build_branch(inplanes, planes, stride, dilation)
        self.downsample = downsample

    def _build_branch(self, inplanes: int, planes: int, stride: int, dilation: int) -> None:
        raise NotImplementedError

    def _branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        out = self._branch(x)
        # The shortcut after the main branch, as torchvision: the same op order gives the
        # same backward order, so the same transient memory peak.
        identity = x if self.downsample is None else self.downsample(x)
        out += identity  # in place, as torchvision: one activation-sized allocation less
        return self.relu(out)


class BasicBlock(_ResidualBlock):
    """ResNet basic block (two 3x3 convs); both convs take the block's dilation."""

    expansion = 1

    def _build_branch(self, inplanes: int, planes: int, stride: int, dilation: int) -> None:
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def _branch(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_ResidualBlock):
    """ResNet v1.5 bottleneck (stride and dilation on the 3x3 conv), as in torchvision."""

    expansion = 4

    def _build_branch(self, inplanes: int, planes: int, stride: int, dilation: int) -> None:
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)

    def _branch(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNetBackbone(nn.Module):
    """ResNet feature extractor with output stride 8/16/32 and optional multi-grid.

    Dilation follows torchvision: in a dilated stage the first block keeps the previous
    dilation (it also did the striding) and the others use the new one. With
    ``multi_grid=(1, 2, 4)`` the blocks of the last stage instead use
    ``rate * multi_grid[i]`` (DeepLab v3), where ``rate`` is that stage's dilation.

    Args:
        name: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        output_stride: 8, 16 or 32.
        multi_grid: Unit rates of the last stage, or ``None`` for torchvision's scheme.
        width: Stem / first-stage width (64 is standard); smaller gives a tiny backbone.
        pretrained: Load torchvision ImageNet weights from the hub cache.
        stem_feature: Also return the stride-2 stem output as ``"stride2"`` (U-Net skips).
            Off by default: the full-resolution stem map would otherwise stay alive for the
            whole forward of models that never read it (at inference on 1024x2048 that is
            128 MiB).
        stages: ResNet stages kept after the stem (4: all; 1: stem + ``layer1``, output stride
            4, a 43 px receptive field): a shallow backbone whose receptive field, not the
            image, limits what a pixel sees. ``output_stride`` must be one the kept stages
            give (``check_stages``).
    """

    def __init__(
        self,
        name: str = "resnet50",
        output_stride: int = 32,
        multi_grid: Sequence[int] | None = None,
        width: int | None = None,
        pretrained: bool = False,
        stem_feature: bool = False,
        stages: int = 4,
    ) -> None:
        super().__init__()
        check_choice("backbone", name, ResNetName)
        check_stages(stages, output_stride)
        if multi_grid is not None and stages < 4:
            raise ValueError(
                f"multi_grid={tuple(multi_grid)} sets the unit rates of layer4, which "
                f"backbone_stages={stages} leaves out; use multi_grid=None"
            )
        check_width(width, pretrained)
        state = load_imagenet_state_dict(name) if pretrained else None  # fail before building
        kind, layers = RESNET_LAYERS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        w = 64 if width is None else width
        self.output_stride = output_stride
        self.inplanes = w
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dilate = {
            32: (False, False, False),
            16: (False, False, True),
            8: (False, True, True),
            4: (False, False, False),  # stem + layer1 only (``stages=1``): nothing to dilate
        }
        d2, d3, d4 = dilate[output_stride]
        self.stages = stages
        self.layer1 = self._make_layer(block, w, layers[0])
        if stages >= 2:
            self.layer2 = self._make_layer(block, 2 * w, layers[1], 2, d2)
        if stages >= 3:
            self.layer3 = self._make_layer(block, 4 * w, layers[2], 2, d3)
        if stages == 4:
            self.layer4 = self._make_layer(block, 8 * w, layers[3], 2, d4, multi_grid)
        e = block.expansion
        self.stem_feature = stem_feature
        names = ("stride4", "stride8", "stride16", "out")
        channels = (w * e, 2 * w * e, 4 * w * e, 8 * w * e)
        strides = (4, 8, min(16, output_stride), output_stride)
        self.channels = dict(zip(names[:stages], channels))
        self.strides = dict(zip(names[:stages], strides))
        self.channels["out"] = channels[stages - 1]  # the last kept stage's output
        self.strides["out"] = output_stride
        if stem_feature:
            self.channels = {"stride2": w, **self.channels}
            self.strides = {"stride2": 2, **self.strides}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if state is not None:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            self.load_state_dict(state)

    def _make_layer(
        self,
        block: type[nn.Module],
        planes: int,
        blocks: int,
        stride: int = 1,
        dilate: bool = False,
        multi_grid: Sequence[int] | None = None,
    ) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        if multi_grid is not None:
            rates = [self.dilation * multi_grid[i % len(multi_grid)] for i in range(blocks)]
        else:
            rates = [previous] + [self.dilation] * (blocks - 1)
        mods = [block(self.inplanes, planes, stride, rates[0], downsample)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            mods.append(block(self.inplanes, planes, dilation=rates[i]))
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        # the stem is only kept when asked for: no full-resolution map held needlessly
        feats: dict[str, Tensor] = {"stride2": x} if self.stem_feature else {}
        x = self.maxpool(x)
        feats["stride4"] = self.layer1(x)
        if self.stages >= 2:
            feats["stride8"] = self.layer2(feats["stride4"])
        if self.stages >= 3:
            feats["stride16"] = self.layer3(feats["stride8"])
        if self.stages == 4:
            feats["out"] = self.layer4(feats["stride16"])
        else:
            feats["out"] = feats[("stride4", "stride8", "stride16")[self.stages - 1]]
        return feats


# -------------------------------------------------------------------------------------- VGG

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def dropout_layer(kind: str, p: float = 0.5) -> nn.Module:
    """``nn.Dropout(p)`` for ``element`` (caffe / torchvision VGG), ``nn.Dropout2d(p)`` for
    ``channel`` (whole feature maps)."""
    check_choice("dropout", kind, DropoutKind)
    return nn.Dropout(p) if kind == "element" else nn.Dropout2d(p)


class VGG16Backbone(nn.Module):
    """VGG16 feature extractor, torchvision key layout (``features.N``), plus optional
    fc6/fc7 as convolutions (FCN: fc6 = 7x7 conv with 4096 channels, fc7 = 1x1 conv, each
    followed by ReLU and dropout 0.5).

    Pools are ceil-mode so no size ever reaches zero. Output stride < 32 makes pool5
    (and pool4 at 8) stride 1 and dilates the following convs, as DeepLab does.

    Args:
        output_stride: 8, 16 or 32.
        fc: Include fc6/fc7 (loaded from torchvision's classifier.0/3 when pretrained).
        pool: ``"2x2"`` (VGG/FCN) or ``"3x3"`` (DeepLab: 3x3 kernel, padding 1).
        width: First-stage width (64 standard); fc width scales as ``64 * width``.
        pretrained: Load torchvision ImageNet weights from the hub cache.
        dropout: Dropout after fc6 and fc7: ``element`` (``nn.Dropout``, as caffe's VGG16
            and FCN reference nets and torchvision's VGG) or ``channel`` (``nn.Dropout2d``).
        early_features: Also return pool1 (``"stride2"``) and pool2 (``"stride4"``).
    """

    def __init__(
        self,
        output_stride: int = 32,
        fc: bool = True,
        pool: str = "2x2",
        width: int | None = None,
        pretrained: bool = False,
        dropout: str = "element",
        early_features: bool = False,
    ) -> None:
        super().__init__()
        check_choice("output_stride", output_stride, OutputStride)
        check_choice("dropout", dropout, DropoutKind)
        check_width(width, pretrained)
        state = load_imagenet_state_dict("vgg16") if pretrained else None  # fail before building
        scale = 1.0 if width is None else width / 64
        self.output_stride = output_stride
        # stride of pool i (1-based) and dilation of the convs after it
        pool_strides = {32: (2, 2, 2, 2, 2), 16: (2, 2, 2, 2, 1), 8: (2, 2, 2, 1, 1)}
        strides = pool_strides[output_stride]
        layers: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index after each pool in `features`
        in_ch, stage, dilation = 3, 0, 1
        for v in VGG16_CFG:
            if v == "M":
                s = strides[stage]
                if pool == "3x3" or s == 1:
                    layers.append(nn.MaxPool2d(3, s, 1, ceil_mode=True))
                else:
                    layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                if s == 1 and stage < 4:
                    dilation *= 2
                stage += 1
                self.stage_ends.append(len(layers))
            else:
                out_ch = max(1, round(v * scale))
                layers += [
                    nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation),
                    nn.ReLU(inplace=True),
                ]
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.fc_dilation = dilation * (2 if strides[4] == 1 else 1)
        c3, c4 = max(1, round(256 * scale)), in_ch
        self.early_features = early_features
        self.channels = {"stride8": c3, "stride16": c4, "out": in_ch}
        self.strides = {"stride8": 8, "stride16": min(16, output_stride), "out": output_stride}
        if early_features:
            c1, c2 = max(1, round(64 * scale)), max(1, round(128 * scale))
            self.channels = {"stride2": c1, "stride4": c2, **self.channels}
            self.strides = {"stride2": 2, "stride4": 4, **self.strides}
        self.has_fc = fc
        if fc:
            fc_ch = max(1, round(4096 * scale))
            d = self.fc_dilation
            self.fc6 = nn.Conv2d(in_ch, fc_ch, 7, padding=3 * d, dilation=d)
            self.fc7 = nn.Conv2d(fc_ch, fc_ch, 1)
            self.fc_act = nn.Sequential(nn.ReLU(inplace=True), dropout_layer(dropout))
            self.fc_act2 = nn.Sequential(nn.ReLU(inplace=True), dropout_layer(dropout))
            self.channels["out"] = fc_ch
        if state is not None:
            own = {k: v for k, v in state.items() if k.startswith("features.")}
            if fc:
                own["fc6.weight"] = state["classifier.0.weight"].view(4096, 512, 7, 7)
                own["fc6.bias"] = state["classifier.0.bias"]
                own["fc7.weight"] = state["classifier.3.weight"].view(4096, 4096, 1, 1)
                own["fc7.bias"] = state["classifier.3.bias"]
            self.load_state_dict(own)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats: dict[str, Tensor] = {}
        start = 0
        names = {3: "stride8", 4: "stride16", 5: "out"}
        if self.early_features:
            names.update({1: "stride2", 2: "stride4"})
        for i, end in enumerate(self.stage_ends, start=1):
            x = self.features[start:end](x)
            start = end
            if i in names:
                feats[names[i]] = x
        if self.has_fc:
            x = self.fc_act(self.fc6(x))
            feats["out"] = self.fc_act2(self.fc7(x))
        return feats


def build_backbone(
    name: str,
    output_stride: int = 32,
    pretrained: bool = False,
    width: int | None = None,
    multi_grid: Sequence[int] | None = None,
    vgg_fc: bool = True,
    vgg_pool: str = "2x2",
    vgg_dropout: str = "element",
    early_features: bool = False,
    stages: int = 4,
) -> nn.Module:
    """Build a backbone by name (``vgg16``, ``resnet18/34/50/101`` or ``xception65``).

    Args:
        name: Backbone name (:data:`~seglit.models.knobs.BackboneName`).
        output_stride: 8, 16 or 32.
        pretrained: ImageNet weights (torchvision's, from the hub cache; not for Xception).
        width: First-stage width for a scaled-down backbone (``None`` = standard).
        multi_grid: Unit rates of the last stage (ResNet, Xception).
        vgg_fc: VGG16: include fc6/fc7 as convolutions.
        vgg_pool: VGG16: ``2x2`` or ``3x3`` pools.
        vgg_dropout: VGG16: dropout kind after fc6/fc7.
        early_features: Also return the stride-2 (and, for VGG, stride-4) features.
        stages: ResNet stages kept after the stem (4 = all; see ``ResNetBackbone``).
    """
    check_choice("backbone", name, BackboneName)
    if stages != 4 and name not in RESNET_LAYERS:
        raise ValueError(
            f"backbone_stages={stages} applies to the ResNet backbones, not backbone={name!r}"
        )
    if name == "vgg16":
        if multi_grid is not None:
            raise ValueError("multi_grid applies to ResNet and Xception backbones, not 'vgg16'")
        return VGG16Backbone(
            output_stride, vgg_fc, vgg_pool, width, pretrained, vgg_dropout, early_features
        )
    if name == "xception65":
        return XceptionBackbone(output_stride, multi_grid, width, pretrained, early_features)
    return ResNetBackbone(
        name, output_stride, multi_grid, width, pretrained, early_features, stages
    )
