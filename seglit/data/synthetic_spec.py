"""``SyntheticSpec``: every setting the built-in synthetic dataset is a pure function of.

One frozen dataclass owns the generator's settings (image sizes, objects, void band, seed, split
sizes and the **synthetic lab** factors of ``seglit.data.synthetic_lab``): the renderer
(``seglit.data.synthetic_render.render_sample``), the writers and datamodules take one, and it
names the marker file's contents and the cache folder (``SyntheticSpec.marker``,
``SyntheticSpec.cache_root``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seglit.data.synthetic_lab import (
    _LAB_VERSIONS,
    CONTEXT_CUE_SHARE,
    FAR_CUE_DISTANCE,
    far_cue_min_width,
    lab_params,
)

_FORMAT_VERSION = 1


def cache_dir() -> Path:
    """seglit's cache folder: ``$SEGLIT_CACHE`` or ``~/.cache/seglit``."""
    return Path(os.environ.get("SEGLIT_CACHE") or Path.home() / ".cache" / "seglit")


@dataclass(frozen=True)
class SyntheticSpec:
    """Every setting the synthetic dataset is a pure function of, in one place: the renderer
    (``render_sample``), the writers (``write_synthetic_voc``, ``write_synthetic_cityscapes``)
    and the synthetic datamodules take one.

    Image ``i`` depends only on ``(seed, i)`` and the image and lab settings; ``num_train``
    and ``num_val`` decide how many images there are and which split each goes to. Building a
    spec checks nothing; ``check()`` (which the writers call) does. Two specs describe the
    same data when their ``marker()`` is the same.
    """

    num_train: int = 160
    """Number of training images."""
    num_val: int = 40
    """Number of validation images (the datamodules' test split too)."""
    seed: int = 0
    """Random seed; image ``i`` depends only on ``(seed, i)`` and the other settings."""
    min_size: int = 57
    """Smallest image side in pixels."""
    max_size: int = 131
    """Largest image side in pixels."""
    max_objects: int = 4
    """Most shapes per image (each image has at least one)."""
    void_width: int = 1
    """Half-width in pixels of the 255 band along object boundaries (0: none)."""
    fine_structure: float = 0.0
    """Lab factor in [0, 1] (0 = off): thin curves, cracks, specks, hollow and ragged objects
    (see ``LAB_FACTORS``)."""
    context: float = 0.0
    """Lab factor in [0, 1]: share of ambiguous objects whose class only the image-level
    background colour tells."""
    scale_variation: float = 0.0
    """Lab factor in [0, 1]: object sizes from 4 px to the whole image."""
    context_cue_share: float = CONTEXT_CUE_SHARE
    """With ``context`` on, the share in (0.5, 1] of the visible background in the cue class's
    colour family (1: the cue touches every object, so a small window around a pixel tells its
    class: the control of a context ablation). Ignored (and left out of markers and cache
    keys) with ``context`` off."""
    far_cue: float = 0.0
    """Lab factor in [0, 1]: share of objects that are grey boxes whose class only a band
    ``cue_distance`` px away tells (the ASPP rates' field of view)."""
    cue_distance: int = FAR_CUE_DISTANCE
    """With ``far_cue`` on, the gap in px between a far-cue box and its band (2: the adjacent
    control). Ignored (and left out of markers and cache keys) with ``far_cue`` off."""

    def lab(self) -> dict[str, float]:
        """The lab factors that are on (``lab_params``: what markers and cache keys hold).

        Raises:
            ValueError: a lab factor, ``context_cue_share`` or ``cue_distance`` is out of
                range, or no image of ``max_size`` px holds a far-cue box ``cue_distance``
                px from its band.
        """
        lab = lab_params(self)
        if "far_cue" in lab and self.max_size < far_cue_min_width(self.cue_distance):
            raise ValueError(
                f"cue_distance={self.cue_distance} does not fit the images: a far-cue box, "
                f"its band and the margins need {far_cue_min_width(self.cue_distance)} px, "
                f"max_size is {self.max_size} (raise max_size or lower cue_distance)"
            )
        return lab

    def check(self) -> dict[str, float]:
        """Check every setting; returns ``lab()``.

        Raises:
            ValueError: a setting is out of range.
        """
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(
                f"num_train and num_val must be >= 1, got {self.num_train} and {self.num_val}"
            )
        if not 16 <= self.min_size <= self.max_size:
            raise ValueError(
                f"need 16 <= min_size <= max_size, got {self.min_size} and {self.max_size}"
            )
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {self.max_objects}")
        if self.void_width < 0:
            raise ValueError(f"void_width must be >= 0, got {self.void_width}")
        return self.lab()

    def marker(self, layout: str = "voc") -> dict[str, Any]:
        """The parameters a writer records in the marker file (in the file's key order) and
        compares to reuse a tree: format version, layout (Cityscapes only), every image
        setting, the lab factors that are on and their design versions."""
        lab = self.lab()
        return {
            "format_version": _FORMAT_VERSION,
            **({} if layout == "voc" else {"layout": layout}),
            "num_train": self.num_train,
            "num_val": self.num_val,
            "seed": self.seed,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "max_objects": self.max_objects,
            "void_width": self.void_width,
            **lab,
            **_lab_versions(lab),
        }

    def cache_args(self) -> dict[str, Any]:
        """The settings that name the cache folder: ``num_train``, ``num_val``, ``seed``, the
        image sizes when either differs from the default, ``max_objects`` / ``void_width``
        when not the default, and ``lab()``. Settings at their defaults are left out, so data
        made before a setting existed keeps its folder."""
        default = SyntheticSpec()
        args: dict[str, Any] = {
            "num_train": self.num_train,
            "num_val": self.num_val,
            "seed": self.seed,
        }
        if (self.min_size, self.max_size) != (default.min_size, default.max_size):
            args.update(min_size=self.min_size, max_size=self.max_size)
        for name in ("max_objects", "void_width"):
            if getattr(self, name) != getattr(default, name):
                args[name] = getattr(self, name)
        args.update(self.lab())
        return args

    def cache_key(self) -> str:
        """10 hex digits of the SHA-1 of ``cache_args()`` as sorted JSON."""
        key = json.dumps(self.cache_args(), sort_keys=True).encode()
        return hashlib.sha1(key).hexdigest()[:10]

    def cache_root(self, layout: str) -> Path:
        """``<cache>/synthetic_<layout>-<cache_key()>`` (``<cache>``: ``cache_dir()``)."""
        return cache_dir() / f"synthetic_{layout}-{self.cache_key()}"


def _lab_versions(lab: dict[str, float]) -> dict[str, int]:
    """The marker's ``<factor>_version`` entries of the factors that are on."""
    return {f"{name}_version": v for name, v in _LAB_VERSIONS.items() if name in lab}
