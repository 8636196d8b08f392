"""The synthetic lab's factors: their definitions, descriptions and parameters.

The **synthetic lab** makes the built-in synthetic data hard in named ways, one mechanism of the
lecture each: ``fine_structure`` (thin lines, specks, ragged edges: skip connections,
full-resolution decoding), ``context`` (objects whose class only the image-level background cue
gives away: large receptive fields, ASPP, image pooling), ``scale_variation`` (the same class
from a few pixels to the whole image: multi-scale context) and ``far_cue`` (objects whose class
only a band ``cue_distance`` px away tells: the field of view of the ASPP rates). Each is a
strength in [0, 1]; ``LAB_FACTORS`` / ``describe_lab()`` describe them. With every factor at 0
the output is bit for bit the original dataset.

This module holds what names and checks the factors (``lab_params``, the defaults, the far-cue
geometry); ``seglit.data.synthetic_spec.SyntheticSpec`` holds their settings,
``seglit.data.synthetic_render`` draws them and ``seglit.data.synthetic`` writes and caches the
data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seglit.data.synthetic_spec import SyntheticSpec

_LAB_VERSIONS = {"context": 3}
"""Design version of each lab factor whose drawing has changed since it was introduced; it is
recorded in the marker (``<factor>_version``) when the factor is on, so data drawn by an
earlier design under the same arguments is regenerated, never reused."""

_LAB_STREAM = 0x5EED1AB  # third seed word of the lab's random stream (image i: [seed, i, this])

CONTEXT_CUE_SHARE = 0.65
"""Default share of the visible background in the cue class's colour family (``context``)."""

FAR_CUE_DISTANCE = 60
"""Default gap (px) between a far-cue box and its cue band (drawn by
``seglit.data.synthetic_render._far_cue_boxes``)."""
# Geometry of the far-cue factor, from the receptive fields ``seglit.models.card`` computes for
# DeepLab v3 on stem + layer1 (43 px, stride 4; ``backbone_stages: 1``, no image pooling): a
# 3x3 ASPP branch at rate r puts its outer taps 4r px from the pixel, each seeing +-21 px, and
# the whole net reaches 119 / 191 / 335 px with rates (3, 6, 9) / (6, 12, 18) / (12, 24, 36).
# Rates (3, 6, 9) reach 36 + 21 = 57 px (59 with the final upsampling): the band, >= 60 px
# away, is out of their sight for every pixel of a box. A box is at most 16 px wide, so the
# band covers [60 + t, 96 + t] px from a pixel t <= 16 px inside: the rate-18 tap (72 px)
# lies in it or within 21 px of it, and the rate-24 tap (96 px) lies in it for every t.
_FAR_BOX_WIDTH = (8, 16)  # width range (px) of a far-cue box
_FAR_BOX_HEIGHT = (20, 32)  # height range (px) of a far-cue box and its band
_FAR_BAND_WIDTH = 36  # px: wide enough that a 24-rate tap (96 px) always lands in it
_FAR_GAP = 4  # px at least between the rows of two far-cue boxes and at the image border


@dataclass(frozen=True)
class LabFactor:
    """One factor of the synthetic lab: what it draws, which mechanism it tests, its strength.

    Attributes:
        name: keyword of the writers, datamodules (``data.init_args.<name>``) and, with ``-``
            for ``_``, of ``python -m seglit.data synthetic``.
        stresses: what the factor puts into the images.
        mechanism: the lecture mechanism it is built to reward (and which models it separates).
        strength: what the strength ``p`` in [0, 1] does (0 = off, today's data).
    """

    name: str
    stresses: str
    mechanism: str
    strength: str


LAB_FACTORS: dict[str, LabFactor] = {
    factor.name: factor
    for factor in (
        LabFactor(
            "fine_structure",
            "thin curves and background cracks 1-3 px wide, specks of 2-8 px, hollow outlines, "
            "ragged object edges",
            "skip connections and full-resolution decoding: FCN-32s vs FCN-16s/8s vs U-Net",
            "about 8p curves and 12p specks per image (Poisson), each object hollow with "
            "probability p/2, edges moved in and out by smooth noise of std 2p px",
        ),
        LabFactor(
            "context",
            "large ambiguous objects (one grey grain texture and blob shape for every class) "
            "whose class only the background colours of the whole image tell",
            "receptive field and image-level context: dilation, ASPP rates, image pooling, "
            "output stride",
            "each object is ambiguous with probability p; when p > 0 the background is a "
            "patchwork of the cue class's colour family (65%: `context_cue_share`) and a "
            "decoy's",
        ),
        LabFactor(
            "scale_variation",
            "the same class from 4 px to the whole short side of the image, textures scaled "
            "along, large objects drawn first",
            "multi-scale context: ASPP with several rates, multi-scale inference",
            "object size interpolated geometrically from 25-60% of the short side (p = 0) to "
            "log-uniform in [4 px, short side] (p = 1)",
        ),
        LabFactor(
            "far_cue",
            "grey boxes (one grain texture for every class) whose class only a band in the "
            "class's colour family tells, `cue_distance` px to their left or right in the "
            "same rows",
            "the field of view of the ASPP rates on a shallow backbone "
            "(`backbone_stages: 1`): small rates cannot reach the band, larger ones can",
            "each object is a far-cue box with probability p (up to 4 per image, one class "
            "each, in separate rows); the band lies `cue_distance` px away (default "
            f"{FAR_CUE_DISTANCE}; 2: the adjacent control)",
        ),
    )
}
"""The factors of the synthetic lab, by name (the single source of their descriptions)."""


def describe_lab() -> str:
    """The lab's factors as a Markdown table (the one in ``docs/datasets.md``)."""
    rows = [
        "| factor | what it stresses | lecture mechanism it tests | strength p |",
        "|---|---|---|---|",
    ]
    for f in LAB_FACTORS.values():
        rows.append(f"| `{f.name}` | {f.stresses} | {f.mechanism} | {f.strength} |")
    return "\n".join(rows) + "\n"


def lab_params(spec: SyntheticSpec) -> dict[str, float]:
    """The non-zero lab factors of ``spec`` as a dict (what goes into the marker file and cache
    keys).

    Factors at 0 are left out, and ``context_cue_share`` / ``cue_distance`` are kept only
    when their factor (``context`` / ``far_cue``) is on and they are not the default, so data
    made without them keeps its original cache key.

    Args:
        spec: the settings; only the lab factors (``LAB_FACTORS``: strengths in [0, 1]),
            ``context_cue_share`` (in (0.5, 1]) and ``cue_distance`` (px, >= 1) are read.

    Returns:
        Factor (and non-default share or distance) name -> value.

    Raises:
        ValueError: a strength is not a number in [0, 1], ``context_cue_share`` is not a
            number in (0.5, 1], or ``cue_distance`` is not an int >= 1.
    """
    params = {}
    for name in LAB_FACTORS:
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= value <= 1.0:  # also rejects nan
            raise ValueError(f"{name} must be in [0, 1] (0 = off), got {value}")
        if value > 0:
            params[name] = float(value)
    share = spec.context_cue_share
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0.5 < share <= 1.0:
        raise ValueError(
            "context_cue_share must be a number in (0.5, 1] (the cue's colour family must "
            f"cover most of the background), got {share!r}"
        )
    if "context" in params and share != CONTEXT_CUE_SHARE:
        params["context_cue_share"] = float(share)
    cue_distance = spec.cue_distance
    if isinstance(cue_distance, bool) or not isinstance(cue_distance, int) or cue_distance < 1:
        raise ValueError(f"cue_distance must be an int >= 1 (px), got {cue_distance!r}")
    if "far_cue" in params and cue_distance != FAR_CUE_DISTANCE:
        params["cue_distance"] = cue_distance
    return params


def far_cue_min_width(cue_distance: int) -> int:
    """Narrowest image (px) that holds a far-cue box, its cue band ``cue_distance`` px away
    and the border margins; narrower images get no far-cue boxes."""
    return _FAR_BOX_WIDTH[0] + cue_distance + _FAR_BAND_WIDTH + 2 * _FAR_GAP
