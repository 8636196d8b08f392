"""Fully-connected CRF post-processing (DeepLab v1/v2), mean-field inference in torch.

The model is Krähenbühl & Koltun's (NeurIPS 2011) dense CRF with a Potts compatibility:

    E(x) = sum_i -log P_i(x_i)
         + sum_{i<j} [x_i != x_j] * ( w_b * exp(-|p_i-p_j|^2 / 2 s_xy_b^2 - |I_i-I_j|^2 / 2 s_rgb^2)
                                    + w_g * exp(-|p_i-p_j|^2 / 2 s_xy_g^2) )

and one mean-field step is ``Q <- softmax(log P + w_g * K_g Q + w_b * K_b Q)`` (the Potts
term turns into a reward for agreeing with similar neighbours). Kernels are symmetrically
normalised, ``D^-1/2 K D^-1/2`` without the self term, as in pydensecrf's default
``NORMALIZE_SYMMETRIC``, so a message is a weighted neighbour average in [0, 1].

Exact dense message passing costs O((HW)^2) and the permutohedral lattice has no plain
torch form, so the kernels are truncated:

- Gaussian (appearance-free) kernel: separable convolution with radius ``3 * gaussian_sxy``
  (exact up to the 3-sigma cut-off).
- Bilateral kernel: a sparse local window, neighbours at offsets ``dilation * (dy, dx)`` with
  ``|dy|, |dx| <= window``, weights computed exactly from full-resolution positions and
  colours. Reach is ``window * dilation`` pixels (default 5 * 5 = 25 px), far less than
  DeepLab's ``s_xy`` of 67-121 px, so long-range bilateral messages are dropped; within the
  window the spatial term is evaluated with the given ``bilateral_sxy``. This is the
  truncation ConvCRF (Teichmann & Cipolla, 2018) showed to be close to the full CRF, with
  dilation instead of ConvCRF's downsampling so edges stay at full resolution.

Cost per iteration is O(N * C * H * W * (2*window+1)^2); see ``docs/evaluation.md`` for
measured times.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DenseCRF"]

_MAX_ENERGY = 40.0  # kernel values below e^-40 (4e-18) are treated as 0


class DenseCRF(nn.Module):
    """Mean-field dense CRF refinement of class probabilities.

    Args:
        iterations: mean-field steps (DeepLab: 10).
        gaussian_weight: ``w_g`` of the appearance-free smoothness kernel (DeepLab: 3).
        gaussian_sxy: its spatial std in pixels (DeepLab: 3).
        bilateral_weight: ``w_b`` of the appearance kernel (DeepLab: 4).
        bilateral_sxy: its spatial std in pixels (DeepLab v2: 67, v1: 121); only the part
            inside the window is used (see module docstring).
        bilateral_srgb: its colour std on the 0-255 scale (DeepLab: 3-5).
        window: bilateral window radius in neighbour steps (``(2*window+1)^2 - 1``
            neighbours).
        dilation: pixel spacing between bilateral neighbours.
    """

    def __init__(
        self,
        iterations: int = 10,
        gaussian_weight: float = 3.0,
        gaussian_sxy: float = 3.0,
        bilateral_weight: float = 4.0,
        bilateral_sxy: float = 67.0,
        bilateral_srgb: float = 3.0,
        window: int = 5,
        dilation: int = 5,
    ) -> None:
        super().__init__()
        checks = {
            "iterations": (iterations, iterations >= 0),
            "gaussian_weight": (gaussian_weight, gaussian_weight >= 0),
            "gaussian_sxy": (gaussian_sxy, gaussian_sxy > 0),
            "bilateral_weight": (bilateral_weight, bilateral_weight >= 0),
            "bilateral_sxy": (bilateral_sxy, bilateral_sxy > 0),
            "bilateral_srgb": (bilateral_srgb, bilateral_srgb > 0),
            "window": (window, window >= 1),
            "dilation": (dilation, dilation >= 1),
        }
        for name, (value, ok) in checks.items():
            if not ok:
                raise ValueError(f"DenseCRF: invalid {name}={value!r}")
        self.iterations = int(iterations)
        self.gaussian_weight = float(gaussian_weight)
        self.gaussian_sxy = float(gaussian_sxy)
        self.bilateral_weight = float(bilateral_weight)
        self.bilateral_sxy = float(bilateral_sxy)
        self.bilateral_srgb = float(bilateral_srgb)
        self.window = int(window)
        self.dilation = int(dilation)

    # -- kernels -----------------------------------------------------------------------

    def _gaussian_filter(self, x: Tensor) -> Tensor:
        """Separable Gaussian filter of every channel (zero padding), self term included."""
        radius = max(1, math.ceil(3 * self.gaussian_sxy))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-(t**2) / (2 * self.gaussian_sxy**2))
        c = x.shape[1]
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)
        return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)

    def _offsets(self) -> list[tuple[int, int]]:
        r, d = self.window, self.dilation
        return [
            (dy * d, dx * d)
            for dy in range(-r, r + 1)
            for dx in range(-r, r + 1)
            if (dy, dx) != (0, 0)
        ]

    def _bilateral_weights(self, image: Tensor) -> Tensor:
        """Kernel value to each window neighbour: (N, K, H, W), 0 outside the image."""
        n, _, h, w = image.shape
        reach = self.window * self.dilation
        padded = F.pad(image, (reach, reach, reach, reach))
        inside = F.pad(image.new_ones(n, 1, h, w), (reach, reach, reach, reach))
        weights = []
        for dy, dx in self._offsets():
            ys, xs = slice(reach + dy, reach + dy + h), slice(reach + dx, reach + dx + w)
            colour = ((image - padded[:, :, ys, xs]) ** 2).sum(1, keepdim=True)
            energy = (dy * dy + dx * dx) / (2 * self.bilateral_sxy**2) + colour / (
                2 * self.bilateral_srgb**2
            )
            # Cut negligible weights to exactly 0: products of e^-80-sized weights with small
            # probabilities are subnormal floats, which are ~100x slower on x86 CPUs.
            weight = torch.where(energy < _MAX_ENERGY, torch.exp(-energy), 0.0)
            weights.append(weight * inside[:, :, ys, xs])
        return torch.cat(weights, dim=1)

    def _bilateral_filter(self, x: Tensor, weights: Tensor) -> Tensor:
        """sum_j k(i, j) x_j over the window neighbours (self excluded)."""
        h, w = x.shape[-2:]
        reach = self.window * self.dilation
        padded = F.pad(x, (reach, reach, reach, reach))
        out = torch.zeros_like(x)
        for k, (dy, dx) in enumerate(self._offsets()):
            ys, xs = slice(reach + dy, reach + dy + h), slice(reach + dx, reach + dx + w)
            out.addcmul_(weights[:, k : k + 1], padded[:, :, ys, xs])
        return out

    # -- inference ---------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, probs: Tensor, image: Tensor) -> Tensor:
        """Refine class probabilities.

        Args:
            probs: ``(N, C, H, W)`` class probabilities (softmax output).
            image: ``(N, 3, H, W)`` RGB image, float on the 0-255 scale, same H, W.

        Returns:
            ``(N, C, H, W)`` refined probabilities (sum to 1 over C).
        """
        if probs.ndim != 4 or image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(
                f"DenseCRF expects probs (N, C, H, W) and image (N, 3, H, W), got "
                f"{tuple(probs.shape)} and {tuple(image.shape)}"
            )
        if probs.shape[0] != image.shape[0] or probs.shape[2:] != image.shape[2:]:
            raise ValueError(
                f"DenseCRF: image {tuple(image.shape)} must match probs {tuple(probs.shape)} "
                "in batch size and spatial size (pass the raw image at the output resolution)"
            )
        probs = probs.float()
        image = image.to(probs)
        if image.max() <= 1.0 and image.min() >= 0.0 and image.amax() > 0:
            # A 0-1 image would make the 0-255 colour std (3-5) meaningless.
            raise ValueError("DenseCRF: image looks like 0-1 floats; pass RGB on the 0-255 scale")
        log_p = probs.clamp(min=1e-8).log()
        q = probs / probs.sum(1, keepdim=True).clamp(min=1e-8)
        if self.iterations == 0:
            return q

        ones = probs.new_ones(probs.shape[0], 1, *probs.shape[2:])
        # Symmetric normalisation: D^-1/2 K D^-1/2 with D the kernel's row sums (no self term).
        g_norm = (self._gaussian_filter(ones) - 1.0).clamp(min=1e-8).rsqrt()
        b_weights = self._bilateral_weights(image)
        b_norm = b_weights.sum(1, keepdim=True).clamp(min=1e-8).rsqrt()

        for _ in range(self.iterations):
            message = torch.zeros_like(q)
            if self.gaussian_weight > 0:
                gq = q * g_norm
                smooth = self._gaussian_filter(gq) - gq  # drop the self term
                message += self.gaussian_weight * g_norm * smooth
            if self.bilateral_weight > 0:
                bq = self._bilateral_filter(q * b_norm, b_weights)
                message += self.bilateral_weight * b_norm * bq
            q = torch.softmax(log_p + message, dim=1)
        return q
