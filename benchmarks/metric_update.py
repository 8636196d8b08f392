"""Benchmark: SegmentationMetrics.update vs torchmetrics MulticlassJaccardIndex.update.

Both get the same (N, 21, 512, 512) logits with void (255) pixels; the accumulated confusion
matrices and the mIoU are asserted identical, then median update times are measured with
the two metrics interleaved (after a warm-up), with and without
``torch.use_deterministic_algorithms(True)`` (what ``Trainer(deterministic=True)`` sets).
The peak tensor memory of one more update of each is measured after the timed rounds
(``common.PeakMemory``: exact on the CPU).

    python benchmarks/metric_update.py          # N=8, 6 timed rounds
    python benchmarks/metric_update.py --quick  # N=2, 256x256, 2 rounds (a check that it runs)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from seglit.metrics import SegmentationMetrics

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory  # noqa: E402

NUM_CLASSES = 21


def make_batch(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, NUM_CLASSES, (n, size, size), generator=g)
    target[torch.rand(n, size, size, generator=g) < 0.05] = 255
    logits = torch.randn(n, NUM_CLASSES, size, size, generator=g)
    return logits, target


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_bytes(update) -> int:
    """Peak tensor memory of one ``update()`` above what was held before."""
    with PeakMemory(torch.device("cpu"), prime=update) as meter:
        update()
    assert meter.peak_bytes is not None
    return meter.peak_bytes


def run(n: int, size: int, rounds: int, deterministic: bool) -> tuple[float, float, int, int]:
    """Median update seconds and peak update bytes of seglit and torchmetrics."""
    logits, target = make_batch(n, size)
    ours = SegmentationMetrics(num_classes=NUM_CLASSES)
    peer = MulticlassJaccardIndex(num_classes=NUM_CLASSES, ignore_index=255)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        # Warm-up and correctness: one update each, then compare.
        ours.update(logits, target)
        peer.update(logits, target)
        torch.testing.assert_close(ours.confmat, peer.confmat.long(), rtol=0, atol=0)
        ours_miou, peer_miou = ours.compute()["mIoU"].item(), peer.compute().item()
        assert abs(ours_miou - peer_miou) < 1e-6, (ours_miou, peer_miou)
        t_ours, t_peer = [], []
        for i in range(rounds):
            first_ours = i % 2 == 0  # alternate who goes first
            for is_ours in (first_ours, not first_ours):
                if is_ours:
                    t_ours.append(timed(lambda: ours.update(logits, target)))
                else:
                    t_peer.append(timed(lambda: peer.update(logits, target)))
        torch.testing.assert_close(ours.confmat, peer.confmat.long(), rtol=0, atol=0)
        mem_ours = peak_bytes(lambda: ours.update(logits, target))
        mem_peer = peak_bytes(lambda: peer.update(logits, target))
    finally:
        torch.use_deterministic_algorithms(previous)
    return statistics.median(t_ours), statistics.median(t_peer), mem_ours, mem_peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=2, 256x256, 2 rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, rounds, size = (2, 2, 256) if args.quick else (8, 6, 512)
    print(
        f"update() on {n}x{NUM_CLASSES}x{size}x{size} float32 logits, {args.threads} threads, "
        f"median of {rounds} interleaved rounds after warm-up"
    )
    print(
        f"{'deterministic':<14}{'seglit (ms)':>13}{'torchmetrics (ms)':>19}{'seglit/peer':>13}"
        f"{'seglit MiB':>12}{'torchmetrics MiB':>18}{'mem ratio':>11}"
    )
    for deterministic in (False, True):
        ours, peer, mem_ours, mem_peer = run(n, size, rounds, deterministic)
        print(
            f"{str(deterministic):<14}{ours * 1e3:>13.1f}{peer * 1e3:>19.1f}{ours / peer:>13.3f}"
            f"{mem_ours / 2**20:>12.1f}{mem_peer / 2**20:>18.1f}{mem_ours / mem_peer:>11.3f}"
        )
    print("peak = tensor memory one update() allocates above what was held before it")


if __name__ == "__main__":
    main()
