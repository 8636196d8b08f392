"""Model zoo and registry: FCN, U-Net (paper; smp-style ResNet), DeepLab v1/v2/v3/v3+,
hypercolumns, smp.

Every model maps (N, 3, H, W) to logits (N, num_classes, H, W) at the input's size; with
``aux=True`` it returns ``{"out": ..., "aux": ...}`` in training mode (the contract:
:mod:`seglit.models.base`). Importing this package registers every model
(:mod:`seglit.models.registry`).
"""

from seglit.models.base import SegmentationModel
from seglit.models.card import count_gflops, describe_model
from seglit.models.deeplab import DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus
from seglit.models.fcn import FCN, FCN8s, FCN16s, FCN32s
from seglit.models.hypercolumn import Hypercolumn
from seglit.models.registry import build_model, list_models, register_model
from seglit.models.smp import SMPModel
from seglit.models.torchvision_import import from_torchvision
from seglit.models.unet import ResNetUNet, UNet

__all__ = [
    "FCN",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "DeepLabV1",
    "DeepLabV2",
    "DeepLabV3",
    "DeepLabV3Plus",
    "Hypercolumn",
    "ResNetUNet",
    "SMPModel",
    "SegmentationModel",
    "UNet",
    "build_model",
    "count_gflops",
    "describe_model",
    "from_torchvision",
    "list_models",
    "register_model",
]
