"""Test-time inference: whole image, sliding window, multi-scale and flip TTA, DenseCRF.

Follows mmsegmentation's conventions:

- Sliding window: windows of ``crop_size`` every ``stride`` pixels, the last window shifted
  back to end at the image border; overlapping **logits** are summed and divided by the
  number of windows covering each pixel. An image smaller than the crop (along a side) is
  one window of the image's size along that side (no padding).
- Test-time augmentation (scales x flips): each view's logits are resized (bilinear) to
  the input size, turned into softmax **probabilities**, and the probabilities are averaged
  (mmseg ``SegTTAModel.merge_preds``).

:func:`predict_logits` always returns **log-probabilities** ``log_softmax`` (or the log of
the averaged / CRF-refined probabilities). Their argmax is the prediction, and
``F.cross_entropy(out, target)`` on them equals the cross-entropy of the raw logits when no
TTA is used, because ``log_softmax`` is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglit.crf import DEEPLAB_V2, CRFParams, DenseCRF
from seglit.models.blocks import scaled_length

__all__ = [
    "InferenceConfig",
    "predict_log_probs",
    "predict_logits",
    "refine_with_crf",
    "slide_windows",
]


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError(f"inference.{name} must be an int or [height, width], got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"inference.{name} must be an int or [height, width], got {value!r}")
    if min(value) < 1:
        raise ValueError(f"inference.{name} must be positive, got {value!r}")
    return value


@dataclass
class InferenceConfig:
    """How validation/test/predict turn images into per-pixel class scores.

    Set from YAML as ``model.inference.mode: slide`` etc. The ``crf_*`` fields are
    :class:`seglit.crf.DenseCRF`'s arguments of the same name, with its defaults
    (:data:`seglit.crf.DEEPLAB_V2`).

    Args:
        mode: ``"whole"`` (one forward pass per image) or ``"slide"`` (sliding window).
        crop_size: sliding-window size, an int or ``[height, width]`` (e.g. ``[512, 1024]``
            for Cityscapes).
        stride: sliding-window step, an int or ``[height, width]``; at most ``crop_size`` so
            every pixel is covered.
        scales: image scale factors for multi-scale TTA (mmseg's 0.5-1.75 sweep:
            ``[0.5, 0.75, 1.0, 1.25, 1.5, 1.75]``).
        flip: also predict the horizontally flipped image (flipped back before averaging).
        slide_batch_size: windows stacked into one forward pass in slide mode (each holding
            the whole image batch). 1, mmseg's choice, is fastest on CPU; larger values can
            help a GPU with small crops.
        align_corners: corner-aligned bilinear resizes of the multi-scale views and of
            logits at another size than the input (TF DeepLab's evaluation: a view of scale
            ``s`` has ``(H - 1) * s + 1`` rows, so pixel ``u`` of it is pixel ``u / s`` of the
            image); false (mmseg's) resizes with ``align_corners=False``.
        crf: refine the averaged probabilities with :class:`seglit.crf.DenseCRF`
            (needs the raw RGB images).
        crf_iterations: mean-field iterations.
        crf_gaussian_weight: weight of the appearance-free Gaussian kernel.
        crf_gaussian_sxy: its spatial std (pixels).
        crf_bilateral_weight: weight of the bilateral kernel.
        crf_bilateral_sxy: its spatial std (pixels).
        crf_bilateral_srgb: its colour std (0-255 scale).
    """

    mode: Literal["whole", "slide"] = "whole"
    crop_size: int | tuple[int, int] = 512
    stride: int | tuple[int, int] = 341
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    slide_batch_size: int = 1
    align_corners: bool = False
    crf: bool = False
    crf_iterations: int = DEEPLAB_V2.iterations
    crf_gaussian_weight: float = DEEPLAB_V2.gaussian_weight
    crf_gaussian_sxy: float = DEEPLAB_V2.gaussian_sxy
    crf_bilateral_weight: float = DEEPLAB_V2.bilateral_weight
    crf_bilateral_sxy: float = DEEPLAB_V2.bilateral_sxy
    crf_bilateral_srgb: float = DEEPLAB_V2.bilateral_srgb

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"inference.mode must be 'whole' or 'slide', got {self.mode!r}")
        self.crop_size = _pair("crop_size", self.crop_size)
        self.stride = _pair("stride", self.stride)
        if self.stride[0] > self.crop_size[0] or self.stride[1] > self.crop_size[1]:
            raise ValueError(
                f"inference.stride {list(self.stride)} must not exceed crop_size "
                f"{list(self.crop_size)}: pixels between windows would get no prediction"
            )
        if isinstance(self.scales, (int, float)):
            self.scales = [self.scales]
        self.scales = list(self.scales)
        if not self.scales or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in self.scales
        ):
            raise ValueError(
                "inference.scales must be a non-empty list of positive numbers, "
                f"got {self.scales!r}"
            )
        self.scales = [float(s) for s in self.scales]
        if not all(isinstance(v, bool) for v in (self.flip, self.crf, self.align_corners)):
            raise ValueError(
                "inference.flip, inference.crf and inference.align_corners must be true/false, "
                f"got flip={self.flip!r}, crf={self.crf!r}, align_corners={self.align_corners!r}"
            )
        if not isinstance(self.slide_batch_size, int) or self.slide_batch_size < 1:
            raise ValueError(
                f"inference.slide_batch_size must be a positive int, got {self.slide_batch_size!r}"
            )
        if self.crf:
            self.build_crf()  # validates the crf_* values now rather than at the first batch

    def build_crf(self) -> DenseCRF:
        """The :class:`DenseCRF` described by the ``crf_*`` fields."""
        params = {f.name: getattr(self, f"crf_{f.name}") for f in fields(CRFParams)}
        try:
            return DenseCRF(**params)
        except ValueError as err:
            raise ValueError(f"inference.crf_*: {err}") from None


# seglit now saves the settings as a dict; checkpoints of older versions (or of a module
# built in Python and saved by a plain Trainer) pickled the dataclass itself. Lightning reads
# checkpoints with ``weights_only=True`` (hyperparameters for --ckpt_path, then the restore):
# allow this plain dataclass there.
torch.serialization.add_safe_globals([InferenceConfig])


def _forward(net: nn.Module, x: Tensor, align_corners: bool = False) -> Tensor:
    """net(x) as logits at x's size (accepts a dict with "out", e.g. torchvision models)."""
    out = net(x)
    if isinstance(out, dict):
        if "out" not in out:
            raise ValueError(f"net returned a dict without an 'out' key (keys: {list(out)})")
        out = out["out"]
    if out.ndim != 4 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"net must map (N, 3, H, W) to logits (N, C, H, W); got {tuple(out.shape)} for "
            f"input {tuple(x.shape)}"
        )
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
    return out


def slide_windows(
    height: int, width: int, crop_size: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """Window boxes ``(y0, y1, x0, x1)`` covering an image, mmseg-style.

    Windows start every ``stride`` pixels; the last one is shifted back to end at the border;
    a side shorter than the crop gets one window of that side's length. All windows have
    the same size ``(min(crop_h, height), min(crop_w, width))``.
    """
    boxes = []
    ch, cw = min(crop_size[0], height), min(crop_size[1], width)
    sh, sw = stride
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    for r in range(rows):
        y1 = min(r * sh + ch, height)
        for c in range(cols):
            x1 = min(c * sw + cw, width)
            boxes.append((y1 - ch, y1, x1 - cw, x1))
    return boxes


def _slide_logits(net: nn.Module, images: Tensor, config: InferenceConfig) -> Tensor:
    """Overlap-averaged logits of all windows."""
    n, _, h, w = images.shape
    boxes = slide_windows(h, w, config.crop_size, config.stride)
    logits: Tensor | None = None
    count = images.new_zeros(1, 1, h, w)
    for start in range(0, len(boxes), config.slide_batch_size):
        chunk = boxes[start : start + config.slide_batch_size]
        crops = [images[:, :, y0:y1, x0:x1] for y0, y1, x0, x1 in chunk]
        crops = crops[0] if len(crops) == 1 else torch.cat(crops)
        out = _forward(net, crops, config.align_corners)
        if logits is None:
            logits = out.new_zeros(n, out.shape[1], h, w)
        for k, (y0, y1, x0, x1) in enumerate(chunk):
            logits[:, :, y0:y1, x0:x1] += out[k * n : (k + 1) * n]
            count[:, :, y0:y1, x0:x1] += 1
    assert logits is not None
    return logits.div_(count)  # in place: no second full-resolution C x H x W buffer


def _view_logits(net: nn.Module, images: Tensor, config: InferenceConfig) -> Tensor:
    if config.mode == "slide":
        return _slide_logits(net, images, config)
    return _forward(net, images, config.align_corners)


@torch.no_grad()
def predict_log_probs(net: nn.Module, images: Tensor, config: InferenceConfig) -> Tensor:
    """The network's per-pixel class log-probabilities at the images' size, before any CRF.

    Applies ``config``'s mode (whole / slide) and test-time augmentation (scales x flips:
    probabilities averaged over the views).

    Args:
        net: maps ``(N, 3, H, W)`` to logits ``(N, C, h, w)`` (or a dict with ``"out"``);
            logits at another size are resized bilinearly to the input size.
        images: normalised network input ``(N, 3, H, W)``.
        config: inference mode and TTA settings (``config.crf`` is ignored here).

    Returns:
        ``(N, C, H, W)`` log-probabilities.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if config.scales == [1.0] and not config.flip:
        logits = _view_logits(net, images, config).float()
        if config.mode == "slide":  # our own buffer: log_softmax in place, one C x H x W less
            return logits.sub_(torch.logsumexp(logits, dim=1, keepdim=True))
        return torch.log_softmax(logits, dim=1)  # the net's own output: never overwritten
    probs: Tensor | None = None
    n_views = 0
    align = config.align_corners
    for scale in config.scales:
        size = (scaled_length(h, scale, align), scaled_length(w, scale, align))
        scaled = images
        if size != (h, w):
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=align)
        for flip in (False, True) if config.flip else (False,):
            view = scaled.flip(-1) if flip else scaled
            logits = _view_logits(net, view, config)
            if flip:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=align)
            p = torch.softmax(logits.float(), dim=1)
            probs = p if probs is None else probs.add_(p)
            n_views += 1
    assert probs is not None
    return probs.div_(n_views).clamp_(min=1e-12).log_()


@torch.no_grad()
def refine_with_crf(log_probs: Tensor, raw_images: Tensor, config: InferenceConfig) -> Tensor:
    """Refine log-probabilities with the dense CRF of ``config``; returns log-probabilities.

    Args:
        log_probs: ``(N, C, H, W)`` from :func:`predict_log_probs`.
        raw_images: ``(N, 3, H, W)`` RGB on the 0-255 scale at the same size.
        config: the ``crf_*`` settings.
    """
    if raw_images.shape[0] != log_probs.shape[0] or raw_images.shape[-2:] != log_probs.shape[-2:]:
        raise ValueError(
            f"raw_images {tuple(raw_images.shape)} must match the predictions "
            f"{tuple(log_probs.shape)} in batch and spatial size"
        )
    refined = config.build_crf().to(log_probs.device)(log_probs.exp(), raw_images)
    return refined.clamp(min=1e-12).log()


def predict_logits(
    net: nn.Module,
    images: Tensor,
    config: InferenceConfig,
    raw_images: Tensor | None = None,
) -> Tensor:
    """Per-pixel class log-probabilities at the images' resolution, CRF included when on.

    Args:
        net: maps ``(N, 3, H, W)`` to logits ``(N, C, h, w)`` (or a dict with ``"out"``);
            logits at another size are resized bilinearly to the input size.
        images: normalised network input ``(N, 3, H, W)``.
        config: inference mode, TTA and CRF settings.
        raw_images: ``(N, 3, H, W)`` RGB on the 0-255 scale (float), needed when
            ``config.crf`` is on (the bilateral kernel compares colours).

    Returns:
        ``(N, C, H, W)`` log-probabilities (see the module docstring); use ``argmax(1)`` for
        labels and upsample to the label's original size before scoring.
    """
    if config.crf and raw_images is None:
        raise ValueError(
            "inference.crf is on but no raw_images were given: DenseCRF needs the "
            "unnormalised RGB images (0-255) at the same size as images"
        )
    log_probs = predict_log_probs(net, images, config)
    if config.crf:
        assert raw_images is not None
        log_probs = refine_with_crf(log_probs, raw_images, config)
    return log_probs
