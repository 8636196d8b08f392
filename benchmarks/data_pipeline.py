"""Throughput of seglit's VOC training pipeline against torchvision's reference transforms.

Both pipelines read the same VOC-sized JPEGs (about 500x375) and palette masks from a VOC tree
and produce a normalised float image and an int64 mask of the same crop size:

* seglit: ``VOCSegmentationDataset`` + ``build_train_transform`` (albumentations/OpenCV:
  random scale, pad with 255, random crop, flip, colour jitter, normalise);
* reference: torchvision's ``references/segmentation`` training preset, written with
  ``torchvision.transforms.v2`` (random resize, flip, pad with 255, random crop, to float,
  normalise) on the PIL images ``torchvision.datasets.VOCSegmentation`` returns. It has no colour
  jitter, so seglit does strictly more work per sample.

Each pipeline runs in this process with one thread (the cost of one DataLoader worker). Rounds
are interleaved (seglit, reference, seglit, ...) so that load from other processes hits both
alike. Prints samples/s per worker and the ratio seglit / reference (goal: >= 1.0), plus the ratio
with seglit's colour jitter switched off (the same operations as the reference), and the
peak memory of one more pass of each over the images (``common.ProcessPeak``: the process's
resident memory, as the pipelines allocate with NumPy, OpenCV and PIL).

    python benchmarks/data_pipeline.py            # 100 images x 5 rounds
    python benchmarks/data_pipeline.py --quick    # 16 images x 6 rounds, well under a minute
    python benchmarks/data_pipeline.py --root DIR # an existing VOC root instead of generated files
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from seglit.data.palette import flat_palette, voc_palette
from seglit.data.synthetic import SyntheticSpec, render_sample
from seglit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_train_transform
from seglit.data.voc import VOCSegmentationDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ProcessPeak  # noqa: E402

REFERENCE = "torchvision reference"


def write_voc_sized_tree(root: Path, count: int) -> None:
    """Write ``count`` 500x375 (or 375x500) JPEGs and palette masks as a VOC ``train`` split."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    palette = flat_palette(voc_palette())
    ids = []
    for index in range(count):
        rng = np.random.default_rng(index)
        size = 375 if index % 4 else 500  # mostly landscape, some portrait, like VOC
        image, label = render_sample(
            rng, SyntheticSpec(min_size=size, max_size=size, max_objects=6)
        )
        image = cv2.resize(image, (500 if size == 375 else 375, size))
        label = cv2.resize(label, (image.shape[1], size), interpolation=cv2.INTER_NEAREST)
        image_id = f"bench_{index:05d}"
        Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
        mask = Image.fromarray(label, mode="P")
        mask.putpalette(palette)
        mask.save(voc / "SegmentationClass" / f"{image_id}.png")
        ids.append(image_id)
    (voc / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in ids))


def reference_transform(base_size: int, crop_size: int):
    """torchvision's references/segmentation ``SegmentationPresetTrain`` (v2 flavour)."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResize(min_size=int(0.5 * base_size), max_size=int(2.0 * base_size)),
            v2.RandomHorizontalFlip(0.5),
            _PadIfSmaller(crop_size, fill={tv_tensors.Mask: 255, "others": 0}),
            v2.RandomCrop(crop_size),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            v2.ToDtype({tv_tensors.Mask: torch.int64, "others": None}),
        ]
    )


class _PadIfSmaller(torch.nn.Module):
    """The reference's ``PadIfSmaller``: pad right/bottom up to ``size`` (mask with 255)."""

    def __init__(self, size: int, fill):
        super().__init__()
        self.size, self.fill = size, fill

    def forward(self, image, mask):
        from torchvision.transforms import v2

        height, width = image.shape[-2:]
        pad = [0, 0, max(self.size - width, 0), max(self.size - height, 0)]
        if pad[2] or pad[3]:
            return v2.functional.pad(image, pad, fill=0), v2.functional.pad(mask, pad, fill=255)
        return image, mask


def run_reference(dataset, transform, count: int) -> None:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    to_image = v2.PILToTensor()
    for index in range(count):
        image, mask = dataset[index]
        image = tv_tensors.Image(to_image(image))
        mask = tv_tensors.Mask(torch.from_numpy(np.array(mask)))
        out_image, out_mask = transform(image, mask)
        assert out_mask.dtype == torch.int64 and out_image.dtype == torch.float32


def run_seglit(dataset, count: int) -> None:
    for index in range(count):
        sample = dataset[index]
        mask = sample["mask"].long()
        assert mask.dtype == torch.int64 and sample["image"].dtype == torch.float32


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 images x 6 rounds")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--crop-size", type=int, default=480)
    parser.add_argument("--root", default=None, help="existing VOC root (split: train)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.rounds = 16, 6

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        if args.root is None:
            write_voc_sized_tree(root, args.images)
        from torchvision.datasets import VOCSegmentation

        pipelines = {
            "seglit": VOCSegmentationDataset(
                root, "train", build_train_transform(args.crop_size, (0.5, 2.0), True, 0.2)
            ),
            "seglit, no jitter": VOCSegmentationDataset(
                root, "train", build_train_transform(args.crop_size, (0.5, 2.0), True, 0.0)
            ),
        }
        tv_dataset = VOCSegmentation(str(root), year="2012", image_set="train")
        count = min(args.images, len(tv_dataset))
        base_size = 375  # VOC's typical short side: both pipelines scale by ~0.5x..2x
        tv_transform = reference_transform(base_size, args.crop_size)
        runs = {name: (lambda d=d: run_seglit(d, count)) for name, d in pipelines.items()}
        runs[REFERENCE] = lambda: run_reference(tv_dataset, tv_transform, count)

        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        peaks = {}
        for name, run in runs.items():
            with ProcessPeak() as meter:
                run()
            peaks[name] = meter.peak_bytes

    rates = {name: count * len(t) / sum(t) for name, t in times.items()}
    print(f"{count} images ~500x375, crop {args.crop_size}, {args.rounds} interleaved rounds")
    for name, rate in rates.items():
        print(f"{name:>22}: {rate:7.1f} samples/s per worker")
    ratio = rates["seglit"] / rates[REFERENCE]
    fair = rates["seglit, no jitter"] / rates[REFERENCE]
    print(f"{'ratio':>22}: {ratio:7.2f}  (seglit / reference; goal >= 1.0)")
    print(f"{'ratio, same ops':>22}: {fair:7.2f}  (seglit without colour jitter / reference)")
    if all(peak is not None for peak in peaks.values()):
        mib = {name: peak / 2**20 for name, peak in peaks.items()}
        print(
            "peak memory of one pass (process RSS above its start), MiB: "
            + ", ".join(f"{name} {value:.1f}" for name, value in mib.items())
        )
        print(
            f"{'mem ratio':>22}: {peaks['seglit'] / max(peaks[REFERENCE], 1):7.2f}  "
            "(seglit / reference)"
        )
    else:
        print("peak memory: not measurable here (needs Linux /proc/self/clear_refs)")
    return ratio


if __name__ == "__main__":
    main()
