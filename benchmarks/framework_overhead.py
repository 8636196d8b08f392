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

Time is measured in **paired epochs**: inside every ``seglit fit`` run, just before each
of its training epochs, one epoch of the raw loop runs in the same process (from a
callback, untimed for seglit). A seglit epoch is timed from the start of its training
batches to the start of the next epoch (the last one: to the end of training), so it
includes validation, logging and checkpointing; the raw epoch next to it is timed the same
way. Pairs run seconds apart, so the machine's slow drifts (other tenants, clocks) hit
both sides alike. The first pair of every run is warm-up and dropped.

A third side, **Lightning alone** (:class:`BareModule`: the raw loop's training and
validation as the smallest LightningModule, no logging, no seglit callbacks, Lightning's
``ModelCheckpoint`` writing ``last.ckpt``), is paired with the raw loop the same way in
runs of its own, alternating with seglit's. It splits the overhead into Lightning's own
loop and what seglit adds on top (the ratio of the two paired ratios).

Peak memory is measured in separate runs of each side (alternating, after the timed ones):
the process's resident memory above what it held before the run (``common.ProcessPeak``),
the median over the runs of each side but the first. Progress bar and model summary are
off on the seglit side (terminal niceties, not training work).

    python benchmarks/framework_overhead.py            # 4 runs x 7 paired epochs each (~4 min)
    python benchmarks/framework_overhead.py --quick    # 1 run x 2 paired epochs (a check)
    python benchmarks/framework_overhead.py --set trainer.log_every_n_steps=50  # try a setting
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

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
    """Records the wall-clock seconds of every training epoch of a fit.

    An epoch runs from its ``on_train_epoch_start`` to the next one (the last: to
    ``on_train_end``), so its validation, logging and checkpointing are inside it.

    Args:
        before_epoch: Called at every epoch start before the epoch's clock starts (so its
            time is in no epoch); the raw loop's paired epochs run here.
    """

    def __init__(self, before_epoch: Callable[[], None] | None = None) -> None:
        self.before_epoch = before_epoch
        self.epochs: list[float] = []
        self._start: float | None = None

    def _end_epoch(self) -> None:
        if self._start is not None:
            self.epochs.append(time.perf_counter() - self._start)
            self._start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: D102
        self._end_epoch()
        if self.before_epoch is not None:
            self.before_epoch()
        self._start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: D102
        self._end_epoch()


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


def run_seglit(
    args: argparse.Namespace, root: Path, workdir: Path, timer: EpochTimer | None = None
) -> list[float]:
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
    timer = timer or EpochTimer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (workers, log interval) is noise here
        SeglitCLI(args=["fit", "--config", str(path)], trainer_defaults={"callbacks": [timer]})
    return timer.epochs


def train_loss(net: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The training loss of one batch (raw loop and ``BareModule``)."""
    return F.cross_entropy(net(batch["image"]), batch["mask"], ignore_index=255)


def score_batch(net: torch.nn.Module, batch: dict, metrics) -> None:
    """The validation work of one batch (raw loop and ``BareModule``).

    Forward, logits at the label's size, loss, argmax and metric update.
    """
    masks = batch["mask"]
    logits = net(batch["image"])
    if logits.shape[-2:] != masks.shape[-2:]:
        logits = F.interpolate(logits, masks.shape[-2:], mode="bilinear")
    F.cross_entropy(logits, masks, ignore_index=255)
    metrics.update(logits.argmax(1), masks)


class RawLoop:
    """The same training and validation as a plain PyTorch loop, one epoch per call."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        from seglit.data import SyntheticVOCDataModule
        from seglit.metrics import SegmentationMetrics
        from seglit.models import UNet
        from seglit.optim import PolyLR, default_sgd

        seed_everything(SEED, verbose=False)
        data = SyntheticVOCDataModule(**data_args(args, root))
        data.prepare_data()
        data.setup("fit")
        self.checkpoint_path = root / "raw_last.pt"
        self.net = UNet(data.num_classes, **net_args(args))
        self.train_loader, self.val_loader = data.train_dataloader(), data.val_dataloader()
        self.optimizer = default_sgd([p for p in self.net.parameters() if p.requires_grad])
        self.scheduler = PolyLR(
            self.optimizer, power=0.9, total_iters=args.epochs * len(self.train_loader)
        )
        self.metrics = SegmentationMetrics(data.num_classes, ignore_index=255)
        self.epoch = 0

    def run_epoch(self) -> float:
        """Train one epoch, validate, write the checkpoint; returns the seconds it took."""
        start = time.perf_counter()
        net, optimizer, scheduler, metrics = self.net, self.optimizer, self.scheduler, self.metrics
        net.train()
        with torch.enable_grad():
            for batch in self.train_loader:
                loss = train_loss(net, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
        net.eval()
        metrics.reset()
        with torch.no_grad():
            for batch in self.val_loader:
                score_batch(net, batch, metrics)
        metrics.compute()
        # A real loop checkpoints every epoch too (seglit writes last.ckpt each epoch).
        checkpoint = {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": self.epoch,
        }
        torch.save(checkpoint, self.checkpoint_path)
        self.epoch += 1
        return time.perf_counter() - start


def run_raw(args: argparse.Namespace, root: Path) -> list[float]:
    """``args.epochs`` epochs of the raw loop alone; returns the epoch times."""
    loop = RawLoop(args, root)
    return [loop.run_epoch() for _ in range(args.epochs)]


def run_paired(
    framework: str, args: argparse.Namespace, root: Path, workdir: Path
) -> dict[str, list[float]]:
    """One fit (``seglit`` or ``lightning``) with a raw-loop epoch just before each epoch.

    Returns:
        The epoch times of the framework and of ``raw``; index k of one is paired with index
        k of the other.
    """
    loop = RawLoop(args, root)
    raw: list[float] = []
    timer = EpochTimer(before_epoch=lambda: raw.append(loop.run_epoch()))
    fit = run_seglit if framework == "seglit" else run_bare
    return {framework: fit(args, root, workdir, timer=timer), "raw": raw}


class BareModule(LightningModule):
    """The raw loop's training and validation as the smallest LightningModule.

    No ``self.log``, no metrics in the module's state beyond ``SegmentationMetrics``, no
    seglit callbacks: what Lightning's own loop costs, with nothing seglit adds.
    """

    def __init__(self, num_classes: int, args: argparse.Namespace) -> None:
        super().__init__()
        from seglit.metrics import SegmentationMetrics
        from seglit.models import UNet

        self.net = UNet(num_classes, **net_args(args))
        self.metrics = SegmentationMetrics(num_classes, ignore_index=255)

    def training_step(self, batch, batch_idx):  # noqa: D102
        return train_loss(self.net, batch)

    def validation_step(self, batch, batch_idx) -> None:  # noqa: D102
        score_batch(self.net, batch, self.metrics)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self.metrics.compute()
        self.metrics.reset()

    def configure_optimizers(self):  # noqa: D102
        from seglit.optim import PolyLR, default_sgd

        optimizer = default_sgd([p for p in self.net.parameters() if p.requires_grad])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = PolyLR(optimizer, power=0.9, total_iters=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def run_bare(
    args: argparse.Namespace, root: Path, workdir: Path, timer: EpochTimer | None = None
) -> list[float]:
    """One fit of :class:`BareModule` (checkpoint: ``last.ckpt`` every epoch, as the raw loop)."""
    from seglit.data import SyntheticVOCDataModule

    timer = timer or EpochTimer()
    data = SyntheticVOCDataModule(**data_args(args, root))
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        logger=False,
        callbacks=[timer, ModelCheckpoint(dirpath=workdir, save_top_k=0, save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(workdir),
    )
    seed_everything(SEED, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(BareModule(data.num_classes, args), datamodule=data)
    return timer.epochs


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="paired runs (seglit + raw)")
    parser.add_argument(
        "--epochs", type=int, default=7, help="paired epochs per run (first dropped)"
    )
    parser.add_argument(
        "--memory-runs", type=int, default=2, help="separate 2-epoch runs of each side for memory"
    )
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
        help="extra seglit config entry (dotted key, YAML value), "
        "e.g. trainer.log_every_n_steps=50",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 run x 2 epochs, 16 images, base width 8"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.num_train, args.num_val = 1, 2, 16, 8
        args.base_width = 8
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the first is warm-up), got {args.epochs}")
    if args.memory_runs < 0:
        parser.error(f"--memory-runs must be >= 0, got {args.memory_runs}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frameworks = ("seglit", "lightning")
    with tempfile.TemporaryDirectory(prefix="seglit-overhead-") as tmp:
        root = Path(tmp) / "data"
        from seglit.data import write_synthetic_voc

        write_synthetic_voc(root, num_train=args.num_train, num_val=args.num_val, seed=SEED)
        # times[framework] = (its epochs, the raw epochs paired with them)
        times: dict[str, tuple[list[float], list[float]]] = {f: ([], []) for f in frameworks}
        for i in range(args.rounds):
            for framework in frameworks if i % 2 == 0 else frameworks[::-1]:
                paired = run_paired(framework, args, root, Path(tmp) / f"{framework}{i}")
                times[framework][0].extend(paired[framework][1:])  # drop the warm-up pair
                times[framework][1].extend(paired["raw"][1:])
        peaks: dict[str, list[int]] = {"seglit": [], "raw": []}
        memory_args = argparse.Namespace(**{**vars(args), "epochs": 2})
        for i in range(args.memory_runs):
            for side in ("seglit", "raw") if i % 2 == 0 else ("raw", "seglit"):
                with ProcessPeak() as meter:
                    if side == "seglit":
                        run_seglit(memory_args, root, Path(tmp) / f"memory{i}")
                    else:
                        run_raw(memory_args, root)
                if meter.peak_bytes is not None:
                    peaks[side].append(meter.peak_bytes)
    print(
        f"one epoch: UNet(base_width={args.base_width}, depth={args.depth}), "
        f"{args.num_train} train / {args.num_val} val synthetic images, batch {args.batch_size}, "
        f"crop {args.crop}, {torch.get_num_threads()} threads; {args.rounds} runs of "
        f"{args.epochs} paired epochs per framework (first pair dropped); peak memory: "
        f"{args.memory_runs} separate runs of each side"
    )
    peak = {side: warm_median_mib(p) for side, p in peaks.items()}
    raw_all = times["seglit"][1] + times["lightning"][1]
    rows = [
        ["seglit fit", times["seglit"][0], peak["seglit"]],
        ["Lightning alone (BareModule)", times["lightning"][0], None],
        ["raw loop", raw_all, peak["raw"]],
    ]
    print_table(
        ["path", "median epoch s", "min s", "max s", "peak MiB (run)"],
        [
            [name, fmt(statistics.median(t)), fmt(min(t)), fmt(max(t)), fmt(mib, ".1f")]
            for name, t, mib in rows
        ],
    )
    ratios = {}
    for framework, label in (("seglit", "seglit fit"), ("lightning", "Lightning alone")):
        mine, raw = times[framework]
        ratios[framework] = ratio(statistics.median(mine), statistics.median(raw))
        low, high = ratio_interval(mine, raw)
        goal = "  (goal <= 1.05)" if framework == "seglit" else ""
        print(
            f"ratio ({label} / raw loop): {fmt(ratios[framework])}  95% CI {low:.3f}-{high:.3f} "
            f"(bootstrap over paired epochs){goal}"
        )
    print(
        "ratio (seglit fit / Lightning alone, what seglit adds to Lightning): "
        f"{fmt(ratio(ratios['seglit'], ratios['lightning']))}"
    )
    print(
        f"mem ratio (seglit fit / raw loop, peak resident memory of a run): "
        f"{fmt(ratio(peak['seglit'], peak['raw']))}"
    )


if __name__ == "__main__":
    main()
