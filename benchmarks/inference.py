"""Benchmark: seglit sliding-window inference and the cost of flip / multi-scale TTA.

A tiny conv net (so the bookkeeping, not the network, is what is measured) on one
1024x2048 Cityscapes-sized image (crop 512x1024, stride 341x682; ``--quick`` quarters all
three). ``seglit`` is :func:`seglit.inference.predict_logits`;
``peer`` is the plain loop a researcher would write: one window at a time, logits summed
into a buffer and divided by a count map. Their outputs are asserted equal. TTA rows are
compared with seglit's single-view slide inference. Every row also gives the peak tensor
memory of one call (``common.PeakMemory``: exact on the CPU). The dense CRF has its own
benchmark, ``benchmarks/crf.py``.

    python benchmarks/inference.py          # 1024x2048, 3 timed rounds, mmseg's 6 scales
    python benchmarks/inference.py --quick  # 256x512, 4 rounds, 2 scales (a check that it runs)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory, ratio_interval  # noqa: E402

from seglit.inference import InferenceConfig, predict_logits, slide_windows  # noqa: E402

NUM_CLASSES = 19


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, NUM_CLASSES, 1)
    ).eval()


@torch.no_grad()
def per_window_loop(net: nn.Module, image: torch.Tensor, crop, stride) -> torch.Tensor:
    """The reference: one forward per window, overlap-averaged, then log_softmax."""
    n, _, h, w = image.shape
    logits = image.new_zeros(n, NUM_CLASSES, h, w)
    count = image.new_zeros(1, 1, h, w)
    for y0, y1, x0, x1 in slide_windows(h, w, crop, stride):
        logits[:, :, y0:y1, x0:x1] += net(image[:, :, y0:y1, x0:x1])
        count[:, :, y0:y1, x0:x1] += 1
    return torch.log_softmax(logits / count, dim=1)


def median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mib(fn) -> float:
    """Peak tensor memory of one call of ``fn`` above what was held before, in MiB."""
    with PeakMemory(torch.device("cpu"), prime=fn) as meter:
        fn()
    assert meter.peak_bytes is not None
    return meter.peak_bytes / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256x512, 4 rounds, 2 scales")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds = 1 if args.quick else 3  # TTA rows
    compare_rounds = 4 if args.quick else 10  # seglit vs peer, interleaved
    scales = [0.5, 1.0] if args.quick else [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    h, w = (256, 512) if args.quick else (1024, 2048)
    crop, stride = (h // 2, w // 2), (h // 3, w // 3)

    net = tiny_net()
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    slide = InferenceConfig(mode="slide", crop_size=crop, stride=stride)
    n_windows = len(slide_windows(h, w, crop, stride))

    # Warm-up and correctness.
    ours = predict_logits(net, image, slide)
    torch.testing.assert_close(ours, per_window_loop(net, image, crop, stride), atol=1e-5, rtol=0)

    # Interleave seglit and the loop (alternating order) so load changes hit both.
    t_ours, t_peer = [], []
    for i in range(compare_rounds):
        first_ours = i % 2 == 0  # alternate who goes first
        for is_ours in (first_ours, not first_ours):
            if is_ours:
                t_ours.append(median_time(lambda: predict_logits(net, image, slide), 1))
            else:
                t_peer.append(median_time(lambda: per_window_loop(net, image, crop, stride), 1))
    base, peer = statistics.median(t_ours), statistics.median(t_peer)

    print(
        f"1x3x{h}x{w} image, tiny conv net, crop {crop} stride {stride} ({n_windows} "
        f"windows), {args.threads} threads, median of {compare_rounds} "
        f"rounds (TTA rows: {rounds})"
    )
    mem = peak_mib(lambda: predict_logits(net, image, slide))
    mem_peer = peak_mib(lambda: per_window_loop(net, image, crop, stride))
    print(
        f"{'variant':<34}{'seglit (s)':>11}{'peer (s)':>10}{'seglit/peer':>13}{'x slide':>9}"
        f"{'seglit MiB':>12}{'peer MiB':>10}{'mem ratio':>11}"
    )
    print(
        f"{'slide':<34}{base:>11.3f}{peer:>10.3f}{base / peer:>13.3f}{1.0:>9.2f}"
        f"{mem:>12.1f}{mem_peer:>10.1f}{mem / mem_peer:>11.3f}"
    )
    low, high = ratio_interval(t_ours, t_peer)

    def row(name: str, config: InferenceConfig) -> None:
        t = median_time(lambda: predict_logits(net, image, config), rounds)
        mib = peak_mib(lambda: predict_logits(net, image, config))
        print(f"{name:<34}{t:>11.3f}{'-':>10}{'-':>13}{t / base:>9.2f}{mib:>12.1f}")

    row("whole", InferenceConfig())
    variants = {
        "slide + flip": InferenceConfig(mode="slide", crop_size=crop, stride=stride, flip=True),
        f"slide + {len(scales)} scales": InferenceConfig(
            mode="slide", crop_size=crop, stride=stride, scales=scales
        ),
        f"slide + {len(scales)} scales + flip": InferenceConfig(
            mode="slide", crop_size=crop, stride=stride, scales=scales, flip=True
        ),
    }
    for name, config in variants.items():
        row(name, config)
    print(f"scales: {scales}; peak = tensor memory one call allocates above what was held before")
    print(f"slide seglit/peer 95% CI (bootstrap over the paired rounds): {low:.3f}-{high:.3f}")


if __name__ == "__main__":
    main()
