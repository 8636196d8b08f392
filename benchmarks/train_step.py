"""Benchmark: one training step of seglit models against their torchvision / smp peers.

A step is forward + cross-entropy (``ignore_index=255``) + backward + SGD step (lr 0.01,
momentum 0.9, weight decay 1e-4). The seglit side runs through
:class:`seglit.module.SegmentationModule` with seglit's defaults: its ``forward``, ``loss``,
the finite-loss check of ``training_step`` and ``build_optimizer`` (``default_sgd``: fused
where supported). The peer is the raw torchvision / smp model with ``F.cross_entropy`` and
``torch.optim.SGD`` with torch's defaults, as torchvision's reference ``train.py`` builds it.
Both get the same batch (seeded; 5% void pixels), crop, precision and memory format, and are
timed interleaved after warm-up (``benchmarks/common.py``); the table gives the ratio of
median step times and a bootstrap 95% interval over the paired rounds.

Pairs:

* ``fcn_resnet50``: ``FCN32s(head="fcn", output_stride=8, upsample="bilinear")`` (what
  ``from_torchvision`` builds) vs torchvision ``fcn_resnet50``. Identical architecture.
* ``deeplabv3_resnet50``: ``DeepLabV3(output_stride=8, atrous_rates=(12, 24, 36),
  multi_grid=None, head="torchvision")`` vs torchvision ``deeplabv3_resnet50``. Identical
  architecture.
* ``deeplabv3plus_resnet50``: ``DeepLabV3Plus(backbone="resnet50", decoder_layout="smp",
  atrous_rates=(12, 24, 36), multi_grid=(1,))`` vs smp
  ``DeepLabV3Plus(encoder_name="resnet50")``. Identical architecture (same logits with the
  same weights, up to ``align_corners`` of two fixed resizes: ``tests/models/test_smp_parity.py``).
* ``deeplabv3plus_paper_vs_smp`` (informational): seglit's default ``DeepLabV3Plus``
  (``decoder_layout="paper"``: BN + ReLU after every depthwise conv and two refinement
  convs at stride 4, as TF DeepLab and mmseg) vs the same smp model. **Different decoders**:
  this row prices the paper's decoder.
* ``unet_resnet34``: seglit's own ``ResNetUNet(backbone="resnet34")`` vs smp
  ``Unet(encoder_name="resnet34")``. Identical architecture (same parameters, same logits
  with the same weights: ``tests/models/test_smp_parity.py``).
* ``unet_resnet34_smp``: seglit ``SMPModel(arch="Unet", encoder="resnet34")`` vs smp
  ``Unet(encoder_name="resnet34")``: the same network, so this measures seglit's wrapper.
* ``unet_scratch_vs_smp`` (informational): seglit's from-scratch ``UNet()`` (Ronneberger,
  no encoder) vs smp ``Unet`` with a ResNet-34 encoder. **Different architectures**.

    python benchmarks/train_step.py                       # batch 8, crop 512 (GPU-sized)
    python benchmarks/train_step.py --batch-size 2 --crop 128 --steps 4   # CPU
    python benchmarks/train_step.py --quick   # crop 64, batch 2, 4 pairs (< 3 min, 2 cores)
    python benchmarks/train_step.py --device cuda --precision bf16-mixed --channels-last \\
        --compile --peak-tflops 989   # GPU: adds images/s and model-FLOPs utilisation
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    fmt,
    interleaved,
    print_table,
    ratio,
    ratio_interval,
    set_seed,
    state_bytes,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # smp must never reach the hub

NUM_CLASSES = 21
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Pair:
    """A seglit model and its peer; ``note`` says how far they are comparable."""

    seglit: Callable[[], nn.Module]
    peer: Callable[[], nn.Module]
    peer_name: str
    note: str


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models.segmentation as tvs

        return getattr(tvs, name)(
            weights=None, weights_backbone=None, aux_loss=False, num_classes=NUM_CLASSES
        )

    return build


def _smp(arch: str, encoder: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=NUM_CLASSES)

    return build


def _seglit(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import seglit.models as models

        return getattr(models, name)(NUM_CLASSES, **kwargs)

    return build


PAIRS: dict[str, Pair] = {
    "fcn_resnet50": Pair(
        _seglit("FCN32s", backbone="resnet50", output_stride=8, upsample="bilinear", head="fcn"),
        _tv("fcn_resnet50"),
        "torchvision fcn_resnet50",
        "identical architecture",
    ),
    "deeplabv3_resnet50": Pair(
        _seglit(
            "DeepLabV3",
            backbone="resnet50",
            output_stride=8,
            atrous_rates=(12, 24, 36),
            multi_grid=None,
            head="torchvision",
        ),
        _tv("deeplabv3_resnet50"),
        "torchvision deeplabv3_resnet50",
        "identical architecture",
    ),
    "deeplabv3plus_resnet50": Pair(
        _seglit(
            "DeepLabV3Plus",
            backbone="resnet50",
            decoder_layout="smp",
            atrous_rates=(12, 24, 36),
            multi_grid=(1,),
        ),
        _smp("DeepLabV3Plus", "resnet50"),
        "smp DeepLabV3Plus(resnet50)",
        "identical architecture (decoder_layout='smp')",
    ),
    "deeplabv3plus_paper_vs_smp": Pair(
        _seglit("DeepLabV3Plus", backbone="resnet50"),
        _smp("DeepLabV3Plus", "resnet50"),
        "smp DeepLabV3Plus(resnet50)",
        "DIFFERENT decoders (seglit's paper layout), informational",
    ),
    "unet_resnet34": Pair(
        _seglit("ResNetUNet", backbone="resnet34"),
        _smp("Unet", "resnet34"),
        "smp Unet(resnet34)",
        "identical architecture (seglit's own ResNetUNet)",
    ),
    "unet_resnet34_smp": Pair(
        _seglit("SMPModel", arch="Unet", encoder="resnet34"),
        _smp("Unet", "resnet34"),
        "smp Unet(resnet34)",
        "same network: seglit's SMPModel wrapper",
    ),
    "unet_scratch_vs_smp": Pair(
        _seglit("UNet"),
        _smp("Unet", "resnet34"),
        "smp Unet(resnet34)",
        "DIFFERENT architectures, informational",
    ),
}
QUICK_PAIRS = ["fcn_resnet50", "deeplabv3_resnet50", "deeplabv3plus_resnet50", "unet_resnet34"]


def make_batch(
    batch_size: int, crop: int, device: torch.device, seed: int
) -> tuple[Tensor, Tensor]:
    """Normalised-looking images and int64 masks with about 5% void (255) pixels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, crop, crop, generator=g)
    masks = torch.randint(0, NUM_CLASSES, (batch_size, crop, crop), generator=g)
    masks[torch.rand(batch_size, crop, crop, generator=g) < 0.05] = IGNORE_INDEX
    return images.to(device), masks.to(device)


class Stepper:
    """One side of a pair: model, optimizer and a ``__call__`` doing one training step.

    Args:
        net: The network.
        seglit_module: Run through ``SegmentationModule`` (seglit) or raw (peer).
        device: Where to run.
        channels_last: Channels-last memory format for weights and inputs.
        autocast_dtype: ``torch.bfloat16`` for bf16-mixed, ``None`` for fp32.
        compile: ``torch.compile`` the network.
    """

    def __init__(
        self,
        net: nn.Module,
        seglit_module: bool,
        device: torch.device,
        channels_last: bool,
        autocast_dtype: torch.dtype | None,
        compile: bool,
    ) -> None:
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        if seglit_module:
            from seglit.module import SegmentationModule

            self.model: nn.Module = SegmentationModule(
                net, NUM_CLASSES, channels_last=channels_last, compile=compile
            ).to(device)
            self.params = list(self.model.net.parameters())
        else:
            net = net.to(device)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            self.model = net
            self._forward = torch.compile(net) if compile else net
            self.params = list(net.parameters())
        self.seglit_module = seglit_module
        self.model.train()
        self.optimizer = (
            self.model.build_optimizer()  # seglit's default: SGD, fused where supported
            if seglit_module
            else torch.optim.SGD(self.params, lr=0.01, momentum=0.9, weight_decay=1e-4)
        )
        self.images: Tensor | None = None
        self.masks: Tensor | None = None

    def loss(self) -> Tensor:
        """Forward and loss on the stored batch."""
        assert self.images is not None and self.masks is not None
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            if self.seglit_module:
                from seglit.module import split_output

                logits, _ = split_output(self.model(self.images))
                loss = self.model.loss(logits, self.masks)
                if not torch.isfinite(loss):  # as SegmentationModule.training_step
                    raise FloatingPointError(f"non-finite loss {loss.item()}")
                return loss
            images = self.images
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            out = self._forward(images)
            logits = out["out"] if isinstance(out, dict) else out
            return F.cross_entropy(logits, self.masks, ignore_index=IGNORE_INDEX)

    def __call__(self) -> None:
        self.loss().backward()
        self.optimizer.step()
        # gradients freed at the end, not the start: between steps only weights and
        # optimizer state are held, so "peak = state + step peak" is the whole peak
        self.optimizer.zero_grad(set_to_none=True)


def saved_activation_bytes(stepper: Stepper) -> int:
    """Bytes of the tensors autograd saves for backward in one step (each storage once).

    Deterministic, unlike a process's peak memory: it depends only on the network and the
    batch, so it shows exactly how much activation memory a design choice costs. Parameters
    (saved by every conv for its input gradient) are not counted.
    """
    weights = {p.untyped_storage().data_ptr() for p in stepper.model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = stepper.loss()
    loss.backward()
    stepper.optimizer.zero_grad(set_to_none=True)
    return sum(storages.values())


def step_flops(stepper: Stepper) -> int:
    """FLOPs of one forward + backward (multiply-add = 2), counted by torch's FlopCounterMode.

    Counted on the eager network (a compiled graph bypasses the counter), so it is the
    model's FLOPs, the numerator of model-FLOPs utilisation.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from seglit.module import split_output

    net = stepper.model.net if stepper.seglit_module else stepper.model
    assert stepper.images is not None and stepper.masks is not None
    counter = FlopCounterMode(display=False)
    with counter:
        logits, _ = split_output(net(stepper.images))
        F.cross_entropy(logits, stepper.masks, ignore_index=IGNORE_INDEX).backward()
    stepper.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=512, help="square crop side in pixels")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--pairs", default="all", help=f"comma list of {', '.join(PAIRS)}")
    parser.add_argument("--channels-last", action="store_true", help="both sides channels-last")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both nets")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: see docs/performance.md; 0 = torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="device peak TFLOP/s; adds model-FLOPs utilisation (MFU) columns",
    )
    parser.add_argument("--quick", action="store_true", help="crop 64, batch 2, 1+2 steps, 4 pairs")
    args = parser.parse_args(argv)
    if args.quick:
        args.crop, args.batch_size, args.warmup, args.steps = 64, 2, 1, 2
        if args.pairs == "all":
            args.pairs = ",".join(QUICK_PAIRS)
    names = list(PAIRS) if args.pairs == "all" else args.pairs.split(",")
    unknown = [n for n in names if n not in PAIRS]
    if unknown:
        parser.error(f"--pairs: unknown pair(s) {unknown}; expected some of {list(PAIRS)}")
    args.pair_names = names
    for key in ("batch_size", "crop", "steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else None
    print(
        f"train step: batch {args.batch_size}, crop {args.crop}, precision {args.precision}, "
        f"channels_last={args.channels_last}, compile={args.compile}, device {device}, "
        f"{torch.get_num_threads()} threads; median of {args.steps} interleaved steps after "
        f"{args.warmup} warm-up step(s); peak = weights + optimizer state + step peak"
    )
    images, masks = make_batch(args.batch_size, args.crop, device, args.seed)
    rows, notes = [], []
    for name in args.pair_names:
        pair = PAIRS[name]
        sides = {}
        for side, build in (("seglit", pair.seglit), ("peer", pair.peer)):
            set_seed(args.seed)
            stepper = Stepper(
                build(), side == "seglit", device, args.channels_last, dtype, args.compile
            )
            stepper.images, stepper.masks = images, masks
            sides[side] = stepper
        params = [sum(p.numel() for p in s.params) for s in sides.values()]
        results = interleaved(sides, device, args.warmup, args.steps)
        peaks = {
            side: None
            if r.peak_bytes is None
            else r.peak_bytes + state_bytes(sides[side].model, sides[side].optimizer)
            for side, r in results.items()
        }
        # eager networks only: a compiled graph saves its own (fused) set of tensors
        saved = {
            side: None if args.compile else saved_activation_bytes(stepper)
            for side, stepper in sides.items()
        }
        ms = {side: r.median_s * 1e3 for side, r in results.items()}
        low, high = ratio_interval(results["seglit"].seconds, results["peer"].seconds)
        row = [
            name,
            fmt(ms["seglit"], ".1f"),
            fmt(ms["peer"], ".1f"),
            fmt(ratio(ms["seglit"], ms["peer"])),
            f"{low:.3f}-{high:.3f}",
            fmt(None if peaks["seglit"] is None else peaks["seglit"] / 2**20, ".0f"),
            fmt(None if peaks["peer"] is None else peaks["peer"] / 2**20, ".0f"),
            fmt(ratio(peaks["seglit"], peaks["peer"])),
            "n/a"
            if saved["seglit"] is None or saved["peer"] is None
            else f"{saved['seglit'] / 2**20:.1f}/{saved['peer'] / 2**20:.1f}",
            fmt(ratio(saved["seglit"], saved["peer"])),
            f"{params[0] / 1e6:.3f}M/{params[1] / 1e6:.3f}M",
        ]
        if args.peak_tflops:
            for side in ("seglit", "peer"):
                flops = step_flops(sides[side])
                achieved = flops / (ms[side] / 1e3)
                row += [
                    f"{args.batch_size / (ms[side] / 1e3):.1f}",
                    f"{100 * achieved / (args.peak_tflops * 1e12):.1f}%",
                ]
        rows.append(row)
        notes.append(f"  {name}: seglit vs {pair.peer_name}; {pair.note}")
        del sides, results
    headers = [
        "pair",
        "seglit ms",
        "peer ms",
        "ratio",
        "ratio 95% CI",
        "seglit MiB",
        "peer MiB",
        "mem ratio",
        "saved MiB seglit/peer",
        "saved ratio",
        "params seglit/peer",
    ]
    if args.peak_tflops:
        headers += ["seglit img/s", "seglit MFU", "peer img/s", "peer MFU"]
    print_table(headers, rows)
    print(
        "ratio = seglit / peer (median step time; 95% CI: bootstrap over the paired rounds); "
        "mem ratio = seglit / peer (peak memory); saved = activations autograd keeps for "
        "backward"
    )
    print("\n".join(notes))


if __name__ == "__main__":
    main()
