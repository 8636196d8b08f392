"""Writing predictions: colourised palette masks and image overlays for ``seglit predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image


def palette_image(label_map: np.ndarray, palette: list[tuple[int, int, int]]) -> Image.Image:
    """A mode-"P" PNG image whose pixel values are class indices, coloured by ``palette``."""
    image = Image.fromarray(label_map.astype(np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    image.putpalette(flat + [0, 0, 0] * (256 - len(palette)))
    return image


def overlay(
    rgb: np.ndarray, label_map: np.ndarray, palette: list[tuple[int, int, int]], alpha: float = 0.5
) -> np.ndarray:
    """Blend the class colours over an RGB image (uint8, H x W x 3)."""
    colours = np.zeros((256, 3), dtype=np.float32)
    colours[: len(palette)] = np.asarray(palette, dtype=np.float32)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colours[label_map]
    return blended.clip(0, 255).astype(np.uint8)


class PredictionWriter(BasePredictionWriter):
    """Writes ``<name>.png`` (palette mask) and ``<name>_overlay.jpg`` for every prediction.

    Args:
        output_dir: Destination folder; ``None`` uses ``<default_root_dir>/predictions``.
        overlay_alpha: Opacity of the class colours in the overlays (0 disables overlays).
    """

    def __init__(self, output_dir: str | None = None, overlay_alpha: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.overlay_alpha = overlay_alpha

    def _dir(self, trainer: L.Trainer) -> Path:
        path = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_on_batch_end(  # noqa: D102
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        datamodule = trainer.datamodule
        palette = list(datamodule.palette)
        mean = torch.tensor(datamodule.mean).view(3, 1, 1)
        std = torch.tensor(datamodule.std).view(3, 1, 1)
        out = self._dir(trainer)
        preds = prediction["pred"].numpy()
        sizes = prediction.get("size") or [p.shape for p in preds]
        for i, name in enumerate(prediction["name"]):
            height, width = (int(v) for v in sizes[i])
            label_map = preds[i, :height, :width]
            stem = Path(str(name)).stem
            palette_image(label_map, palette).save(out / f"{stem}.png")
            if self.overlay_alpha > 0:
                image = batch["image"][i, :, :height, :width].detach().cpu().float()
                rgb = ((image * std + mean) * 255).clamp(0, 255).permute(1, 2, 0).numpy()
                blended = overlay(rgb.astype(np.uint8), label_map, palette, self.overlay_alpha)
                Image.fromarray(blended).save(out / f"{stem}_overlay.jpg", quality=90)
