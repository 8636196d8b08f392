"""Benchmark: seglit's direct-to-logger metrics against Lightning's ``self.log``.

During ``fit`` seglit sends ``lr`` (every logging step) and the per-class
``val/IoU/<class>`` (every validation) straight to the loggers
(``SegmentationModule._log_to_loggers``), as Lightning's ``LearningRateMonitor`` does,
instead of through ``self.log``. This script prices that choice: a near-zero
LightningModule logs one value per training step and ``--classes`` values per validation,
once through ``self.log`` (the peer) and once through seglit's path, with the same
Trainer, CSV logger and data. Runs alternate; the first epoch of every run is dropped. The
peak memory of a run is the process's resident memory above its start
(``common.ProcessPeak``), median over the runs of each path but the first.

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

from seglit.module import SegmentationModule  # noqa: E402


class LoggingOnly(L.LightningModule):
    """A one-parameter model whose only real work is logging.

    Args:
        path: ``self_log`` (Lightning's result collection) or ``seglit`` (straight to the
            loggers, seglit's ``_log_to_loggers``).
        classes: Per-class values logged at every validation's end.
    """

    def __init__(self, path: str, classes: int) -> None:
        super().__init__()
        self.path = path
        self.classes = classes
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):  # noqa: D102
        if self.path == "self_log":
            self.log("lr", 0.01, on_step=True, on_epoch=False)
        else:
            SegmentationModule._log_to_loggers(self, {"lr": 0.01})
        return (self.weight * batch).sum()

    def validation_step(self, batch, batch_idx) -> None:  # noqa: D102
        pass

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        per_class = {f"val/IoU/class{k}": k / self.classes for k in range(self.classes)}
        if self.path == "self_log":
            self.log_dict(per_class)
        else:
            SegmentationModule._log_to_loggers(self, per_class)

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
        callbacks=[timer],
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
    times: dict[str, list[float]] = {"seglit": [], "self_log": []}
    peaks: dict[str, list[int]] = {"seglit": [], "self_log": []}
    with tempfile.TemporaryDirectory(prefix="seglit-logging-") as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (workers, tiny data) is noise here
        for i in range(args.rounds):
            for path in ("seglit", "self_log") if i % 2 == 0 else ("self_log", "seglit"):
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
    saved_ms = 1e3 * (med["self_log"] - med["seglit"])
    per_value = saved_ms / (args.steps + args.classes)
    low, high = ratio_interval(times["seglit"], times["self_log"])
    print(
        f"ratio (seglit / self.log): {fmt(ratio(med['seglit'], med['self_log']))}  "
        f"95% CI {low:.3f}-{high:.3f}; saved {saved_ms:.1f} ms an epoch, "
        f"{per_value:.2f} ms per logged value"
    )
    print(
        "mem ratio (seglit / self.log, peak of a run): "
        f"{fmt(ratio(peak['seglit'], peak['self_log']))}"
    )


if __name__ == "__main__":
    main()
