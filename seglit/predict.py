"""``python -m seglit.predict RUN_DIR IMAGES``: segment a folder of images with a trained variant.

.. code-block:: bash

    python -m seglit.predict runs/ablation_skip/unet-concat-s0 path/to/images \\
        [--out DIR] [--checkpoint best|last|PATH] [--device cpu|cuda] [--batch-size N]

The net is rebuilt from the run's ``config.yaml`` with the checkpoint's weights
(:func:`seglit.trained.load_trained`) and run with the variant's own inference settings
(``model.inference``: whole image or sliding window, multi-scale / flip TTA, dense CRF), in
float32. For every image ``<stem>.<ext>`` it writes, at the image's original size:

* ``<stem>.png``: the label map as a palette PNG (pixel value = class index);
* ``<stem>_overlay.png``: the image with the predicted classes tinted and a legend below;

and, for the whole folder, ``index.html`` (file, overlay thumbnail, classes present with
their pixel share) and ``index.csv`` (the same, one column per class). The default output
folder is ``<run>/predict/version_<n>``; earlier predictions are never overwritten.

Everything that can be checked without a model is checked first, and every image is read
once: a missing run, an unfinished run, a missing checkpoint, a missing or empty folder, an
unreadable image or an output folder that holds files is one line
``seglit.predict: error: ...`` and exit status 2, before torch or Lightning is imported.
Images of the same size are batched together (up to ``--batch-size``); images are never
padded, so a prediction does not depend on the other images of its batch.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from seglit.data.io import read_image
from seglit.io import atomic_file, atomic_write_text
from seglit.run_folder import new_output_dir
from seglit.trained import BEST, TrainedRunError, check_trained
from seglit.visualize import prediction_file_names, write_prediction_files

if TYPE_CHECKING:
    from seglit.trained import TrainedNet

PROG = "seglit.predict"
INDEX_HTML = "index.html"
INDEX_CSV = "index.csv"
PROGRESS_EVERY = 50
"""A progress line every this many images."""
THUMBNAIL_WIDTH = 256
"""Largest width (CSS pixels) of the overlay thumbnails in ``index.html``."""


class PredictError(ValueError):
    """Input that cannot be predicted; the message names the file or folder and why."""


@dataclass
class ImageRecord:
    """One image of the folder and what was predicted for it (one row of the index)."""

    path: Path
    height: int
    width: int
    shares: np.ndarray | None = None
    """Fraction of the image's pixels predicted as each class."""

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width

    @property
    def mask_name(self) -> str:
        """File name of its palette PNG."""
        return prediction_file_names(self.path.stem)[0]

    @property
    def overlay_name(self) -> str:
        """File name of its overlay."""
        return prediction_file_names(self.path.stem)[1]


# --------------------------------------------------------------------- checks (no model)


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    What counts as an image is :data:`seglit.data.io.IMAGE_SUFFIXES` (as ``seglit
    predict``'s datamodule reads them).

    Raises:
        PredictError: ``folder`` does not exist, is not a folder or holds no image.
    """
    from seglit.data.io import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.exists():
        raise PredictError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise PredictError(f"{folder} is not a folder of images")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise PredictError(
            f"image folder {folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def read_records(files: Sequence[Path]) -> list[ImageRecord]:
    """Read every image once (so a broken file stops everything before it starts).

    Raises:
        PredictError: An image cannot be read (names it), or two images would write the
            same output file (e.g. ``a.jpg`` and ``a.png``).
    """
    records = []
    for path in files:
        try:
            height, width = read_image(path).shape[:2]
        except (OSError, ValueError) as err:  # read_image names the file
            raise PredictError(" ".join(str(err).split())) from None
        records.append(ImageRecord(path, int(height), int(width)))
    owners: dict[str, Path] = {}
    for record in records:
        for name in (record.mask_name, record.overlay_name):
            if name in owners:
                raise PredictError(
                    f"{owners[name].name} and {record.path.name} would both write {name}; "
                    "rename one of them"
                )
            owners[name] = record.path
    return records


def output_dir(run_dir: Path, out: str | None) -> Path:
    """The folder to write to: ``out``, or ``<run_dir>/predict/version_<n>``.

    Raises:
        PredictError: ``out`` already holds files (predictions never overwrite others).
    """
    return new_output_dir(run_dir, out, "predict", PredictError)


# ------------------------------------------------------------------------------ inference


def batches(records: Sequence[ImageRecord], batch_size: int) -> Iterator[list[ImageRecord]]:
    """Consecutive runs of same-sized images, at most ``batch_size`` each."""
    batch: list[ImageRecord] = []
    for record in records:
        if batch and (len(batch) == batch_size or record.size != batch[0].size):
            yield batch
            batch = []
        batch.append(record)
    if batch:
        yield batch


def predict_labels(trained: TrainedNet, images: Sequence[np.ndarray], device: str) -> np.ndarray:
    """Label maps ``(N, H, W)`` of same-sized uint8 RGB images ``(H, W, 3)``.

    The images are normalised by the datamodule's eval pipeline
    (:func:`seglit.data.transforms.build_eval_transform`) and run through
    :func:`seglit.inference.predict_logits` with the variant's inference settings; the CRF,
    when on, gets the raw RGB images.
    """
    import torch

    from seglit.data.transforms import build_eval_transform
    from seglit.inference import predict_logits

    transform = build_eval_transform(trained.mean, trained.std)
    x = torch.stack([transform(image=image)["image"] for image in images]).to(device)
    raw = None
    if trained.inference.crf:
        raw = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # RGB 0..255
        raw = raw.to(device=device, dtype=torch.float32)
    with torch.inference_mode():
        log_probs = predict_logits(trained.net, x, trained.inference, raw_images=raw)
    return log_probs.argmax(1).to(torch.uint8).cpu().numpy()


def class_shares(label_map: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the pixels of ``label_map`` in each class, ``(num_classes,)``."""
    counts = np.bincount(label_map.reshape(-1), minlength=num_classes)[:num_classes]
    return counts / max(label_map.size, 1)


# -------------------------------------------------------------------------------- outputs


def write_prediction(
    out: Path, record: ImageRecord, image: np.ndarray, labels: np.ndarray, trained: TrainedNet
) -> None:
    """Write ``<stem>.png`` and ``<stem>_overlay.png`` of one image."""
    write_prediction_files(
        out, record.path.stem, image, labels, trained.palette, trained.class_names
    )


def present(record: ImageRecord, class_names: Sequence[str]) -> list[tuple[int, str, float]]:
    """``(index, name, share)`` of every class predicted in the image, largest share first."""
    assert record.shares is not None
    order = np.argsort(-record.shares, kind="stable")
    return [(int(c), class_names[c], float(record.shares[c])) for c in order if record.shares[c]]


def index_csv(records: Sequence[ImageRecord], class_names: Sequence[str]) -> str:
    """``index.csv``: file, size, output files and the pixel share of every class (0..1)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "height", "width", "mask", "overlay", *class_names])
    for r in records:
        assert r.shares is not None
        shares = [f"{s:.6f}" for s in r.shares]
        writer.writerow([r.path.name, r.height, r.width, r.mask_name, r.overlay_name, *shares])
    return buffer.getvalue()


def index_html(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    title: str,
) -> str:
    """``index.html``: a table of file, overlay thumbnail and classes present (with share)."""
    rows = []
    for r in records:
        classes = "<br>".join(
            f'<span class="sw" style="background:rgb{tuple(palette[c])}"></span>'
            f"{html.escape(name)} {100 * share:.1f}%"
            for c, name, share in present(r, class_names)
        )
        overlay_href, mask_href = _href(r.overlay_name), _href(r.mask_name)
        rows.append(
            f"<tr><td>{html.escape(shown_name(r.path.name))}<br><small>{r.width}x{r.height}, "
            f'<a href="{mask_href}">mask</a></small></td>'
            f'<td><a href="{overlay_href}"><img src="{overlay_href}" '
            f'style="max-width:{THUMBNAIL_WIDTH}px" '
            f'alt="{html.escape(shown_name(r.overlay_name))}"></a></td>'
            f"<td>{classes}</td></tr>"
        )
    style = (
        "body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;text-align:left}"
        ".sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;"
        "border:1px solid #000}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{style}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
        "<table><tr><th>file</th><th>overlay</th><th>classes (pixel share)</th></tr>\n"
        + "\n".join(rows)
        + "\n</table></body></html>\n"
    )


def shown_name(name: str) -> str:
    """A file name as text a page can show: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def _href(name: str) -> str:
    """A link to a file of the same folder: its bytes, exactly, percent-encoded."""
    return quote(os.fsencode(name))


def write_index(out: Path, records: Sequence[ImageRecord], trained: TrainedNet) -> None:
    """Write ``index.csv`` and ``index.html`` into ``out``.

    ``index.csv`` holds each file name as the file system gives it (bytes that are not UTF-8
    kept as they are); ``index.html`` shows a readable name and links to the exact file.
    """
    with atomic_file(out / INDEX_CSV, "wb") as handle:
        handle.write(os.fsencode(index_csv(records, trained.class_names)))
    title = f"{trained.run_dir.name}: {trained.checkpoint.name}"
    page = index_html(records, trained.class_names, trained.palette, title)
    atomic_write_text(out / INDEX_HTML, page)


def describe_inference(trained: TrainedNet) -> str:
    """The variant's inference settings in a few words (for the first printed line)."""
    config = trained.inference
    words = [config.mode]
    if config.mode == "slide":
        words[0] += f" {config.crop_size[0]}x{config.crop_size[1]}"
    if config.scales != [1.0]:
        words.append(f"scales {config.scales}")
    if config.flip:
        words.append("flip")
    if config.crf:
        words.append("crf")
    return ", ".join(words)


# ---------------------------------------------------------------------------- the command


def predict_folder(
    trained: TrainedNet,
    records: Sequence[ImageRecord],
    out: Path,
    device: str = "cpu",
    batch_size: int = 1,
    log: Callable[[str], object] = print,
) -> None:
    """Predict every image of ``records`` and write its outputs and the index into ``out``.

    Args:
        trained: The loaded variant (:func:`seglit.trained.load_trained`).
        records: The images (:func:`read_records`).
        out: Output folder (created).
        device: ``"cpu"`` or ``"cuda"``.
        batch_size: Most same-sized images run in one forward pass.
        log: Where progress lines go.
    """
    out.mkdir(parents=True, exist_ok=True)
    trained.net.to(device)
    start, done = time.perf_counter(), 0
    for batch in batches(records, batch_size):
        images = [read_image(r.path) for r in batch]
        labels = predict_labels(trained, images, device)
        for record, image, label_map in zip(batch, images, labels):
            write_prediction(out, record, image, label_map, trained)
            record.shares = class_shares(label_map, trained.num_classes)
        before, done = done, done + len(batch)
        if done // PROGRESS_EVERY > before // PROGRESS_EVERY:
            log(f"{PROG}: {done}/{len(records)} images ({time.perf_counter() - start:.1f} s)")
    write_index(out, records, trained)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Segment a folder of images with a finished variant's checkpoint.",
    )
    parser.add_argument("run_dir", type=Path, help="run folder, e.g. runs/<recipe>/<variant>")
    parser.add_argument("images", type=Path, help="folder of images to segment")
    parser.add_argument("--out", help="output folder (default: <run_dir>/predict/version_<n>)")
    parser.add_argument(
        "--checkpoint", default=BEST, help="best (default), last, or a checkpoint path"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--batch-size", type=int, default=4, help="same-sized images per pass")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m seglit.predict``; exit status 2 on a named error."""
    args = parse_args(argv)
    try:
        found = check_trained(args.run_dir, args.checkpoint)
        records = read_records(list_images(args.images))
        out = output_dir(found.run_dir, args.out)
        import torch  # only now: every check above runs without torch or Lightning

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise PredictError("--device cuda, but torch sees no CUDA device")
        from seglit.trained import load_trained

        trained = load_trained(found.run_dir, str(found.checkpoint))
    except (PredictError, TrainedRunError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"{PROG}: {len(records)} images from {args.images} with {found.run_dir} "
        f"({trained.checkpoint.name}, {device}, inference: {describe_inference(trained)})",
        flush=True,
    )
    predict_folder(trained, records, out, device, args.batch_size)
    print(f"{PROG}: index: {out / INDEX_HTML} (and {INDEX_CSV})")
    print(f"{PROG}: {len(records)} predictions in {out}")


if __name__ == "__main__":
    main()
