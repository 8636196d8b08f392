"""seglit.crf.DenseCRF: mean-field refinement sharpens blurred predictions at colour edges."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seglit.crf import DenseCRF

H, W = 64, 64


def two_region_scene(seed: int = 0):
    """A blue background with an orange box (sharp RGB edge) and its true label map."""
    g = torch.Generator().manual_seed(seed)
    label = torch.zeros(H, W, dtype=torch.long)
    label[16:48, 20:50] = 1
    image = torch.tensor([40.0, 60.0, 200.0]).view(3, 1, 1).repeat(1, H, W)
    image[:, label == 1] = torch.tensor([220.0, 180.0, 30.0]).view(3, 1)
    image = (image + 2.0 * torch.randn(3, H, W, generator=g)).clamp(0, 255)
    return image[None], label


def blurred_probs(box: tuple[int, int, int, int], sigma: float = 4.0) -> torch.Tensor:
    """Class-1 probability = Gaussian blur of a (misplaced) box, squeezed into [0.1, 0.9]."""
    y0, y1, x0, x1 = box
    mask = torch.zeros(1, 1, H, W)
    mask[..., y0:y1, x0:x1] = 1
    r = int(3 * sigma)
    k = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    mask = F.conv2d(mask, k.view(1, 1, -1, 1), padding=(r, 0))
    mask = F.conv2d(mask, k.view(1, 1, 1, -1), padding=(0, r))
    p1 = 0.1 + 0.8 * mask
    return torch.cat([1 - p1, p1], dim=1)


def iou(pred: torch.Tensor, label: torch.Tensor) -> float:
    inter = ((pred == 1) & (label == 1)).sum()
    union = ((pred == 1) | (label == 1)).sum()
    return (inter / union).item()


@pytest.mark.parametrize(
    "box",
    [(12, 52, 16, 54), (19, 45, 23, 47), (10, 42, 26, 56)],
    ids=["too-big", "too-small", "shifted"],
)
def test_crf_raises_iou_on_blurred_two_region_map(box):
    """Prediction = blurred, misplaced box; colours give the true edge back.

    (A CRF cannot fix a region that is mostly mislabelled: it snaps each colour region to
    its majority label, so the boxes overlap the true one by more than half.)
    """
    image, label = two_region_scene()
    probs = blurred_probs(box)
    before = iou(probs.argmax(1)[0], label)
    refined = DenseCRF(iterations=10)(probs, image)
    after = iou(refined.argmax(1)[0], label)
    assert before < 0.85
    assert after > before + 0.1
    assert after > 0.95


def test_output_is_a_distribution_and_zero_iterations_is_identity():
    image, _ = two_region_scene()
    probs = blurred_probs((12, 52, 16, 54))
    out = DenseCRF(iterations=3, window=2, dilation=3)(probs, image)
    assert out.shape == probs.shape
    torch.testing.assert_close(out.sum(1), torch.ones(1, H, W))
    assert (out >= 0).all()
    torch.testing.assert_close(DenseCRF(iterations=0)(probs, image), probs)


def test_uniform_image_and_probabilities_are_a_fixed_point():
    probs = torch.full((1, 3, 20, 20), 1 / 3)
    image = torch.full((1, 3, 20, 20), 128.0)
    torch.testing.assert_close(DenseCRF(iterations=5, window=2, dilation=2)(probs, image), probs)


def test_pairwise_weights_zero_keep_unary():
    image, _ = two_region_scene()
    probs = blurred_probs((12, 52, 16, 54))
    crf = DenseCRF(iterations=5, gaussian_weight=0.0, bilateral_weight=0.0)
    torch.testing.assert_close(crf(probs, image), probs, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"iterations": -1}, "iterations"), ({"bilateral_srgb": 0}, "bilateral_srgb")],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DenseCRF(**kwargs)


def test_bad_inputs_named():
    crf = DenseCRF(iterations=1, window=1)
    probs = torch.full((1, 2, 8, 8), 0.5)
    with pytest.raises(ValueError, match="must match probs"):
        crf(probs, torch.rand(1, 3, 4, 4) * 255)
    with pytest.raises(ValueError, match="0-255"):
        crf(probs, torch.rand(1, 3, 8, 8))
