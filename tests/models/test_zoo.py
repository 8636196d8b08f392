"""Every registered model and knob: forward + backward on a tiny odd-sized input."""

from __future__ import annotations

import pytest
import torch

from seglit.models import build_model, list_models

TINY_RESNET = {"backbone": "resnet18", "backbone_width": 4}
TINY_VGG = {"backbone": "vgg16", "backbone_width": 4}

# (registry name, knobs): tiny widths so the whole grid runs in seconds on CPU.
CONFIGS: list[tuple[str, dict]] = [
    *[
        ("unet", {"base_width": 4, "depth": 3, "fusion": f, "upsample": u})
        for f in ("sum", "concat")
        for u in ("transposed", "bilinear", "nearest_conv", "bilinear_conv")
    ],
    ("unet", {"base_width": 4, "depth": 4, "batch_norm": False, "upsample_kernel": 3}),
    *[
        ("unet_resnet", {**TINY_RESNET, "decoder_channels": (16, 8, 8, 4, 4), "upsample": u})
        for u in ("nearest", "bilinear", "transposed")
    ],
    ("unet_resnet", {"backbone": "resnet50", "backbone_width": 4}),  # default decoder widths
    ("fcn32s", TINY_VGG),
    ("fcn32s", {**TINY_RESNET, "output_stride": 8, "head": "fcn", "aux": True}),
    ("fcn16s", {**TINY_VGG, "fusion": "concat", "upsample": "bilinear_conv"}),
    ("fcn16s", {**TINY_RESNET, "output_stride": 16, "upsample": "nearest_conv"}),
    *[
        ("fcn8s", {**TINY_VGG, "fusion": f, "upsample": u})
        for f in ("sum", "concat")
        for u in ("transposed", "bilinear")
    ],
    ("fcn8s", {"backbone": "resnet50", "backbone_width": 4, "output_stride": 16, "aux": True}),
    (
        "fcn8s",
        {"backbone": "resnet34", "backbone_width": 4, "output_stride": 8, "bilinear_init": False},
    ),
    ("deeplabv1", {"backbone_width": 4}),
    (
        "deeplabv1",
        {"backbone_width": 4, "output_stride": 16, "upsample": "transposed", "aux": True},
    ),
    ("deeplabv2", {**TINY_VGG, "atrous_rates": (2, 4, 8, 12)}),
    ("deeplabv2", {**TINY_RESNET, "atrous_rates": (6, 12, 18, 24), "aux": True}),
    ("deeplabv3", {**TINY_RESNET, "output_stride": 16}),
    (
        "deeplabv3",
        {
            "backbone": "resnet50",
            "backbone_width": 4,
            "output_stride": 8,
            "multi_grid": (1, 2, 4),
            "image_pooling": False,
            "separable": True,
            "aux": True,
        },
    ),
    (
        "deeplabv3",
        {
            **TINY_RESNET,
            "output_stride": 32,
            "multi_grid": None,
            "atrous_rates": (1, 2),
            "upsample": "bilinear_conv",
        },
    ),
    ("deeplabv3plus", {**TINY_RESNET}),
    (
        "deeplabv3plus",
        {
            **TINY_RESNET,
            "fusion": "sum",
            "separable": False,
            "output_stride": 8,
            "upsample": "transposed",
            "aux": True,
        },
    ),
    ("deeplabv3plus", {**TINY_RESNET, "decoder_layout": "smp", "multi_grid": (1,)}),
    (
        "deeplabv3plus",
        {**TINY_RESNET, "decoder_layout": "smp", "separable": False, "fusion": "sum"},
    ),
    (
        "smp",
        {
            "arch": "Unet",
            "encoder": "mobilenet_v2",
            "smp_kwargs": {"decoder_channels": [16, 8, 8, 4, 4]},
        },
    ),
    (
        "smp",
        {
            "arch": "FPN",
            "encoder": "mobilenet_v2",
            "smp_kwargs": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
        },
    ),
]


def _id(cfg: tuple[str, dict]) -> str:
    name, kw = cfg
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "smp_kwargs")


def test_configs_cover_registry() -> None:
    assert {name for name, _ in CONFIGS} == set(list_models())


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_forward_backward(cfg: tuple[str, dict]) -> None:
    name, kwargs = cfg
    torch.manual_seed(0)
    model = build_model(name, 5, **kwargs).train()
    x = torch.randn(2, 3, 33, 35)
    out = model(x)
    if kwargs.get("aux"):
        assert isinstance(out, dict) and set(out) == {"out", "aux"}
        assert out["aux"].shape == (2, 5, 33, 35)
        loss = out["out"].square().mean() + out["aux"].square().mean()
        logits = out["out"]
    else:
        assert isinstance(out, torch.Tensor)
        logits = out
        loss = out.square().mean()
    assert logits.shape == (2, 5, 33, 35)
    assert torch.isfinite(logits).all()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    # the pretrained part is exposed as `backbone` (not for U-Net, which has none)
    if name != "unet":
        assert isinstance(model.backbone, torch.nn.Module)
        assert sum(p.numel() for p in model.backbone.parameters()) > 0
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 33, 35))
    assert isinstance(y, torch.Tensor) and y.shape == (1, 5, 33, 35)


@pytest.mark.parametrize("size", [(99, 101), (16, 17), (375, 500)])
def test_unet_any_size(size: tuple[int, int]) -> None:
    model = build_model("unet", 2, base_width=2, depth=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
@pytest.mark.parametrize("size", [(70, 90), (1, 1), (31, 97)])
def test_unet_resnet_any_size(size: tuple[int, int], upsample: str) -> None:
    model = build_model(
        "unet_resnet",
        2,
        **TINY_RESNET,
        decoder_channels=(8, 8, 4, 4, 4),
        upsample=upsample,
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)
