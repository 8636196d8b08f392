"""Benchmark: the cost of seglit's framework (LightningCLI + Trainer + SegmentationModule).

One side trains through the real ``seglit fit`` path: :class:`seglit.cli.SeglitCLI` with a
YAML config (``SegmentationModule``, its metrics, Lightning's default logger with step
logging, seglit's checkpoint / run-summary / speed-monitor callbacks). The other side is a
plain PyTorch loop over the same network (a small ``seglit.models.UNet``), the same
optimizer (``seglit.optim.default_sgd``) and poly schedule, and the *same* DataLoaders
(``SyntheticVOCDataModule.train_dataloader()`` / ``val_dataloader()``), with the same seed.
Both run validation after every epoch (forward, loss, argmax, ``SegmentationMetrics``
update and compute) and both write one checkpoint per epoch (model, optimizer and
schedule state), so the only difference is the framework.

An epoch is timed from the start of its training batches to the start of the next epoch
(the last one: to the end of training), so it includes validation, logging and
checkpointing. The first epoch of every run is warm-up and dropped; runs of the two sides
alternate (seglit, raw, raw, seglit, ...). Progress bar and model summary are off on the
seglit side (terminal niceties, not training work). The peak memory of every run (the
process's resident memory above what it held before the run: ``common.ProcessPeak``) is
reported as the median over the runs of each side but the first (one-off imports and
caches).

    python benchmarks/framework_overhead.py            # 4 rounds x 6 epochs, 64 images (~1.5 min)
    python benchmarks/framework_overhead.py --quick    # 2 rounds x 3 epochs (< 3 min, 2 cores)
    python benchmarks/framework_overhead.py --set checkpoint.save_last=link  # try a setting
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch import Callback, seed_everything

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    ProcessPeak,
    fmt,
    print_table,
    ratio,
    ratio_interval,
    warm_median_mib,
)

SEED = 0


class EpochTimer(Callback):
    """Records wall-clock time at every train-epoch start and at the end of training."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: D102
        self.marks.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: D102
        self.marks.append(time.perf_counter())

    @property
    def epochs(self) -> list[float]:
        """Seconds of every epoch, in order."""
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def data_args(args: argparse.Namespace, root: Path) -> dict:
    return {
        "root": str(root),
        "num_train": args.num_train,
        "num_val": args.num_val,
        "batch_size": args.batch_size,
        "crop_size": args.crop,
        "num_workers": 0,
    }


def net_args(args: argparse.Namespace) -> dict:
    return {"base_width": args.base_width, "depth": args.depth}


def run_seglit(args: argparse.Namespace, root: Path, workdir: Path) -> list[float]:
    """One ``seglit fit`` run of ``args.epochs`` epochs; returns the epoch times."""
    from seglit.cli import SeglitCLI

    config = {
        "seed_everything": SEED,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": args.epochs,
            "precision": "32-true",
            "log_every_n_steps": args.log_every,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(workdir),
        },
        "model": {"net": {"class_path": "seglit.models.UNet", "init_args": net_args(args)}},
        "data": {
            "class_path": "seglit.data.SyntheticVOCDataModule",
            "init_args": data_args(args, root),
        },
    }
    workdir.mkdir(parents=True, exist_ok=True)
    for key, value in args.set:
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    timer = EpochTimer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (workers, log interval) is noise here
        SeglitCLI(args=["fit", "--config", str(path)], trainer_defaults={"callbacks": [timer]})
    return timer.epochs


def run_raw(args: argparse.Namespace, root: Path) -> list[float]:
    """The same training and validation as a plain loop; returns the epoch times."""
    from seglit.data import SyntheticVOCDataModule
    from seglit.metrics import SegmentationMetrics
    from seglit.models import UNet
    from seglit.optim import PolyLR, default_sgd

    seed_everything(SEED, verbose=False)
    data = SyntheticVOCDataModule(**data_args(args, root))
    data.prepare_data()
    data.setup("fit")
    net = UNet(data.num_classes, **net_args(args))
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    optimizer = default_sgd([p for p in net.parameters() if p.requires_grad])
    scheduler = PolyLR(optimizer, power=0.9, total_iters=args.epochs * len(train_loader))
    metrics = SegmentationMetrics(data.num_classes, ignore_index=255)
    times = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        net.train()
        for batch in train_loader:
            loss = F.cross_entropy(net(batch["image"]), batch["mask"], ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        net.eval()
        metrics.reset()
        with torch.no_grad():
            for batch in val_loader:
                masks = batch["mask"]
                logits = net(batch["image"])
                if logits.shape[-2:] != masks.shape[-2:]:
                    logits = F.interpolate(logits, masks.shape[-2:], mode="bilinear")
                F.cross_entropy(logits, masks, ignore_index=255)
                metrics.update(logits.argmax(1), masks)
        metrics.compute()
        # A real loop checkpoints every epoch too (seglit writes last.ckpt each epoch).
        checkpoint = {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
        }
        torch.save(checkpoint, root / "raw_last.pt")
        times.append(time.perf_counter() - start)
    return times


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="runs of each side")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (first dropped)")
    parser.add_argument("--num-train", type=int, default=64)
    parser.add_argument("--num-val", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--base-width", type=int, default=16, help="UNet base width")
    parser.add_argument("--depth", type=int, default=4, help="UNet depth")
    parser.add_argument("--log-every", type=int, default=2, help="trainer.log_every_n_steps")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: see docs/performance.md; 0 = torch's default)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="extra seglit config entry (dotted key, YAML value), e.g. checkpoint.save_last=link",
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds x 3 epochs, 32 images")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.num_train, args.num_val = 2, 3, 32, 8
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the first is warm-up), got {args.epochs}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="seglit-overhead-") as tmp:
        root = Path(tmp) / "data"
        from seglit.data import write_synthetic_voc

        write_synthetic_voc(root, num_train=args.num_train, num_val=args.num_val, seed=SEED)
        times: dict[str, list[float]] = {"seglit": [], "raw": []}
        peaks: dict[str, list[int]] = {"seglit": [], "raw": []}
        for i in range(args.rounds):
            for side in ("seglit", "raw") if i % 2 == 0 else ("raw", "seglit"):
                with ProcessPeak() as meter:
                    if side == "seglit":
                        epochs = run_seglit(args, root, Path(tmp) / f"run{i}")
                    else:
                        epochs = run_raw(args, root)
                times[side] += epochs[1:]  # drop the warm-up epoch
                if meter.peak_bytes is not None:
                    peaks[side].append(meter.peak_bytes)
    med = {side: statistics.median(t) for side, t in times.items()}
    print(
        f"one epoch: UNet(base_width={args.base_width}, depth={args.depth}), "
        f"{args.num_train} train / {args.num_val} val synthetic images, batch {args.batch_size}, "
        f"crop {args.crop}, {torch.get_num_threads()} threads; median of "
        f"{len(times['seglit'])} epochs per side ({args.rounds} interleaved runs, "
        "first epoch of each dropped)"
    )
    peak = {side: warm_median_mib(p) for side, p in peaks.items()}
    print_table(
        ["path", "median epoch s", "min s", "max s", "peak MiB (run)"],
        [
            [side, fmt(med[side]), fmt(min(t)), fmt(max(t)), fmt(peak[side], ".1f")]
            for side, t in times.items()
        ],
    )
    # epoch k of run i of one side is paired with epoch k of run i of the other
    low, high = ratio_interval(times["seglit"], times["raw"])
    print(
        f"ratio (seglit fit / raw loop): {fmt(ratio(med['seglit'], med['raw']))}  "
        f"95% CI {low:.3f}-{high:.3f} (bootstrap over paired epochs)  (goal <= 1.05)"
    )
    print(
        f"mem ratio (seglit fit / raw loop, peak resident memory of a run): "
        f"{fmt(ratio(peak['seglit'], peak['raw']))}"
    )


if __name__ == "__main__":
    main()
