"""Model zoo and registry: FCN, U-Net (paper; smp-style ResNet), DeepLab v1/v2/v3/v3+, smp.

Every model maps (N, 3, H, W) to logits (N, num_classes, H, W) at the input's size; with
``aux=True`` it returns ``{"out": ..., "aux": ...}`` in training mode.
"""

from seglit.models.deeplab import DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus
from seglit.models.fcn import FCN8s, FCN16s, FCN32s
from seglit.models.registry import build_model, describe_model, list_models
from seglit.models.smp import SMPModel
from seglit.models.torchvision_import import from_torchvision
from seglit.models.unet import ResNetUNet, UNet

__all__ = [
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "DeepLabV1",
    "DeepLabV2",
    "DeepLabV3",
    "DeepLabV3Plus",
    "ResNetUNet",
    "SMPModel",
    "UNet",
    "build_model",
    "describe_model",
    "from_torchvision",
    "list_models",
]
