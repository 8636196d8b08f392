"""Model zoo and registry: FCN, U-Net (paper; smp-style ResNet), DeepLab v1/v2/v3/v3+,
hypercolumns, smp.

Every model maps (N, 3, H, W) to logits (N, num_classes, H, W) at the input's size; with
``aux=True`` it returns ``{"out": ..., "aux": ...}`` in training mode (the contract:
:mod:`seglit.models.base`). Importing this package imports every module in it, and each
model registers itself where it is defined (:mod:`seglit.models.registry`): a new model is
one new file here, with no import line to add.
"""

import importlib
import pkgutil

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


def _import_every_module() -> None:
    """Import each module of this package (and so register every model defined in one)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):  # not __main__
            importlib.import_module(f"{__name__}.{module.name}")


_import_every_module()
