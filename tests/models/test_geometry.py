"""Where a network's outputs sit on its input: DeepLab's corner-aligned resizes, MSC branch
alignment, FCN's pad-100 crops, and the reference layers without parameters (pool5a).

The place of an output is measured by its gradient centroid: the input-gradient of one
output value, summed over channels, weighs each input pixel; its mean row is where the value
looks. The networks are measured as linear maps with their own geometry: every conv keeps
only its centre tap (a symmetric kernel places its output where any symmetric kernel does),
max pools become average pools of the same window, biases are zero and BatchNorm is the
identity (eval mode, fresh statistics). A coarse cell then sits exactly where the strides
and paddings put it, and an output pixel where the resizes put it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglit.inference import InferenceConfig, predict_log_probs
from seglit.models import DeepLabV1, DeepLabV2, DeepLabV3, FCN8s, UNet
from seglit.models.blocks import scaled_length
from seglit.models.fcn import caffe_crop_offsets
from seglit.recipe import load_recipe

RECIPES = Path(__file__).parents[2] / "recipes"


def linearised(net: nn.Module) -> nn.Module:
    """The network as a linear map with its own geometry (module docstring), float64."""
    with torch.no_grad():
        for module in list(net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.MaxPool2d):
                    pool = nn.AvgPool2d(
                        child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode
                    )
                    setattr(module, name, pool)
            if isinstance(module, nn.Conv2d):
                module.weight.zero_()
                kh, kw = module.weight.shape[-2:]
                module.weight[:, :, kh // 2, kw // 2] = 1.0 / module.weight.shape[1]
                if module.bias is not None:
                    module.bias.zero_()
    return net.double().eval()


def centroid(fn: Any, size: int, pixel: int) -> float:
    """Gradient centroid (row) of output ``(pixel, pixel)`` of ``fn`` on a ``size``^2 input."""
    x = torch.ones(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    fn(x)[:, 0, pixel, pixel].sum().backward()
    weight = x.grad.sum(dim=(0, 1, 3))
    rows = torch.arange(size, dtype=torch.float64)
    return float((weight * rows).sum() / weight.sum())


def recipe_net(name: str, **override: Any) -> nn.Module:
    """The paper recipe's network class and knobs at a tiny width (the same geometry)."""
    config = load_recipe(RECIPES / f"{name}.yaml").config
    net = copy.deepcopy(config["model"]["net"])
    args = {**net["init_args"], "pretrained": False, "backbone_width": 4, **override}
    if "fc_channels" in args or net["class_path"].endswith("DeepLabV1"):
        args["fc_channels"] = 8
    if "backbone" in args and args["backbone"].startswith("resnet"):
        args["backbone"] = "resnet18"  # the same strides and dilations as ResNet-101
    cls = {"DeepLabV1": DeepLabV1, "DeepLabV2": DeepLabV2, "DeepLabV3": DeepLabV3}
    return cls[net["class_path"].rsplit(".", 1)[-1]](3, **args)


# input size s*k+1 (321 = 8*40+1, 513 = 16*32+1), the measured output pixel s*i
PAPER = [
    ("deeplabv1_voc", 321, 8, 10),
    ("deeplabv2_voc", 321, 8, 10),
    ("deeplabv3_voc", 513, 16, 14),
]


@pytest.mark.parametrize(("recipe", "size", "stride", "cell"), PAPER, ids=[p[0] for p in PAPER])
def test_paper_recipes_keep_logit_i_at_pixel_stride_times_i(
    recipe: str, size: int, stride: int, cell: int
) -> None:
    """Coarse logit i sits at input pixel s*i; the paper recipes' corner-aligned upsampling
    keeps it there (output pixel s*i is logit i), PyTorch's default shifts it."""
    # image pooling is global (its gradient is flat over the image): measured without it
    extra = {"image_pooling": False} if recipe == "deeplabv3_voc" else {}
    net = linearised(recipe_net(recipe, **extra))
    assert net.align_corners, f"{recipe} does not set align_corners"
    assert net.output_stride == stride

    def coarse(x: Tensor) -> Tensor:
        return net._logits(net.backbone(x))

    assert centroid(coarse, size, cell) == pytest.approx(stride * cell, abs=1e-6)
    assert centroid(net, size, stride * cell) == pytest.approx(stride * cell, abs=1e-6)
    shifted = linearised(recipe_net(recipe, align_corners=False, **extra))
    offset = centroid(shifted, size, stride * cell) - stride * cell
    assert abs(offset) > 0.5, offset  # 1.74 px (OS 8 at pixel 80 of 321), 0.98 (OS 16)


def test_msc_branches_are_aligned_before_the_max() -> None:
    """DeepLab v2's MSC (scales 1, 0.75, 0.5 on a 321 input): with corner alignment every
    branch's logit j sits at pixel 8j before the max; with PyTorch's default the smaller
    scales are off by up to a few pixels."""
    worst = {}
    for align in (True, False):
        net = linearised(
            recipe_net("deeplabv2_voc", msc_scales=[1.0, 0.75, 0.5], align_corners=align)
        )
        assert [scaled_length(321, s, align) for s in net.msc_scales] == [321, 241, 161]
        offsets = []
        for k in range(3):
            for j in (8, 20, 32):  # interior cells (the receptive fields fit in the image)
                at = centroid(lambda x, k=k, net=net: net.msc_branches(x)[1][k], 321, j)
                offsets.append(abs(at - 8 * j))
        worst[align] = max(offsets)
    assert worst[True] < 1e-6
    assert worst[False] > 1.0, worst


def test_tta_views_are_corner_aligned_when_asked() -> None:
    """``inference.align_corners``: a view of scale s has (H-1)*s+1 rows (TF DeepLab)."""
    sizes = []

    class Record(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            sizes.append(tuple(x.shape[-2:]))
            return x[:, :2]

    images = torch.rand(1, 3, 320, 320)
    for align in (False, True):
        predict_log_probs(Record(), images, InferenceConfig(scales=[0.5, 1.0], align_corners=align))
    assert sizes == [(160, 160), (320, 320), (161, 161), (320, 320)]


# ---------------------------------------------------------------------------------- FCN


def test_caffe_crop_offsets_are_the_reference_nets() -> None:
    """voc-fcn8s/16s/32s net.py: crop offsets 5 (pool4), 9 (pool3), 31 / 27 / 19 (output)."""
    assert caffe_crop_offsets(100, 2) == {"pool4": 5, "pool3": 9, "out": 31}
    assert caffe_crop_offsets(100, 1) == {"pool4": 5, "out": 27}
    assert caffe_crop_offsets(100, 0) == {"out": 19}


def _final_upsampling_error(input_padding: int) -> tuple[float, float]:
    """Max difference between FCN-8s' output and bilinear interpolation of the stride-8 map
    it upsamples: (at the border, inside)."""
    torch.manual_seed(0)
    net = FCN8s(3, backbone_width=4, input_padding=input_padding).double().eval()
    with torch.no_grad():  # the score layers start at zero: give them values
        for layer in (net.classifier[0], net.score_pool4, net.score_pool3):
            layer.weight.normal_()
            layer.bias.normal_()
    fused = []
    net.up_final.conv.register_forward_pre_hook(lambda m, args: fused.append(args[0]))
    size = 64
    x = torch.rand(1, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        out = net(x)
    (score,) = fused
    # fused cell w sits at input pixel 8w + b: 3.5 with "same" convs and 2x2 pools, -23.5
    # with pad 100 (caffe_crop_offsets' arithmetic)
    b = -23.5 if input_padding else 3.5
    coord = (torch.arange(size, dtype=torch.float64) - b) / 8  # coarse coordinate of pixel y
    h, w = score.shape[-2:]
    gy = 2 * coord / (h - 1) - 1
    gx = 2 * coord / (w - 1) - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    # bilinear interpolation (edge values held, as F.interpolate's)
    expected = F.grid_sample(
        score, grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    diff = (out - expected).abs().amax(dim=(0, 1))
    inner = diff[8:-8, 8:-8].max()
    return float(diff.max()), float(inner)


def test_fcn_pad_100_upsamples_bilinearly_up_to_the_border() -> None:
    """With caffe's pad=100 and crops, the fixed deconvolution is bilinear interpolation
    everywhere; seglit's "same" geometry is bilinear inside only (its border lacks the outer
    neighbour)."""
    border, inside = _final_upsampling_error(100)
    assert border < 1e-9 and inside < 1e-9
    border, inside = _final_upsampling_error(0)
    assert inside < 1e-9 and border > 1e-3, border


def test_fcn_pad_100_output_pixel_looks_at_its_input_pixel() -> None:
    """The crops put output pixel y on input pixel y: with the linearised net its gradient
    centroid is y inside the image."""
    net = linearised(FCN8s(3, backbone_width=4, input_padding=100))
    with torch.no_grad():  # linearised() zeroed the deconvolutions too: bilinear again
        from seglit.models.blocks import bilinear_kernel

        for name in ("up_pool4", "up_pool3", "up_final"):
            conv = getattr(net, name).conv
            conv.weight.copy_(bilinear_kernel(3, conv.kernel_size[0]).double())
    for y in (112, 128, 150):
        assert centroid(net, 257, y) == pytest.approx(y, abs=1e-6)


def test_fcn_input_padding_needs_the_reference_layout() -> None:
    with pytest.raises(ValueError, match="input_padding"):
        FCN8s(3, backbone="resnet18", backbone_width=4, input_padding=100)
    with pytest.raises(ValueError, match="too small"):
        FCN8s(3, backbone_width=4, input_padding=10)


# ------------------------------------------------------------- layers without parameters


def test_pool5a_is_the_prototxts_average_pool() -> None:
    """DeepLab-LargeFOV's pool5a: 3x3 stride-1 average pool after pool5 (caffe's AVE counts
    the padding), no parameters; the output size and parameter count do not change."""
    plain = DeepLabV1(3, backbone_width=4, fc_channels=8)
    pooled = DeepLabV1(3, backbone_width=4, fc_channels=8, pool5a=True)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in pooled.parameters())
    pooled.load_state_dict(plain.state_dict(), strict=True)
    pool = pooled.pool5a
    assert (pool.kernel_size, pool.stride, pool.padding, pool.count_include_pad) == (
        3,
        1,
        1,
        True,
    )
    feats = {"out": torch.rand(1, pooled.backbone.channels["out"], 5, 5)}
    plain.eval(), pooled.eval()
    with torch.no_grad():
        expected = plain.classifier(F.avg_pool2d(feats["out"], 3, 1, 1))
        torch.testing.assert_close(pooled._logits(feats), expected)
        assert not torch.allclose(plain._logits(feats), expected)


def test_unet_dropout_at_the_end_of_the_contracting_path() -> None:
    """``dropout``: element-wise dropout on the deepest level's output only; off in eval."""
    net = UNet(3, base_width=4, depth=3, dropout=0.5)
    assert isinstance(net.dropout, nn.Dropout) and net.dropout.p == 0.5
    seen = []
    net.dropout.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    x = torch.rand(2, 3, 32, 32)
    net.train()(x)
    assert seen == [torch.Size([2, 16, 8, 8])]  # the bottom of the U: 4 * 2**2 channels
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    assert UNet(3, base_width=4, depth=3).dropout is None
    with pytest.raises(ValueError, match="dropout"):
        UNet(3, dropout=1.0)


def test_fcn_learn_upsampling_skips_is_the_cvpr_papers() -> None:
    """CVPR 2015 Sec. 4.2: the x2 upsamplings are learned, the final one stays bilinear."""

    def learned(net: FCN8s) -> dict[str, bool]:
        names = ("up_pool4", "up_pool3", "up_final")
        return {n: any(p.requires_grad for p in getattr(net, n).parameters()) for n in names}

    assert learned(FCN8s(3, backbone_width=4, learn_upsampling="skips")) == {
        "up_pool4": True,
        "up_pool3": True,
        "up_final": False,
    }
    assert not any(learned(FCN8s(3, backbone_width=4, learn_upsampling=False)).values())
    assert all(learned(FCN8s(3, backbone_width=4)).values())
    with pytest.raises(ValueError, match="learn_upsampling"):
        FCN8s(3, backbone_width=4, learn_upsampling="final")
