"""The synthetic lab: time the generator per factor and draw a sample picture per factor.

    python docs/make_lab_pictures.py                     # time 160 + 40 images per setting
    python docs/make_lab_pictures.py --images docs/img   # also write docs/img/lab_<factor>.png
    python docs/make_lab_pictures.py --images docs/img --repeats 0   # pictures only

Timing writes the VOC layout into a temp folder (``write_synthetic_voc``, JPEG and PNG encoding
included) in this one process, single-threaded; it prints wall-clock and CPU seconds (CPU time
is the cost on one core even when other work shares the machine).

Each picture shows the same four scenes (seed 0, images 0-3) with the factor off (top pair of
rows: image, label) and at strength 1 (bottom pair), at their own size; labels use the VOC
palette, 255 (void) in white.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from seglit.data.palette import voc_palette
from seglit.data.synthetic import SyntheticSpec, write_synthetic_voc
from seglit.data.synthetic_lab import _LAB_STREAM, LAB_FACTORS
from seglit.data.synthetic_render import SYNTHETIC_CLASSES, render_sample

SETTINGS = {"off": {}, **{name: {name: 1.0} for name in LAB_FACTORS}}
SETTINGS["all three"] = dict.fromkeys(LAB_FACTORS, 1.0)


def sample(seed: int, index: int, **factors) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of ``write_synthetic_voc(seed=seed, **factors)``, as arrays."""
    return render_sample(
        np.random.default_rng([seed, index]),
        SyntheticSpec(seed=seed, **factors),
        lab_rng=np.random.default_rng([seed, index, _LAB_STREAM]),
    )


def colour_label(label: np.ndarray) -> np.ndarray:
    lookup = np.full((256, 3), 255, dtype=np.uint8)
    lookup[: len(SYNTHETIC_CLASSES)] = voc_palette(len(SYNTHETIC_CLASSES))
    return lookup[label]


def picture(factors: dict, scenes: int = 4, cell: int = 131) -> Image.Image:
    """Scenes 0..``scenes - 1`` of seed 0 at factor 0 (rows 1-2: image, label) and with
    ``factors`` (rows 3-4), at their own size in ``cell`` x ``cell`` tiles; 256 colours."""
    sheet = Image.new("RGB", (scenes * (cell + 2), 4 * (cell + 2)), (255, 255, 255))
    for row, setting in enumerate(({}, factors)):
        for col in range(scenes):
            image, label = sample(0, col, **setting)
            for k, array in enumerate((image, colour_label(label))):
                sheet.paste(Image.fromarray(array), (col * (cell + 2), (2 * row + k) * (cell + 2)))
    return sheet.quantize(256, method=Image.Quantize.MEDIANCUT)


def time_setting(factors: dict, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of writing 160 + 40 images with ``factors``."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start, start_cpu = time.perf_counter(), time.process_time()
            write_synthetic_voc(tmp, num_train=160, num_val=40, seed=0, **factors)
            wall = min(wall, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=None, help="write lab_<factor>.png here")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings (0: none)")
    args = parser.parse_args()
    if args.repeats > 0:
        print(f"| setting | 160 + 40 images: wall s | CPU s (best of {args.repeats}) |")
        print("|---|---|---|")
        for name, factors in SETTINGS.items():
            wall, cpu = time_setting(factors, args.repeats)
            print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    if args.images is not None:
        args.images.mkdir(parents=True, exist_ok=True)
        for name in LAB_FACTORS:
            path = args.images / f"lab_{name}.png"
            picture({name: 1.0}).save(path, optimize=True)
            print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
