"""Benchmark: seglit.crf.DenseCRF against pydensecrf2 (Krähenbühl's C++ densecrf) side by side.

Both refine the same synthetic scene (:func:`seglit.crf.synthetic_scene`: coloured Voronoi
regions, Gaussian image noise of std ``--noise``, noisy 21-class unaries) with DeepLab v2's
parameters and 10 mean-field iterations. A timed call is everything a user pays per image:
pydensecrf2's ``DenseCRF2D`` + ``unary_from_softmax`` + both pairwise terms + ``inference``
(lattice construction included), and seglit's ``DenseCRF()(probs, image)``. The two are
timed in paired, interleaved rounds (``common.interleaved``, the order alternating), on one
thread (``torch.set_num_threads(1)``; pydensecrf2 is single-threaded). Per noise level it
prints the median times, the **median of the paired ratios** seglit / pydensecrf2 (with a
bootstrap 95% interval of the ratio of medians), the fraction of pixels whose labels agree,
and the process's peak memory of one call of each (``common.ProcessPeak``) with their
ratio. With ``--device cuda`` seglit runs on the GPU and is still compared (time and labels)
with the CPU reference; without pydensecrf2 only seglit's times are printed.

    python benchmarks/crf.py                 # 375x500x21, noise 3 and 12, 7 paired rounds
    python benchmarks/crf.py --quick         # 120x160x21, 1 round (seconds)
    python benchmarks/crf.py --device cuda   # seglit on the GPU, reference on the CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ProcessPeak, fmt, interleaved, print_table, ratio, ratio_interval  # noqa: E402

from seglit.crf import DenseCRF, synthetic_scene  # noqa: E402

try:
    import pydensecrf.densecrf  # noqa: F401

    HAS_REFERENCE = True
except ImportError:
    HAS_REFERENCE = False


def reference_crf(crf: DenseCRF, probs: np.ndarray, image: np.ndarray) -> np.ndarray:
    """pydensecrf2 with ``crf``'s parameters: ``(C, H, W)`` probabilities -> ``(C, H, W)``."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    c, h, w = probs.shape
    model = dcrf.DenseCRF2D(w, h, c)
    model.setUnaryEnergy(unary_from_softmax(probs))
    model.addPairwiseGaussian(sxy=crf.gaussian_sxy, compat=crf.gaussian_weight)
    model.addPairwiseBilateral(
        sxy=crf.bilateral_sxy, srgb=crf.bilateral_srgb, rgbim=image, compat=crf.bilateral_weight
    )
    return np.asarray(model.inference(crf.iterations)).reshape(c, h, w)


def as_uint8(image: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` float 0-255 -> ``(H, W, 3)`` uint8 with DenseCRF's rounding."""
    rgb = image[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(np.round(rgb).clip(0, 255).astype(np.uint8))


def process_peak_mib(fn) -> float | None:
    with ProcessPeak() as meter:
        fn()
    return None if meter.peak_bytes is None else meter.peak_bytes / 2**20


def run(args: argparse.Namespace, noise: float, device: torch.device) -> list[str]:
    crf = DenseCRF(iterations=args.iterations)  # DeepLab v2 defaults
    probs, image, _ = synthetic_scene(args.height, args.width, args.classes, noise=noise, seed=0)
    probs_d, image_d = probs.to(device), image.to(device)
    probs_np, image_np = np.ascontiguousarray(probs[0].numpy()), as_uint8(image)
    candidates = {"seglit": lambda: crf(probs_d, image_d)}
    if args.reference:
        candidates["reference"] = lambda: reference_crf(crf, probs_np, image_np)
    samples = interleaved(
        candidates, device, warmup=args.warmup, rounds=args.rounds, measure_memory=False
    )
    ours = samples["seglit"]
    labels = crf(probs_d, image_d)[0].argmax(0).cpu().numpy()
    mem_ours = process_peak_mib(lambda: crf(probs_d, image_d)) if device.type == "cpu" else None
    if not args.reference:
        return [f"{noise:g}", f"{ours.median_s:.3f}", fmt(mem_ours, ".0f")]
    ref = samples["reference"]
    paired = statistics.median(a / b for a, b in zip(ours.seconds, ref.seconds))
    low, high = ratio_interval(ours.seconds, ref.seconds)
    ref_labels = reference_crf(crf, probs_np, image_np).argmax(0)
    agree = float((labels == ref_labels).mean())
    mem_ref = process_peak_mib(lambda: reference_crf(crf, probs_np, image_np))
    return [
        f"{noise:g}",
        f"{ours.median_s:.3f}",
        f"{ref.median_s:.3f}",
        f"{paired:.3f}",
        f"{low:.2f}-{high:.2f}",
        f"{100 * agree:.3f}",
        fmt(mem_ours, ".0f"),
        fmt(mem_ref, ".0f"),
        fmt(ratio(mem_ours, mem_ref), ".2f"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="120x160, 1 round, no warm-up")
    parser.add_argument("--device", default="cpu", help="device of seglit's CRF (cpu, cuda)")
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--noise", type=float, nargs="+", default=[3.0, 12.0])
    parser.add_argument("--rounds", type=int, default=7, help="paired timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--no-reference", dest="reference", action="store_false", help="time seglit only"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.height, args.width, args.rounds, args.warmup = 120, 160, 1, 0
    if args.reference and not HAS_REFERENCE:
        print("pydensecrf2 is not installed (pip install 'seglit[crf]'): timing seglit only")
        args.reference = False
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"DenseCRF (DeepLab v2: w_g 3, s_g 3, w_b 4, s_xy 67, s_rgb 3) on "
        f"{args.height}x{args.width}x{args.classes}, {args.iterations} iterations, "
        f"{args.rounds} paired round(s), {args.threads} CPU thread(s), seglit on {device}"
    )
    rows = [run(args, noise, device) for noise in args.noise]
    if args.reference:
        headers = [
            "noise",
            "seglit (s)",
            "pydensecrf2 (s)",
            "seglit/ref ratio",
            "95% CI",
            "agree %",
            "seglit MiB",
            "ref MiB",
            "mem ratio",
        ]
    else:
        headers = ["noise", "seglit (s)", "seglit MiB"]
    print_table(headers, rows)
    if device.type != "cpu" and args.reference:
        print(f"seglit ran on {device}, pydensecrf2 on the CPU: the ratio compares devices")
    if args.reference:
        print(
            "ratio: median over rounds of seglit/reference times of the same round; 95% CI: "
            "bootstrap of the ratio of medians; agree: pixels with the same argmax label"
        )
    print("MiB: process peak of one call above the memory held before (n/a off the CPU)")


if __name__ == "__main__":
    main()
