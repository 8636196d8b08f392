"""Convert torchvision segmentation models (with their weights) into seglit models."""

from __future__ import annotations

from torch import nn

from seglit.models.deeplab import DeepLabV3
from seglit.models.fcn import FCN32s


def _resnet_name(tv_model: nn.Module) -> str:
    body = tv_model.backbone
    if not all(hasattr(body, f"layer{i}") for i in (1, 2, 3, 4)):  # e.g. a MobileNetV3 body
        raise ValueError(
            "unsupported torchvision backbone: expected a ResNet-18/34/50/101 "
            "(fcn_resnet50/101, deeplabv3_resnet50/101)"
        )
    blocks = len(body.layer3)
    bottleneck = hasattr(body.layer1[0], "conv3")
    names = {
        (True, 6): "resnet50",
        (True, 23): "resnet101",
        (False, 2): "resnet18",
        (False, 6): "resnet34",
    }
    try:
        return names[(bottleneck, blocks)]
    except KeyError:
        raise ValueError(
            "unsupported torchvision backbone: expected a ResNet-18/34/50/101"
        ) from None


def from_torchvision(tv_model: nn.Module) -> nn.Module:
    """Return the seglit equivalent of a torchvision segmentation model, carrying its weights.

    Supported: ``torchvision.models.segmentation.fcn_resnet50/101`` (-> :class:`FCN32s` with
    ``head="fcn"``, output stride 8, bilinear upsampling) and ``deeplabv3_resnet50/101``
    (-> :class:`DeepLabV3` with ``head="torchvision"``, output stride 8, rates (12, 24, 36),
    no multi-grid), with or
    without the auxiliary head. In eval mode the outputs match torchvision's ``["out"]``.

    Args:
        tv_model: A torchvision ``FCN`` or ``DeepLabV3`` instance.

    Raises:
        ValueError: For any other model.
    """
    from torchvision.models.segmentation.deeplabv3 import ASPP as TvASPP
    from torchvision.models.segmentation.deeplabv3 import DeepLabV3 as TvDeepLabV3
    from torchvision.models.segmentation.fcn import FCN as TvFCN

    if not isinstance(tv_model, (TvFCN, TvDeepLabV3)):
        raise ValueError(
            f"from_torchvision supports torchvision FCN and DeepLabV3 models "
            f"(fcn_resnet50/101, deeplabv3_resnet50/101), got {type(tv_model).__name__}"
        )
    backbone = _resnet_name(tv_model)
    num_classes = tv_model.classifier[-1].out_channels
    aux = tv_model.aux_classifier is not None
    if isinstance(tv_model, TvFCN):
        model: nn.Module = FCN32s(
            num_classes,
            backbone=backbone,
            output_stride=8,
            upsample="bilinear",
            head="fcn",
            aux=aux,
        )
    else:
        aspp = tv_model.classifier[0]
        assert isinstance(aspp, TvASPP)
        rates = tuple(int(branch[0].dilation[0]) for branch in aspp.convs[1:-1])
        model = DeepLabV3(
            num_classes,
            backbone=backbone,
            output_stride=8,
            atrous_rates=rates,
            multi_grid=None,
            image_pooling=True,
            separable=False,
            head="torchvision",
            aspp_channels=aspp.project[0].out_channels,
            upsample="bilinear",
            aux=aux,
        )
    model.load_state_dict(tv_model.state_dict(), strict=True)
    return model.train(tv_model.training)
