"""Fully-connected CRF post-processing (DeepLab v1/v2) on the permutohedral lattice, in torch.

The model is Krähenbühl & Koltun's dense CRF (NeurIPS 2011) with a Potts compatibility, as
implemented by their C++ ``densecrf`` code and its Python binding ``pydensecrf``
(``DenseCRF2D`` + ``addPairwiseGaussian`` + ``addPairwiseBilateral``, default
``DIAG_KERNEL`` / ``NORMALIZE_SYMMETRIC``), whose conventions are matched exactly:

- unary ``U = -log(clamp(P, 1e-5, 1))`` (pydensecrf's ``unary_from_softmax``);
- two Gaussian kernels over **all** pixel pairs, self pair included:
  appearance-free ``k_g(i, j) = exp(-|f_i - f_j|^2 / 2)`` on ``f = (x, y) / gaussian_sxy``
  and bilateral ``k_b`` on ``f = (x / bilateral_sxy, y / bilateral_sxy, r / bilateral_srgb,
  g / bilateral_srgb, b / bilateral_srgb)``, with ``x`` the column, ``y`` the row and
  ``(r, g, b)`` the image as **uint8**: the float 0-255 input is quantised with
  ``image.round().clamp(0, 255)`` (round half to even, the array
  ``np.round(image).clip(0, 255).astype(np.uint8)`` one would hand to pydensecrf);
- symmetric normalisation: ``norm = 1 / sqrt(K 1)`` and the message of a kernel is
  ``norm * K(norm * Q)`` (``K 1`` and ``K Q`` by the same lattice filter, so its
  approximation error largely cancels);
- Potts compatibility and the mean-field step of ``densecrf.cpp``'s ``inference``:
  ``Q_0 = softmax(-U)``, ``Q_{t+1} = softmax(-U + w_g * msg_g(Q_t) + w_b * msg_b(Q_t))``.

``K`` is computed as in Adams, Baek & Davis (2010) and densecrf's ``permutohedral.cpp``:
each feature vector is elevated onto the ``d``-dimensional hyperplane of ``R^(d+1)`` (scale
``sqrt(2/3) (d+1) / sqrt((i+1)(i+2))`` for coordinate ``i``), rounded to the nearest
remainder-0 lattice point, and its simplex (rank of the residuals) and barycentric weights
give ``d+1`` lattice vertices. **Splat** adds each pixel's value to its vertices with its
barycentric weights, **blur** convolves the lattice with ``[0.5, 1, 0.5]`` along each of the
``d+1`` lattice directions in turn (neighbours ``key - 1 + (d+1) e_j`` and its opposite;
missing neighbours count as 0), **slice** reads the vertices back with the same weights
(densecrf's constant ``alpha`` cancels under symmetric normalisation). The elevation is
computed in float32 in the C++ operation order, so the lattice is the one pydensecrf builds.

Torch form: the C++ hash table is replaced by integer keys (one mixed-radix digit per
coordinate, plus the image index so that a batch is one lattice of disjoint per-image parts
and gives exactly what its images give one by one; int32 when they fit, else int64) and one
stable ``torch.sort``; blur neighbours are found with ``torch.searchsorted`` on the sorted
keys. Splat, each blur direction and slice are sparse CSR matrices built once per call, with
both kernels stacked (their normalisations and weights folded into the splat and slice
values), so a mean-field iteration is ``2 + (d+1)`` sparse-dense products (``torch.addmm``
into reused buffers) and a softmax over ``(pixels, classes)`` rows, computed as
``P * exp(msg)`` normalised (``exp(-U) = P``; the max-shifted softmax when the messages could
overflow ``exp``). The same code runs on CPU and CUDA; results are deterministic on the CPU.

Defaults (``DenseCRF()`` == :meth:`DenseCRF.deeplab_v2`) are DeepLab v2's PASCAL VOC values
(Chen et al., TPAMI 2018; ``deeplab-public-ver2``, ResNet-101): ``w_b = 4``, ``s_xy = 67``,
``s_rgb = 3``, ``w_g = 3``, ``s_g = 3``, 10 iterations. :meth:`DenseCRF.deeplab_v1` uses
DeepLab v1's (Chen et al., ICLR 2015; ``deeplab-public``'s DeepLab-CRF-LargeFOV settings)
``w_b = 4``, ``s_xy = 121``, ``s_rgb = 5``, ``w_g = 3``, ``s_g = 3``, 10 iterations (the
paper fixes ``w_g = s_g = 3`` and 10 iterations and cross-validates the bilateral three).
See ``docs/evaluation.md`` for the measured agreement with pydensecrf2 and with an exact
O(N^2) dense CRF, and ``benchmarks/crf.py`` for speed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["DEEPLAB_V1", "DEEPLAB_V2", "CRFParams", "DenseCRF", "synthetic_scene"]

UNARY_CLIP = 1e-5  # pydensecrf.utils.unary_from_softmax's default ``clip``
_MAX_KEY = 2**62  # packed lattice keys (with the blur neighbours' margin) must stay below this


def _sparse_csr(crow: Tensor, col: Tensor, val: Tensor, size: tuple[int, int]) -> Tensor:
    """A CSR matrix from trusted, already valid parts (no invariant checks, no copies)."""
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)


class _Lattice:
    """The permutohedral lattice of ``B`` images' feature vectors.

    Args:
        features: ``(d, B, P)`` float32 feature vectors (already divided by their stds).

    Attributes:
        size: number of lattice points ``M``.
        dim: feature dimension ``d``.
        pixels: number of pixels ``B * P``.
        weight: ``(d + 1, B * P)`` float32 barycentric weights of each pixel's simplex
            vertices (they sum to 1).
        vertex: ``(d + 1, B * P)`` int32 lattice index of each pixel's simplex vertices.
        order, starts: the vertex entries (``r * B * P + pixel``) sorted by lattice point
            (stable) and where each point's entries start: the splat matrix in CSR form.
        neighbours: ``(d + 1, 2, M)`` int64 blur neighbours ``n1, n2`` per direction, -1
            if absent.
    """

    def __init__(self, features: Tensor) -> None:
        d, b, p = features.shape
        dev = features.device
        n, d1 = b * p, d + 1
        f = features.reshape(d, n)  # one contiguous row per feature
        self.dim = d
        # Elevation onto the hyperplane (float32, densecrf's operation order).
        inv_std = float(np.float32(math.sqrt(2.0 / 3.0) * d1))
        scale = [float(np.float32(1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std)) for i in range(d)]
        elev = torch.empty(d1, n, device=dev)
        total = torch.zeros(n, device=dev)
        for j in range(d, 0, -1):
            cf = f[j - 1] * scale[j - 1]
            torch.sub(total, cf * float(j), out=elev[j])
            total += cf
        elev[0] = total
        # Nearest remainder-0 point: each coordinate rounded to a multiple of d+1, a * (d+1).
        down = float(np.float32(1.0 / d1))
        a = torch.round(elev * down)
        residual = elev - a * float(d1)
        # rank[i]: position of residual i in a stable descending order (the C++ pair loop:
        # rank[i] += [r_i < r_j], rank[j] += 1 - [r_i < r_j] for i < j), plus sum(a).
        rank = a.sum(0).expand(d1, n) + torch.arange(d1, device=dev, dtype=elev.dtype)[:, None]
        less = torch.empty(n, device=dev)
        for i in range(d):
            for j in range(i + 1, d1):
                torch.lt(residual[i], residual[j], out=less)
                rank[i] += less
                rank[j] -= less
        # Bring the point back onto the plane (coordinates summing to 0).
        wrap = (rank < 0).float().sub_((rank >= d1).float())
        a += wrap
        rank.add_(wrap, alpha=d1)
        # Barycentric weights (Adams et al. p. 10): +v_i at slot d - rank_i, -v_i at the
        # next slot, the last slot wrapping onto the first: with s the v in slot order,
        # b_0 = s_0 + (1 - s_d) and b_t = s_t - s_{t-1} (densecrf's float operations).
        v = (elev - a * float(d1)).mul_(down)
        slot = rank.neg().add_(d).long()  # a permutation of 0..d per pixel
        s = torch.empty_like(v).scatter_(0, slot, v)
        self.weight = torch.empty_like(v)
        torch.sub(s[1:], s[:-1], out=self.weight[1:])
        torch.add(s[0], torch.rsub(s[d], 1.0), out=self.weight[0])
        self.pixels = n

        # Vertex r of the simplex: key_k = (d+1) a_k + r - (d+1) [rank_k > d - r] (k < d).
        # Every coordinate of a key is r modulo d+1, so a key is packed as the mixed-radix
        # digits (a_k - [rank_k > d - r] - low_k) and r (least significant), with the image
        # index on top. Digit ranges have a margin of 1-2 so that blur neighbours (key - 1
        # +- (d+1) on one coordinate) pack without carries.
        a_int = a[:d].long()
        low = a_int.amin(1) - 2
        span = (a_int.amax(1) - low + 2).tolist()
        mult = [d1] * d
        for k in range(d - 2, -1, -1):
            mult[k] = mult[k + 1] * span[k + 1]
        image_mult = mult[0] * span[0]
        if image_mult * b >= _MAX_KEY:
            raise ValueError(
                "DenseCRF: the scaled features span too many lattice cells to pack into int64 "
                "keys; use larger sxy / srgb"
            )
        mult_t = torch.tensor(mult, dtype=torch.long, device=dev)
        base = a_int[d - 1] * mult[d - 1]
        for k in range(d - 1):
            base.add_(a_int[k], alpha=mult[k])
        base -= sum(lo * mu for lo, mu in zip(low.tolist(), mult))
        if b > 1:
            base += torch.arange(b, device=dev).repeat_interleave(p) * image_mult
        # sum_k mult_k [rank_k > d - r] = sum over slots t < r of the digit at slot t
        # (slot = d - rank; the last coordinate has no digit): a cumulative sum over slots.
        by_slot = torch.zeros(d1, n, dtype=torch.long, device=dev)
        by_slot.scatter_(0, slot, torch.cat([mult_t, mult_t.new_zeros(1)])[:, None].expand(-1, n))
        wraps = by_slot.cumsum_(0)
        keys = torch.empty(d1, n, dtype=torch.long, device=dev)
        keys[0] = base
        for r in range(1, d1):
            torch.sub(base, wraps[r - 1], out=keys[r]).add_(r)

        # Unique keys by one stable sort: lattice points in key order, and the splat matrix's
        # rows. Entries are vertex-major (r * BP + pixel); a lattice point's entries are in
        # (r, pixel) order, the same for an image alone or in a batch.
        flat = keys.view(-1)
        if image_mult * b < 2**31:
            flat = flat.int()  # sorting int32 is about twice as fast
        sorted_keys, perm = torch.sort(flat, stable=True)
        new = torch.ones_like(sorted_keys, dtype=torch.bool)
        torch.ne(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
        point = new.cumsum(0, dtype=torch.int32).sub_(1)
        self.order, self.starts = perm, new.nonzero().view(-1)
        m = self.size = self.starts.numel()
        unique = sorted_keys[self.starts]
        self.vertex = torch.empty(d1, n, dtype=torch.int32, device=dev)
        self.vertex.view(-1)[perm] = point

        # Blur neighbours: n1 = key - 1 on every coordinate, + (d+1) on coordinate j (for
        # j = d only the implicit last one), i.e. digits: r - 1 and a_j + 1 if r > 0, else
        # r = d and a_k - 1 for k != j. n2 is n1's inverse relation: scattered, with the
        # misses sent to a spare last slot.
        r_point = unique % d1
        shifted = torch.where(r_point == 0, unique + (d - sum(mult)), unique - 1)
        self.neighbours = torch.empty(d1, 2, m + 1, dtype=torch.long, device=dev)
        ids = torch.arange(m, device=dev)
        for j in range(d1):
            query = shifted + (mult[j] if j < d else 0)
            pos = torch.searchsorted(unique, query).clamp_(max=m - 1)
            found = unique[pos] == query
            self.neighbours[j, 0, :m] = torch.where(found, pos, -1)
            self.neighbours[j, 1].fill_(-1).scatter_(0, torch.where(found, pos, m), ids)
        self.neighbours = self.neighbours[:, :, :m]


class _Filter:
    """Splat, blur and slice of several lattices over the same pixels, as CSR matrices.

    The kernels' lattice points are stacked (``M`` rows in all) plus one last row that
    stays 0 and stands for every missing blur neighbour, so each blur matrix has exactly
    three entries per row (self 1, neighbours 0.5). Splat and slice values start as the
    barycentric weights; :meth:`normalize` folds each kernel's symmetric normalisation and
    Potts weight into them, after which ``filter(x)`` is
    ``sum_k w_k norm_k * K_k(norm_k * x)``.

    Args:
        lattices: the kernels' lattices over the same pixels.
    """

    def __init__(self, lattices: list[_Lattice]) -> None:
        dev = lattices[0].weight.device
        self.pixels = pixels = lattices[0].pixels
        offsets, total = [], 0
        for lat in lattices:
            offsets.append(total)
            total += lat.size
        self.rows = rows = total + 1  # the last row is the zero "missing neighbour"
        nnz = sum(lat.order.numel() for lat in lattices)
        width = sum(lat.dim + 1 for lat in lattices)
        big = max(3 * rows, nnz, pixels * width) >= 2**31
        index = dict(dtype=torch.int64 if big else torch.int32, device=dev)
        # splat (rows, pixels): the kernels' row blocks one after the other
        crow = torch.full((rows + 1,), nnz, **index)
        col = torch.empty(nnz, **index)
        val = torch.empty(nnz, device=dev)
        pixel_of = torch.arange(pixels, **index).repeat(max(lat.dim for lat in lattices) + 1)
        # slice (pixels, rows): each pixel's row lists every kernel's d+1 vertices
        cols = torch.empty(pixels, width, **index)
        vals = torch.empty(pixels, width, device=dev)
        self._blocks = []  # per kernel: (splat entries, slice columns) for normalize()
        start = column = 0
        for lat, off in zip(lattices, offsets):
            entries, columns = (
                slice(start, start + lat.order.numel()),
                slice(column, column + lat.dim + 1),
            )
            crow[off : off + lat.size] = lat.starts + start
            torch.index_select(pixel_of, 0, lat.order, out=col[entries])
            torch.index_select(lat.weight.view(-1), 0, lat.order, out=val[entries])
            cols[:, columns] = lat.vertex.t() + off
            vals[:, columns] = lat.weight.t()
            self._blocks.append((entries, columns))
            start, column = entries.stop, columns.stop
        self.splat = _sparse_csr(crow, col, val, (rows, pixels))
        crow_slice = torch.arange(0, pixels * width + 1, width, **index)
        self.slice = _sparse_csr(crow_slice, cols.view(-1), vals.view(-1), (pixels, rows))
        self._cols = self.slice.col_indices().view(pixels, width)  # the matrix's own storage
        self._vals = self.slice.values().view(pixels, width)
        # blur: one matrix per direction; the blocks of lower-dimensional kernels only keep
        # their self entry
        blur_crow = torch.arange(0, 3 * rows + 1, 3, **index)
        blur_crow[-1] = 3 * total  # the sentinel row has no entries
        blur_val = torch.tensor([1.0, 0.5, 0.5], device=dev).repeat(total)
        self.blurs = []
        for j in range(max(lat.dim for lat in lattices) + 1):
            c = torch.full((total, 3), total, **index)
            c[:, 0] = torch.arange(total, **index)
            for lat, off in zip(lattices, offsets):
                if j <= lat.dim:
                    n = lat.neighbours[j].t()
                    c[off : off + lat.size, 1:] = torch.where(n >= 0, n + off, total)
            self.blurs.append(_sparse_csr(blur_crow, c.view(-1), blur_val, (rows, rows)))

    def filter(self, x: Tensor, values: Tensor, spare: Tensor, out: Tensor) -> Tensor:
        """Splat ``x (pixels, C)``, blur, slice into ``out``; ``values``, ``spare``: scratch."""
        values = self._splat_and_blur(x, values, spare)
        return torch.addmm(out, self.slice, values, beta=0.0, out=out)

    def _splat_and_blur(self, x: Tensor, values: Tensor, spare: Tensor) -> Tensor:
        """``x`` splatted onto the lattice and blurred along every axis (in ``values`` or
        ``spare``, whichever holds the result)."""
        torch.addmm(values, self.splat, x, beta=0.0, out=values)
        for blur in self.blurs:
            torch.addmm(spare, blur, values, beta=0.0, out=spare)
            values, spare = spare, values
        return values

    def normalize(self, weights: list[float]) -> Tensor:
        """Fold ``norm_k = (K_k 1)^-1/2`` and ``w_k`` in; returns ``sum_k w_k norm_k K_k norm_k``.

        ``K_k 1`` is the unnormalised filter of ones sliced with kernel ``k``'s vertices only.
        The returned per-pixel value bounds the message of any ``Q`` in ``[0, 1]``.
        """
        ones = self._vals.new_ones(self.pixels, 1)
        spare = ones.new_zeros(self.rows, 1)
        values = self._splat_and_blur(ones, torch.zeros_like(spare), spare).view(-1)
        splat_val, splat_col = self.splat.values(), self.splat.col_indices()
        for (entries, columns), weight in zip(self._blocks, weights):
            vals = self._vals[:, columns]
            norm = (values[self._cols[:, columns]] * vals).sum(1).rsqrt()  # NORMALIZE_SYMMETRIC
            splat_val[entries] *= norm[splat_col[entries]]
            vals *= (norm * weight)[:, None]
        values, spare, bound = torch.zeros_like(spare), torch.zeros_like(spare), ones.clone()
        return self.filter(ones, values, spare, bound).view(-1)


@dataclass(frozen=True)
class CRFParams:
    """Values of :class:`DenseCRF`'s arguments (same names); the defaults are DeepLab v2's.

    The one place the defaults are written: :class:`DenseCRF`'s arguments and the ``crf_*``
    fields of :class:`seglit.inference.InferenceConfig` take theirs from :data:`DEEPLAB_V2`.
    """

    iterations: int = 10
    gaussian_weight: float = 3.0
    gaussian_sxy: float = 3.0
    bilateral_weight: float = 4.0
    bilateral_sxy: float = 67.0
    bilateral_srgb: float = 3.0


DEEPLAB_V2 = CRFParams()
"""DeepLab v2's VOC values (Chen et al., TPAMI 2018; ``deeplab-public-ver2`` ResNet-101):
``w_b = 4, s_xy = 67, s_rgb = 3, w_g = 3, s_g = 3``, 10 iterations."""
DEEPLAB_V1 = CRFParams(bilateral_sxy=121.0, bilateral_srgb=5.0)
"""DeepLab v1's VOC values (Chen et al., ICLR 2015; ``deeplab-public``):
``w_b = 4, s_xy = 121, s_rgb = 5, w_g = 3, s_g = 3``, 10 iterations: DeepLab-CRF-LargeFOV's
cross-validated ``w_1, sigma_alpha, sigma_beta`` (the paper fixes ``w_2 = sigma_gamma = 3``)."""


class DenseCRF(nn.Module):
    """Mean-field dense CRF refinement of class probabilities (pydensecrf's algorithm).

    The defaults are :data:`DEEPLAB_V2`'s.

    Args:
        iterations: mean-field steps (DeepLab: 10).
        gaussian_weight: ``w_g``, Potts weight of the appearance-free kernel (DeepLab: 3).
        gaussian_sxy: its spatial std in pixels (DeepLab: 3).
        bilateral_weight: ``w_b``, Potts weight of the bilateral kernel (DeepLab: 4).
        bilateral_sxy: its spatial std in pixels (DeepLab v2: 67, v1: 121).
        bilateral_srgb: its colour std on the 0-255 scale (DeepLab v2: 3, v1: 5).
    """

    def __init__(
        self,
        iterations: int = DEEPLAB_V2.iterations,
        gaussian_weight: float = DEEPLAB_V2.gaussian_weight,
        gaussian_sxy: float = DEEPLAB_V2.gaussian_sxy,
        bilateral_weight: float = DEEPLAB_V2.bilateral_weight,
        bilateral_sxy: float = DEEPLAB_V2.bilateral_sxy,
        bilateral_srgb: float = DEEPLAB_V2.bilateral_srgb,
    ) -> None:
        super().__init__()
        checks = {
            "iterations": (iterations, iterations >= 0),
            "gaussian_weight": (gaussian_weight, gaussian_weight >= 0),
            "gaussian_sxy": (gaussian_sxy, gaussian_sxy > 0),
            "bilateral_weight": (bilateral_weight, bilateral_weight >= 0),
            "bilateral_sxy": (bilateral_sxy, bilateral_sxy > 0),
            "bilateral_srgb": (bilateral_srgb, bilateral_srgb > 0),
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

    @classmethod
    def from_params(cls, params: CRFParams) -> DenseCRF:
        """The CRF with the values of ``params``."""
        return cls(**asdict(params))

    @classmethod
    def deeplab_v2(cls, iterations: int = DEEPLAB_V2.iterations) -> DenseCRF:
        """:data:`DEEPLAB_V2`'s values (the constructor's defaults), ``iterations`` steps."""
        return cls.from_params(replace(DEEPLAB_V2, iterations=iterations))

    @classmethod
    def deeplab_v1(cls, iterations: int = DEEPLAB_V1.iterations) -> DenseCRF:
        """:data:`DEEPLAB_V1`'s values, ``iterations`` steps."""
        return cls.from_params(replace(DEEPLAB_V1, iterations=iterations))

    def extra_repr(self) -> str:
        return (
            f"iterations={self.iterations}, gaussian_weight={self.gaussian_weight}, "
            f"gaussian_sxy={self.gaussian_sxy}, bilateral_weight={self.bilateral_weight}, "
            f"bilateral_sxy={self.bilateral_sxy}, bilateral_srgb={self.bilateral_srgb}"
        )

    def _features(self, image: Tensor) -> list[tuple[Tensor, float]]:
        """``[(features (d, N, H*W), weight)]`` of the kernels with a non-zero weight."""
        n, _, h, w = image.shape
        dev = image.device
        xs = torch.arange(w, device=dev, dtype=torch.float32).repeat(h)
        ys = torch.arange(h, device=dev, dtype=torch.float32).repeat_interleave(w)
        xy = torch.stack([xs, ys])[:, None, :]  # densecrf's order: (x, y), pixel y * W + x
        kernels = []
        if self.gaussian_weight > 0:
            kernels.append(((xy / self.gaussian_sxy).expand(-1, n, -1), self.gaussian_weight))
        if self.bilateral_weight > 0:
            rgb = image.round().clamp_(0, 255).transpose(0, 1).reshape(3, n, h * w)  # as uint8
            feats = torch.cat(
                [(xy / self.bilateral_sxy).expand(-1, n, -1), rgb / self.bilateral_srgb]
            )
            kernels.append((feats, self.bilateral_weight))
        return kernels

    @torch.no_grad()
    def forward(self, probs: Tensor, image: Tensor) -> Tensor:
        """Refine class probabilities.

        Args:
            probs: ``(N, C, H, W)`` class probabilities (softmax output).
            image: ``(N, 3, H, W)`` RGB image, float on the 0-255 scale, same N, H, W;
                quantised to uint8 values by ``round().clamp(0, 255)``.

        Returns:
            ``(N, C, H, W)`` refined probabilities (sum to 1 over C), float32.
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
        n, c, h, w = probs.shape
        hw, pixels = h * w, n * h * w
        if pixels == 0:
            return probs.clone()
        low, high = torch.aminmax(image)
        if high <= 1.0 and low >= 0.0 and high > 0:
            # A 0-1 image would make the 0-255 colour std (3-5) meaningless.
            raise ValueError("DenseCRF: image looks like 0-1 floats; pass RGB on the 0-255 scale")
        # quantised in its own precision: float32 would move a float64 133.49999 to 133.5 -> 134
        image = (image.round() if image.is_floating_point() else image).to(probs)
        # (pixels, C) rows. P = clamp(probs, 1e-5, 1) = exp(-U), Q_0 = softmax(-U) = P / sum P
        clamped = probs.new_empty(n, h, w, c)
        torch.clamp(probs.permute(0, 2, 3, 1), UNARY_CLIP, 1.0, out=clamped)
        clamped = clamped.view(pixels, c)
        ones = probs.new_ones(c, 1)
        row_sum = probs.new_empty(pixels, 1)
        q = clamped / torch.mm(clamped, ones, out=row_sum)
        kernels = self._features(image)
        if self.iterations > 0 and kernels:
            q = self._mean_field(clamped, q, kernels)
        out = probs.new_empty(n, c, h, w)
        for i in range(n):  # (HW, C) -> (C, HW): torch's blocked transpose copy
            out[i].view(c, hw).copy_(q[i * hw : (i + 1) * hw].t())
        return out

    def _mean_field(
        self, clamped: Tensor, q: Tensor, kernels: list[tuple[Tensor, float]]
    ) -> Tensor:
        """``iterations`` mean-field steps from ``q``; ``clamped`` is ``exp(-U)``."""
        filt = _Filter([_Lattice(feats) for feats, _ in kernels])
        bound = filt.normalize([weight for _, weight in kernels])
        values = q.new_zeros(filt.rows, q.shape[1])
        spare = torch.zeros_like(values)
        msg = torch.zeros_like(q)
        ones = q.new_ones(q.shape[1], 1)
        row_sum = q.new_empty(q.shape[0], 1)
        # softmax(-U + msg) = P * exp(msg) / row sum, with P = exp(-U) >= 1e-5 and
        # 0 <= msg <= bound: no float32 overflow (e^88) or underflow while
        # bound + log(C) < 80. Otherwise the usual max-shifted softmax.
        direct = bool(bound.max() < 80.0 - math.log(max(q.shape[1], 1)))
        neg_unary = None if direct else clamped.log()
        for _ in range(self.iterations):
            filt.filter(q, values, spare, msg)
            if neg_unary is None:
                torch.exp(msg, out=q).mul_(clamped)
                q.div_(torch.mm(q, ones, out=row_sum))
            else:
                q = torch.softmax(msg.add_(neg_unary), dim=1)
        return q


def synthetic_scene(
    height: int = 375,
    width: int = 500,
    num_classes: int = 21,
    noise: float = 3.0,
    regions: int = 12,
    unary_noise: float = 1.5,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """A deterministic test scene for the CRF: coloured regions, noisy image, noisy unaries.

    Regions are the Voronoi cells of ``regions`` random seeds, each with a random class and
    a random colour in ``[30, 225]^3``; the image adds Gaussian noise of std ``noise`` and
    is clamped to 0-255 (float). The probabilities are ``softmax(2 * onehot(label) +
    unary_noise * N(0, 1))``: the true class is the argmax on a majority of pixels, not all.

    Args:
        height: image height.
        width: image width.
        num_classes: number of classes ``C``.
        noise: std of the image noise (0-255 scale).
        regions: number of piecewise-constant regions.
        unary_noise: std of the logit noise of the unaries.
        seed: seed of the scene (same seed, same scene on every platform).

    Returns:
        ``(probs (1, C, H, W), image (1, 3, H, W) float 0-255, label (H, W) int64)``.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(regions, 2, generator=g) * torch.tensor([height, width])
    region_class = torch.randint(0, num_classes, (regions,), generator=g)
    region_colour = 30 + 195 * torch.rand(regions, 3, generator=g)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    grid = torch.stack([ys, xs], dim=-1).view(-1, 1, 2)
    region = ((grid - centres) ** 2).sum(-1).argmin(1).view(height, width)
    label = region_class[region]
    image = region_colour[region].permute(2, 0, 1)
    image = (image + noise * torch.randn(image.shape, generator=g)).clamp(0, 255)
    onehot = torch.nn.functional.one_hot(label, num_classes).permute(2, 0, 1).float()
    logits = 2.0 * onehot + unary_noise * torch.randn(onehot.shape, generator=g)
    return torch.softmax(logits, dim=0)[None], image[None], label
