"""Summary plots: valid PNGs, also for failed variants and rows given as dicts."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from seglit.plots import CLASS_HEATMAP, MIOU_PLOT, plot_class_heatmap, plot_miou, write_plots
from seglit.report import Row

CLASSES = ["background", "aeroplane", "bicycle", "bird"]


def _rows() -> list[Row]:
    return [
        Row(
            variant="fcn8s-sum",
            status="finished",
            runs=3,
            finished=3,
            mIoU_mean=0.61,
            mIoU_std=0.02,
            baseline=True,
            per_class_iou={"background": 0.9, "aeroplane": 0.7, "bicycle": 0.3, "bird": 0.55},
        ),
        Row(
            variant="fcn8s-concat",
            status="partial",
            runs=3,
            finished=1,
            mIoU_mean=0.63,
            mIoU_std=0.0,
            per_class_iou={
                "background": 0.91,
                "aeroplane": None,
                "bicycle": 0.35,
                "bird": float("nan"),
            },
        ),
        Row(variant="unet-sum", status="failed", runs=3, finished=0),
    ]


def _check_png(path, min_size=(200, 150), min_bytes=5_000):
    assert path.is_file() and path.stat().st_size > min_bytes
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1]
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # something was drawn


@pytest.mark.parametrize("as_dict", [False, True])
@pytest.mark.parametrize("plot", [plot_miou, plot_class_heatmap])
def test_plot_writes_a_png_with_failed_variants(tmp_path, plot, as_dict):
    rows = [asdict(r) for r in _rows()] if as_dict else _rows()
    path = plot(rows, tmp_path / "sub" / "plot.png")
    assert path == tmp_path / "sub" / "plot.png"
    _check_png(path)


def test_heatmap_marks_missing_cells_grey(tmp_path):
    path = plot_class_heatmap(_rows(), tmp_path / "heat.png")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    grey = np.all(pixels == (211, 211, 211), axis=-1)  # matplotlib's "lightgrey"
    assert grey.sum() > 100


@pytest.mark.parametrize("plot", [plot_miou, plot_class_heatmap])
def test_plot_survives_no_results_at_all(tmp_path, plot):
    rows = [Row(variant="a", status="failed"), Row(variant="b", status="pending")]
    _check_png(plot(rows, tmp_path / "p.png"), min_size=(100, 100), min_bytes=2_000)


def test_write_plots_names_both_files(tmp_path):
    paths = write_plots(_rows(), tmp_path)
    assert [p.name for p in paths] == [MIOU_PLOT, CLASS_HEATMAP]
    assert all(p.is_file() for p in paths)
    assert not list(tmp_path.glob("*.tmp*"))


def test_rows_of_the_wrong_type_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="seglit.report.Row or dicts"):
        plot_miou(["fcn8s"], tmp_path / "x.png")
