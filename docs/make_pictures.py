"""Render the example pictures of the docs into ``docs/img/``: ``python docs/make_pictures.py``.

* ``summary_miou.png`` and ``summary_class_iou.png``: :mod:`seglit.summary.plots` on the
  ``summary.json`` of the README's quick start (``python -m seglit.fit
  recipes/ablation_skip.yaml --smoke``, 3 seeds, kept as
  ``docs/img/ablation_skip_smoke_summary.json``; pass ``--summary PATH`` for another run's).
* ``overlay.png`` and ``panel.png``: :mod:`seglit.visualize` on a synthetic image from
  :func:`seglit.data.synthetic.render_sample`. The "prediction" is the ground truth with
  simulated mistakes (one object given the wrong class, a false-positive blob, edges moved),
  so that every part of the pictures shows up without training a model.

The PNGs are palette-quantized to stay small; everything else is the library's output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from seglit.data.palette import voc_palette
from seglit.data.synthetic import SYNTHETIC_CLASSES, SyntheticSpec, render_sample
from seglit.summary.plots import plot_class_heatmap, plot_miou
from seglit.visualize import comparison_panel, legend_below, overlay

OUT = Path(__file__).parent / "img"
SMOKE_SUMMARY = OUT / "ablation_skip_smoke_summary.json"


def summary_rows(path: Path = SMOKE_SUMMARY) -> list[dict]:
    """The rows of a runner's ``summary.json``."""
    return json.loads(path.read_text())["rows"]


def simulated_prediction(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ground truth with typical mistakes (no model involved, see the module docstring)."""
    _, nearest = ndimage.distance_transform_edt(label == 255, return_indices=True)
    pred = label[tuple(nearest)]  # void band filled from the closest labelled pixel
    classes = [int(c) for c in np.unique(pred) if c != 0]
    if classes:
        last, first = classes[-1], classes[0]
        pred[pred == last] = 1 + last % (len(SYNTHETIC_CLASSES) - 1)  # one class confused
        grown = ndimage.binary_dilation(pred == first, iterations=4) & (pred == 0)
        pred[grown] = first  # another one spills over its edges
    yy, xx = np.mgrid[: label.shape[0], : label.shape[1]]
    cy, cx = rng.uniform(0.2, 0.8, size=2) * label.shape
    pred[(yy - cy) ** 2 / 150 + (xx - cx) ** 2 / 300 < 1] = 3  # a false-positive blob
    return pred.astype(np.uint8)


def save_small(array_or_path: np.ndarray | Path, path: Path) -> None:
    """Save as a 256-colour PNG (docs size budget)."""
    image = Image.open(array_or_path) if isinstance(array_or_path, Path) else None
    image = image or Image.fromarray(array_or_path)
    image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> None:
    """Write the four example PNGs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, default=SMOKE_SUMMARY, help="a summary.json")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    rows = summary_rows(args.summary)
    for plot, name in (
        (plot_miou, "summary_miou.png"),
        (plot_class_heatmap, "summary_class_iou.png"),
    ):
        save_small(plot(rows, OUT / name), OUT / name)

    rng = np.random.default_rng(2)
    image, label = render_sample(rng, SyntheticSpec(min_size=200, max_size=240, max_objects=4))
    pred = simulated_prediction(label, rng)
    palette = voc_palette(len(SYNTHETIC_CLASSES))
    tinted = legend_below(overlay(image, pred, palette), pred, SYNTHETIC_CLASSES, palette)
    save_small(tinted, OUT / "overlay.png")
    panel = comparison_panel(image, label, pred, palette, SYNTHETIC_CLASSES)
    save_small(panel, OUT / "panel.png")
    for path in sorted(OUT.glob("*.png")):
        print(f"{path} {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
