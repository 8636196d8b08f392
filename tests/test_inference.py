"""seglit.inference: sliding window, TTA and config validation on tiny nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seglit.inference import InferenceConfig, predict_logits, slide_windows

NUM_CLASSES = 4


def conv_net(kernel_size: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(3, NUM_CLASSES, kernel_size, padding=kernel_size // 2).eval()


class DictNet(nn.Module):
    """torchvision-style: returns {"out": logits} at stride 2 (resized by the predictor)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, NUM_CLASSES, 3, stride=2, padding=1)

    def forward(self, x):
        return {"out": self.conv(x), "aux": None}


def images(n: int = 2, h: int = 37, w: int = 53, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_slide_equals_whole_when_one_window_covers_image():
    net, x = conv_net(3), images()
    whole = predict_logits(net, x, InferenceConfig(mode="whole"))
    slide = predict_logits(net, x, InferenceConfig(mode="slide", crop_size=64, stride=32))
    assert len(slide_windows(37, 53, (64, 64), (32, 32))) == 1
    torch.testing.assert_close(slide, whole, atol=1e-5, rtol=0)


def test_slide_with_overlaps_exact_for_pointwise_net():
    net, x = conv_net(1), images()
    config = InferenceConfig(mode="slide", crop_size=(16, 20), stride=(10, 7), slide_batch_size=3)
    assert len(slide_windows(37, 53, config.crop_size, config.stride)) > 6
    whole = predict_logits(net, x, InferenceConfig())
    torch.testing.assert_close(predict_logits(net, x, config), whole, atol=1e-5, rtol=0)


def test_slide_with_3x3_conv_matches_whole_away_from_window_borders():
    net, x = conv_net(3), images()
    h, w = x.shape[-2:]
    config = InferenceConfig(mode="slide", crop_size=20, stride=13)
    boxes = slide_windows(h, w, config.crop_size, config.stride)
    # A window's zero padding only changes its own border pixels (unless that is the image's).
    affected = torch.zeros(h, w, dtype=torch.bool)
    for y0, y1, x0, x1 in boxes:
        if y0 > 0:
            affected[y0, x0:x1] = True
        if y1 < h:
            affected[y1 - 1, x0:x1] = True
        if x0 > 0:
            affected[y0:y1, x0] = True
        if x1 < w:
            affected[y0:y1, x1 - 1] = True
    slide = predict_logits(net, x, config)
    whole = predict_logits(net, x, InferenceConfig())
    keep = ~affected
    assert keep.float().mean() > 0.5
    torch.testing.assert_close(slide[..., keep], whole[..., keep], atol=1e-5, rtol=0)
    assert (slide[..., affected] - whole[..., affected]).abs().max() > 1e-3


def test_slide_windows_cover_image_with_fixed_size():
    boxes = slide_windows(100, 70, (32, 32), (20, 20))
    cover = torch.zeros(100, 70)
    for y0, y1, x0, x1 in boxes:
        assert (y1 - y0, x1 - x0) == (32, 32) and y0 >= 0 and x0 >= 0
        assert y1 <= 100 and x1 <= 70
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    # Image smaller than the crop along one side: one full-height window per column.
    assert {(y0, y1) for y0, y1, _, _ in slide_windows(10, 70, (32, 32), (20, 20))} == {(0, 10)}


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_flip_tta_is_flip_consistent(mode):
    net, x = conv_net(3), images()
    config = InferenceConfig(mode=mode, crop_size=24, stride=16, flip=True)
    out = predict_logits(net, x, config)
    out_flipped = predict_logits(net, x.flip(-1), config)
    torch.testing.assert_close(out_flipped, out.flip(-1), atol=1e-5, rtol=0)
    # Without flip TTA a 3x3 conv with random weights is not flip-consistent.
    plain = InferenceConfig(mode=mode, crop_size=24, stride=16)
    diff = predict_logits(net, x.flip(-1), plain) - predict_logits(net, x, plain).flip(-1)
    assert diff.abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_multiscale_shapes_and_probabilities(mode):
    x = images(h=30, w=41)
    config = InferenceConfig(mode=mode, crop_size=16, stride=12, scales=[0.5, 0.75, 1.5], flip=True)
    out = predict_logits(DictNet().eval(), x, config)
    assert out.shape == (2, NUM_CLASSES, 30, 41)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(2, 30, 41))


def test_single_scale_output_is_log_softmax_of_logits():
    net, x = conv_net(3), images()
    torch.testing.assert_close(
        predict_logits(net, x, InferenceConfig()), torch.log_softmax(net(x), dim=1)
    )


def test_slide_log_probs_are_log_softmax_of_the_averaged_logits():
    net, x = conv_net(1), images()  # a 1x1 conv: windows agree exactly on overlaps
    config = InferenceConfig(mode="slide", crop_size=(16, 24), stride=(10, 15))
    torch.testing.assert_close(predict_logits(net, x, config), torch.log_softmax(net(x), dim=1))


class KeepsOutput(nn.Module):
    """Returns its input as 3-class logits and keeps a reference, as a forward hook may."""

    def forward(self, x):
        self.last = x
        return x


@pytest.mark.parametrize(
    "config",
    [
        InferenceConfig(),
        InferenceConfig(mode="slide", crop_size=(16, 24), stride=(10, 15)),
        InferenceConfig(flip=True, scales=[1.0, 0.5]),
    ],
    ids=["whole", "slide", "tta"],
)
def test_images_and_net_outputs_are_not_overwritten(config):
    net, x = KeepsOutput(), images()
    before = x.clone()
    predict_logits(net, x, config)
    torch.testing.assert_close(x, before, rtol=0, atol=0)


def test_multiscale_averages_probabilities():
    net, x = conv_net(1), images(h=32, w=32)
    out = predict_logits(net, x, InferenceConfig(scales=[1.0, 0.5]))
    half = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    small = nn.functional.interpolate(net(half), size=(32, 32), mode="bilinear")
    expected = ((net(x).softmax(1) + small.softmax(1)) / 2).log()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_crf_requires_raw_images_and_refines():
    net, x = conv_net(3), images(n=1, h=24, w=24)
    config = InferenceConfig(crf=True, crf_iterations=2)
    with pytest.raises(ValueError, match="raw_images"):
        predict_logits(net, x, config)
    raw = torch.rand(1, 3, 24, 24) * 255
    out = predict_logits(net, x, config, raw_images=raw)
    assert out.shape == (1, NUM_CLASSES, 24, 24)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(1, 24, 24))
    assert not torch.allclose(out, predict_logits(net, x, InferenceConfig()))


def test_yaml_style_lists_become_pairs():
    config = InferenceConfig(mode="slide", crop_size=[512, 1024], stride=[341, 682], scales=1)
    assert config.crop_size == (512, 1024) and config.stride == (341, 682)
    assert config.scales == [1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "sliding"}, "inference.mode"),
        ({"crop_size": 0}, "crop_size"),
        ({"crop_size": [1, 2, 3]}, "crop_size"),
        ({"crop_size": 32, "stride": 48}, "must not exceed crop_size"),
        ({"scales": []}, "scales"),
        ({"scales": [1.0, -0.5]}, "scales"),
        ({"flip": "yes"}, "flip"),
        ({"slide_batch_size": 0}, "slide_batch_size"),
        ({"crf": True, "crf_iterations": -1}, "crf_.*iterations"),
        ({"crf": True, "crf_bilateral_srgb": 0}, "bilateral_srgb"),
    ],
)
def test_bad_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InferenceConfig(**kwargs)


def test_bad_net_output_named():
    with pytest.raises(ValueError, match="'out'"):
        predict_logits(lambda x: {"logits": x}, images(), InferenceConfig())


class RecordsSizes(nn.Module):
    """A 1x1 conv that records the size of every view it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x)


@pytest.mark.parametrize(
    ("align_corners", "expected"),
    [
        # mmseg's Resize(scale_factor, keep_ratio): int(x + 0.5); Python's round gives 562
        (False, [(188, 250), (281, 375), (375, 500), (563, 750)]),
        # TF DeepLab / caffe: int((n - 1) * s + 0.5) + 1
        (True, [(188, 251), (282, 375), (375, 500), (562, 750)]),
    ],
)
def test_multiscale_view_sizes_round_half_up(align_corners, expected):
    net = RecordsSizes()
    config = InferenceConfig(scales=[0.5, 0.75, 1.0, 1.5], align_corners=align_corners)
    predict_logits(net, torch.randn(1, 3, 375, 500), config)
    assert net.sizes == expected
