"""Writing predictions for ``seglit predict``: palette masks, overlays with a legend, panels.

The pictures themselves come from :mod:`seglit.visualize`; this module only wires them to
Lightning's prediction loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from seglit.visualize import comparison_panel, denormalize, legend, overlay, palette_image


class PredictionWriter(BasePredictionWriter):
    """Writes, for every prediction, ``<name>.png``, ``<name>_overlay.jpg`` and maybe a panel.

    * ``<name>.png``: the label map as a palette PNG (pixel value = class index, VOC style);
    * ``<name>_overlay.jpg``: the image with the predicted non-background classes tinted
      (background and void untouched, class boundaries outlined) and a legend of the classes
      present;
    * ``<name>_panel.png``, only when the batch carries ground-truth masks (``"mask"``):
      image | ground truth | prediction | errors (see :func:`seglit.visualize.comparison_panel`).

    Args:
        output_dir: Destination folder; ``None`` uses ``<default_root_dir>/predictions``.
        overlay_alpha: Opacity of the class colours in the overlays and panels (0 disables
            both).
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
        class_names = list(datamodule.class_names)
        out = self._dir(trainer)
        preds = prediction["pred"].numpy()
        sizes = prediction.get("size") or [p.shape for p in preds]
        masks = batch.get("mask")
        for i, name in enumerate(prediction["name"]):
            height, width = (int(v) for v in sizes[i])
            label_map = preds[i, :height, :width]
            stem = Path(str(name)).stem
            palette_image(label_map, palette).save(out / f"{stem}.png")
            if self.overlay_alpha <= 0:
                continue
            rgb = denormalize(
                batch["image"][i, :, :height, :width], datamodule.mean, datamodule.std
            )
            tinted = overlay(rgb, label_map, palette, self.overlay_alpha)
            tinted = legend(tinted, label_map, class_names, palette)
            Image.fromarray(tinted).save(out / f"{stem}_overlay.jpg", quality=90)
            if masks is not None:
                target = masks[i, :height, :width].cpu().numpy()
                panel = comparison_panel(
                    rgb, target, label_map, palette, class_names, self.overlay_alpha
                )
                Image.fromarray(panel).save(out / f"{stem}_panel.png")
