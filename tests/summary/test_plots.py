"""Summary plots: axis ranges that fit the data, seed error bars, Δ panel, heatmap colours, PNGs."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from seglit.run_folder import CLASS_HEATMAP, MIOU_PLOT
from seglit.summary import Row
from seglit.summary.plots import (
    class_heatmap_figure,
    miou_figure,
    plot_class_heatmap,
    plot_miou,
    write_plots,
)

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
    with pytest.raises(TypeError, match="seglit.summary.Row or dicts"):
        plot_miou(["fcn8s"], tmp_path / "x.png")


# ------------------------------------------------------------------------------ mIoU plot
def _close_rows() -> list[Row]:
    """The user's case: 0.924 (3 seeds) against 0.930 (1 seed), plus a failed variant."""
    return [
        Row(variant="base", status="finished", runs=3, finished=3, mIoU_mean=0.924,
            mIoU_std=0.002, baseline=True, delta=0.0),
        Row(variant="better", status="partial", runs=3, finished=1, mIoU_mean=0.930,
            mIoU_std=0.0, delta=0.006, delta_ci_low=0.001, delta_ci_high=0.011),
        Row(variant="worse", status="finished", runs=2, finished=2, mIoU_mean=0.921,
            mIoU_std=0.001, delta=-0.003, delta_ci_low=-0.007, delta_ci_high=0.0005),
        Row(variant="broken", status="failed", runs=3, finished=0),
    ]  # fmt: skip


def test_miou_axis_fits_the_values_so_close_results_are_far_apart():
    ax = miou_figure(_close_rows()).axes[0]
    low, high = ax.get_ylim()
    assert 0.9 < low <= 0.921 - 0.001 and 0.930 <= high < 0.95  # not from 0, not to 1.3
    assert (0.930 - 0.924) / (high - low) > 0.3


def test_miou_axis_with_one_value_or_no_values():
    ax = miou_figure([Row(variant="a", status="finished", runs=1, finished=1, mIoU_mean=0.5)]).axes[
        0
    ]
    low, high = ax.get_ylim()
    assert low < 0.5 < high and high - low < 0.05
    ax = miou_figure([Row(variant="a", status="failed", runs=1)]).axes[0]
    assert ax.get_ylim() == (0.0, 1.0)


def test_miou_error_bars_only_for_several_finished_seeds():
    ax = miou_figure(_close_rows()).axes[0]
    has_error = {c.get_label(): c.has_yerr for c in ax.containers}
    assert has_error == {"base": True, "better": False, "worse": True}  # "broken" has no point
    (caps,) = [c for c in ax.containers if c.get_label() == "base"][0].lines[2]
    segment = caps.get_segments()[0]
    assert np.allclose(sorted(segment[:, 1]), [0.922, 0.926])  # mean ± std


def test_miou_plot_prints_values_and_marks_the_missing_and_the_baseline():
    fig = miou_figure(_close_rows())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0.924\n±0.002" in texts and "0.930" in texts
    assert "failed 0/3" in texts and "partial 1/3" in texts
    baseline = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(baseline) == 1 and baseline[0].get_ydata()[0] == pytest.approx(0.924)
    bold = [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["base"]


def test_delta_panel_shows_the_confidence_intervals_around_zero():
    fig = miou_figure(_close_rows())
    assert len(fig.axes) == 2
    delta_ax = fig.axes[1]
    low, high = delta_ax.get_ylim()
    assert low < -0.007 and high > 0.011 and high - low < 0.05
    assert any(np.allclose(line.get_ydata(), 0.0) for line in delta_ax.lines)  # the zero line
    (better,) = [c for c in delta_ax.containers if c.has_yerr and c.lines[0].get_ydata()[0] > 0]
    assert np.allclose(sorted(better.lines[2][0].get_segments()[0][:, 1]), [0.001, 0.011])
    assert better.lines[0].get_color() == "tab:green"  # CI excludes 0
    texts = [t.get_text() for t in delta_ax.texts]
    assert "+0.006" in texts and "-0.003" in texts


def test_delta_panel_shows_each_rows_minimum_detectable_effect():
    rows = _close_rows()
    for row in rows:
        if not row.baseline and row.delta_ci_low is not None:
            row.mde = 0.02
    delta_ax = miou_figure(rows).axes[1]
    bands = [p for p in delta_ax.patches if np.isclose(p.get_height(), 0.04)]
    assert bands and all(np.isclose(p.get_y(), -0.02) for p in bands)
    low, high = delta_ax.get_ylim()
    assert low < -0.02 and high > 0.02  # the band fits


def test_no_delta_panel_without_deltas():
    rows = [Row(variant="a", status="finished", runs=1, finished=1, mIoU_mean=0.5)]
    assert len(miou_figure(rows).axes) == 1


def test_miou_png_shows_close_values_far_apart(tmp_path):
    """Pixel check: inside the axes, the two points are far apart vertically in the PNG."""
    rows = [
        Row(variant="a", status="finished", runs=1, finished=1, mIoU_mean=0.924, baseline=True),
        Row(variant="b", status="finished", runs=1, finished=1, mIoU_mean=0.930),
    ]
    fig = miou_figure(rows)
    fig.savefig(tmp_path / "m.png")
    pixels = np.asarray(Image.open(tmp_path / "m.png").convert("RGB")).astype(int)
    box = fig.axes[0].bbox  # display pixels, origin bottom-left
    top, bottom = pixels.shape[0] - int(box.y1), pixels.shape[0] - int(box.y0)
    inside = pixels[top:bottom, int(box.x0) : int(box.x1)]
    orange = np.abs(inside - (255, 127, 14)).sum(-1) < 30  # tab:orange, the baseline diamond
    blue = np.abs(inside - (31, 119, 180)).sum(-1) < 30  # tab:blue, the variant dot
    y_orange = np.median(np.nonzero(orange.sum(1) > 5)[0])  # skips the dashed baseline line
    y_blue = np.median(np.nonzero(blue.sum(1) > 5)[0])
    assert y_orange - y_blue > 0.25 * inside.shape[0]


# ------------------------------------------------------------------------------ heatmap
def _image(fig):
    return fig.axes[0].images[0]


def test_heatmap_colour_range_follows_the_data():
    rows = [
        Row(variant="a", status="finished", per_class_iou={"x": 0.91, "y": 0.93}),
        Row(variant="b", status="finished", per_class_iou={"x": 0.924, "y": 0.930}),
    ]
    fig = class_heatmap_figure(rows)  # no baseline: absolute
    assert _image(fig).get_clim() == pytest.approx((0.91, 0.93))
    assert fig.axes[1].get_ylabel() == "IoU"


def test_heatmap_against_the_baseline_is_diverging_and_centred_at_zero():
    fig = class_heatmap_figure(_rows())  # fcn8s-sum is the baseline
    low, high = _image(fig).get_clim()
    assert low == pytest.approx(-0.05) and high == pytest.approx(0.05)  # bicycle: 0.35 - 0.3
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0.91" in texts and "0.35" in texts  # annotated with the IoU, not the difference
    assert len(texts) == 4 + 2  # one per known cell
    absolute = class_heatmap_figure(_rows(), mode="absolute")
    assert _image(absolute).get_clim() == pytest.approx((0.3, 0.91))
    with pytest.raises(ValueError, match="baseline"):
        class_heatmap_figure(
            [Row(variant="a", status="finished", per_class_iou={"x": 1.0})], "delta"
        )


def test_heatmap_text_colour_contrasts_with_its_cell():
    rows = [Row(variant="a", status="finished", per_class_iou={"low": 0.1, "high": 0.9})]
    texts = {t.get_text(): t.get_color() for t in class_heatmap_figure(rows).axes[0].texts}
    assert texts == {"0.10": "white", "0.90": "black"}  # viridis: dark purple .. yellow


def test_heatmap_png_tells_close_values_apart(tmp_path):
    """Pixel check: cells of 0.924 and 0.930 get clearly different colours."""
    rows = [
        Row(variant="a", status="finished", per_class_iou={"x": 0.924, "y": 0.930, "z": 0.926}),
    ]
    fig = class_heatmap_figure(rows)
    path = tmp_path / "h.png"
    fig.savefig(path)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    height = pixels.shape[0]
    colours = []
    for j in (0, 1):
        x, y = fig.axes[0].transData.transform((j - 0.3, 0.3))  # off the annotation
        colours.append(pixels[height - int(round(y)), int(round(x))])
    assert np.abs(colours[0] - colours[1]).sum() > 200


@pytest.mark.parametrize("classes, variants", [(5, 1), (21, 20)])
def test_heatmap_size_is_sensible(tmp_path, classes, variants):
    rng = np.random.default_rng(0)
    rows = [
        Row(variant=f"variant-{i}", status="finished", baseline=i == 0,
            per_class_iou={f"class{j}": float(v) for j, v in enumerate(rng.uniform(size=classes))})
        for i in range(variants)
    ]  # fmt: skip
    path = plot_class_heatmap(rows, tmp_path / "h.png")
    with Image.open(path) as image:
        width, height = image.size
    assert 400 <= width <= 1800 and 250 <= height <= 1100
    assert width / classes >= 40 and height / variants >= 25  # room for the annotations
