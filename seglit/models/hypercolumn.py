"""Hypercolumns (Hariharan, Arbeláez, Girshick & Malik, CVPR 2015).

The hypercolumn of a pixel is the vector of the activations above it in several layers of a
CNN. Here: the features of the selected backbone stages (``stages``, keys of the backbone's
stride dict) are bilinearly upsampled to the resolution of the finest selected stage,
concatenated, and classified per pixel by 1x1 convolutions; the class scores are then
bilinearly upsampled to the input size.

* ``classifier="linear"`` (the paper's: a linear classifier on the hypercolumn): one 1x1
  conv. A linear classifier commutes with bilinear upsampling, so this equals the paper's
  efficient form (classify each layer at its own resolution, upsample and sum the scores)
  and classifying every input pixel.
* ``classifier="mlp"``: a per-pixel MLP with one hidden layer (1x1 conv + ReLU + 1x1 conv).

The paper's hypercolumns (for SDS refinement) use AlexNet's pool2, conv4 and fc7 and a grid
of location-specific classifiers over an object's box; seglit's model is the
semantic-segmentation form (one classifier for every pixel) with the defaults VGG16 pool2
(``stride4``), pool4 (``stride16``) and fc7 (``out``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglit.models.backbones import build_backbone
from seglit.models.base import SegmentationModel
from seglit.models.blocks import align_to, scaled_width
from seglit.models.knobs import BackboneName, OutputStride, check_choice
from seglit.models.registry import register_model

HypercolumnClassifier = Literal["linear", "mlp"]


def _resize(x: Tensor, factor: int, size: tuple[int, int]) -> Tensor:
    """Upsample by an integer ``factor`` (pixel (0, 0) stays aligned), then crop/pad to
    ``size`` at the bottom/right."""
    if factor > 1:
        x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return align_to(x, size)


@register_model(
    "hypercolumn", tiny={"backbone": "resnet18", "backbone_width": 4, "hidden_channels": 8}
)
class Hypercolumn(SegmentationModel):
    """Hypercolumn segmentation: upsampled multi-stage features, concatenated, classified
    per pixel (see the module docstring).

    Args:
        num_classes: Number of classes.
        backbone: Any seglit backbone: ``vgg16`` (with fc6/fc7 as convolutions),
            ``resnet18/34/50/101`` or ``xception65``.
        pretrained: ImageNet weights for the backbone (from the torch hub cache).
        output_stride: 8, 16 or 32 (dilation replaces the last strides).
        stages: Backbone features to concatenate, by nominal stride key: ``stride2``,
            ``stride4``, ``stride8``, ``stride16``, ``out`` (VGG16: pool1, pool2, pool3, pool4,
            fc7; ResNet: stem, layer1-4; Xception-65: entry blocks 1-3, exit block 1, exit
            flow output).
        classifier: ``linear`` (one 1x1 conv, the paper's) or ``mlp`` (1x1 conv to
            ``hidden_channels`` + ReLU + 1x1 conv).
        hidden_channels: MLP width; ``None`` = 512 (scaled with ``backbone_width``).
        backbone_width: Scale the backbone down (first-stage width; ``None`` = standard).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: BackboneName = "vgg16",
        pretrained: bool = False,
        output_stride: OutputStride = 32,
        stages: tuple[str, ...] = ("stride4", "stride16", "out"),
        classifier: HypercolumnClassifier = "linear",
        hidden_channels: int | None = None,
        backbone_width: int | None = None,
    ) -> None:
        super().__init__(num_classes)
        check_choice("classifier", classifier, HypercolumnClassifier)
        stages = tuple(stages)
        self.backbone = build_backbone(
            backbone, output_stride, pretrained, backbone_width, early_features=True
        )
        valid = tuple(self.backbone.channels)
        if not stages or len(set(stages)) != len(stages) or not set(stages) <= set(valid):
            raise ValueError(
                f"invalid stages={stages!r} for backbone {backbone!r}; expected distinct keys "
                f"among: {', '.join(repr(k) for k in valid)}"
            )
        if hidden_channels is not None and hidden_channels < 1:
            raise ValueError(f"invalid hidden_channels={hidden_channels!r}; expected an int >= 1")
        self.stages = tuple(k for k in valid if k in stages)  # finest first
        self.output_stride = self.backbone.output_stride
        strides = self.backbone.strides
        self.base_stride = min(strides[k] for k in self.stages)
        self.factors = {k: strides[k] // self.base_stride for k in self.stages}
        in_ch = sum(self.backbone.channels[k] for k in self.stages)
        if classifier == "linear":
            self.classifier: nn.Module = nn.Conv2d(in_ch, num_classes, 1)
        else:
            hidden = hidden_channels or scaled_width(512, backbone_width)
            self.classifier = nn.Sequential(
                nn.Conv2d(in_ch, hidden, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, num_classes, 1),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, 3, H, W) to logits (N, C, H, W), any H and W."""
        self.check_input(x)
        size = x.shape[-2:]
        feats = self.backbone(x)
        base = feats[self.stages[0]].shape[-2:]
        column = torch.cat(
            [_resize(feats.pop(k), self.factors[k], base) for k in self.stages], dim=1
        )
        feats.clear()  # stages not used: freed before the classifier runs
        return _resize(self.classifier(column), self.base_stride, size)
