"""Benchmark: what Lightning's ``self.log`` costs seglit, against logging straight to the loggers.

seglit logs the way Lightning documents it: ``self.log`` for the training loss every step,
Lightning's ``LearningRateMonitor`` for the learning rate, ``self.log_dict`` for the
per-class IoU of every validation (no Lightning private attributes). A path that bypasses
Lightning's result collection (``logger.log_metrics`` on the logging steps, the step taken
from the public ``trainer.global_step``) is cheaper; this script prices the difference with a
near-zero LightningModule that only logs, same Trainer, CSV logger and data for both paths.
Runs alternate; the first epoch of every run is dropped. The peak memory of a run is the
process's resident memory above its start (``common.ProcessPeak``), median over the runs of
each path but the first.

    python benchmarks/logging_cost.py            # 21 classes (VOC), 20 steps, 4 runs x 30 epochs
    python benchmarks/logging_cost.py --quick    # 2 runs x 10 epochs
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import warnings

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    ProcessPeak,
    fmt,
    print_table,
    ratio,
    ratio_interval,
    warm_median_mib,
)
from framework_overhead import EpochTimer  # noqa: E402

PATHS = ("seglit", "direct")


class LoggingOnly(L.LightningModule):
    """A one-parameter model whose only real work is logging.

    Args:
        path: ``seglit`` (``self.log`` / ``self.log_dict``, as seglit's module) or
            ``direct`` (straight to the loggers on the logging steps).
        classes: Per-class values logged at every validation's end.
    """

    def __init__(self, path: str, classes: int) -> None:
        super().__init__()
        self.path = path
        self.classes = classes
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def _direct(self, values: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_metrics({**values, "epoch": self.current_epoch}, step=self.global_step)

    def training_step(self, batch, batch_idx):  # noqa: D102
        loss = (self.weight * batch).sum()
        if self.path == "seglit":
            self.log("train/loss_step", loss.detach(), prog_bar=True)
        elif (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            lr = self.optimizers().param_groups[0]["lr"]
            self._direct({"train/loss_step": float(loss), "lr": lr})
        return loss

    def validation_step(self, batch, batch_idx) -> None:  # noqa: D102
        pass

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        per_class = {f"val/IoU/class{k}": k / self.classes for k in range(self.classes)}
        if self.path == "seglit":
            self.log_dict(per_class)
        else:
            self._direct(per_class)

    def configure_optimizers(self):  # noqa: D102
        return torch.optim.SGD(self.parameters(), lr=0.01)


def run(path: str, args: argparse.Namespace, root: str) -> list[float]:
    """One fit of ``args.epochs`` epochs; returns the epoch times after the first."""
    data = torch.utils.data.DataLoader(torch.randn(args.steps, 1), batch_size=1)
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=CSVLogger(root, name=path),
        log_every_n_steps=1,  # every step reaches the logger on both paths
        callbacks=[timer, *([LearningRateMonitor("step")] if path == "seglit" else [])],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
    )
    trainer.fit(LoggingOnly(path, args.classes), data, data)
    return timer.epochs[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=21, help="per-class values per epoch")
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each path")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (first dropped)")
    parser.add_argument("--quick", action="store_true", help="2 runs x 10 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 2, 10
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the first is warm-up), got {args.epochs}")
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    peaks: dict[str, list[int]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory(prefix="seglit-logging-") as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (workers, tiny data) is noise here
        for i in range(args.rounds):
            for path in PATHS if i % 2 == 0 else PATHS[::-1]:
                with ProcessPeak() as meter:
                    times[path] += run(path, args, root)
                if meter.peak_bytes is not None:
                    peaks[path].append(meter.peak_bytes)
    med = {path: statistics.median(t) for path, t in times.items()}
    print(
        f"one epoch: {args.steps} training steps logging one value each, one validation "
        f"logging {args.classes} per-class values, CSV logger; median of "
        f"{len(times['seglit'])} epochs per path ({args.rounds} interleaved runs)"
    )
    peak = {path: warm_median_mib(p) for path, p in peaks.items()}
    print_table(
        ["path", "median epoch ms", "min ms", "max ms", "peak MiB (run)"],
        [
            [
                path,
                fmt(1e3 * med[path]),
                fmt(1e3 * min(t)),
                fmt(1e3 * max(t)),
                fmt(peak[path], ".1f"),
            ]
            for path, t in times.items()
        ],
    )
    cost_ms = 1e3 * (med["seglit"] - med["direct"])
    per_value = cost_ms / (args.steps + args.classes)
    low, high = ratio_interval(times["seglit"], times["direct"])
    print(
        f"ratio (seglit / direct): {fmt(ratio(med['seglit'], med['direct']))}  "
        f"95% CI {low:.3f}-{high:.3f}; self.log costs {cost_ms:.1f} ms an epoch, "
        f"{per_value:.2f} ms per logged value"
    )
    print(
        f"mem ratio (seglit / direct, peak of a run): {fmt(ratio(peak['seglit'], peak['direct']))}"
    )


if __name__ == "__main__":
    main()
