"""``python -m seglit.predict``: a trained variant segments a folder of images.

One tiny U-Net is trained for an epoch through the Lightning CLI into a run folder (as the
recipe runner lays it out) and reused by every test of this module.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from seglit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglit.inference import InferenceConfig, predict_logits
from seglit.models import UNet
from seglit.predict import main
from seglit.run_folder import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE
from seglit.trained import TrainedRunError, load_trained, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]
SIZES = {"a.jpg": (61, 83), "b.png": (97, 131), "c.png": (97, 131), "d.jpg": (75, 59)}
"""Image name -> (height, width): odd sizes, two of them equal (batched together)."""


@pytest.fixture(scope="module")
def run_dir(finished_run: Path) -> Path:
    """The session's finished tiny variant (``finished_run``)."""
    return finished_run


@pytest.fixture(scope="module")
def varied_checkpoint(run_dir: Path, tmp_path_factory) -> Path:
    """The best checkpoint with a random score layer: after one epoch the net predicts only
    background, which would make a label-by-label comparison prove little."""
    checkpoint = torch.load(resolve_checkpoint(run_dir), weights_only=True)
    generator = torch.Generator().manual_seed(0)
    state = checkpoint["state_dict"]
    state["net.head.weight"] = torch.randn(state["net.head.weight"].shape, generator=generator)
    state["net.head.bias"] = torch.zeros_like(state["net.head.bias"])
    path = tmp_path_factory.mktemp("ckpt") / "varied.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def images(synthetic_root: Path, tmp_path_factory) -> Path:
    """Synthetic photos cut to the odd sizes of :data:`SIZES`, as JPEG and PNG files."""
    folder = tmp_path_factory.mktemp("images")
    sources = sorted((synthetic_root / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))
    for (name, (h, w)), source in zip(SIZES.items(), sources):
        picture = Image.open(source).convert("RGB").resize((w, h), Image.BILINEAR)
        picture.save(folder / name, quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


def net_labels(checkpoint: Path, image: np.ndarray) -> np.ndarray:
    """The argmax of the checkpoint's U-Net logits, computed here without seglit.predict."""
    net = UNet(num_classes=5, base_width=4, depth=2)
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    mean = np.array(IMAGENET_MEAN, np.float32)
    std = np.array(IMAGENET_STD, np.float32)
    x = (image.astype(np.float32) / 255.0 - mean) / std
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(x).permute(2, 0, 1)[None])
    return logits.argmax(1)[0].numpy()


def run_predict(argv: list[str], capsys) -> list[str]:
    main([str(a) for a in argv])
    return capsys.readouterr().out.strip().splitlines()


def test_predict_writes_every_image_at_its_size_with_the_nets_labels(
    run_dir, varied_checkpoint, images, tmp_path, capsys
):
    out = tmp_path / "pred"
    lines = run_predict(
        [run_dir, images, "--out", out, "--checkpoint", varied_checkpoint, "--batch-size", 2],
        capsys,
    )
    assert lines[-1] == f"seglit.predict: {len(SIZES)} predictions in {out}"
    assert lines[-2] == f"seglit.predict: index: {out / 'index.html'} (and index.csv)"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{Path(n).stem}.png" for n in SIZES]
        + [f"{Path(n).stem}_overlay.png" for n in SIZES]
        + ["index.csv", "index.html"]
    )
    seen_classes = set()
    for name, (h, w) in SIZES.items():
        mask = Image.open(out / f"{Path(name).stem}.png")
        assert mask.mode == "P" and mask.size == (w, h)
        labels = np.asarray(mask)
        image = np.asarray(Image.open(images / name).convert("RGB"))
        np.testing.assert_array_equal(labels, net_labels(varied_checkpoint, image))
        seen_classes |= set(np.unique(labels).tolist())
        tinted = Image.open(out / f"{Path(name).stem}_overlay.png")
        assert tinted.mode == "RGB" and tinted.size[0] == w and tinted.size[1] >= h
        legend_rows = np.asarray(tinted)[h:]  # the legend, below the picture: never over it
        assert legend_rows.shape[0] == 0 or (legend_rows == 255).mean() > 0.5
    assert len(seen_classes) > 1  # the comparison above is not all background

    with open(out / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == list(SIZES)
    for row in rows:
        labels = np.asarray(Image.open(out / row["mask"]))
        counts = np.bincount(labels.reshape(-1), minlength=5) / labels.size
        names = ["background", "disc", "box", "triangle", "blob"]
        np.testing.assert_allclose([float(row[c]) for c in names], counts, atol=1e-6)
        assert (int(row["height"]), int(row["width"])) == labels.shape
    page = (out / "index.html").read_text()
    for name in SIZES:
        assert name in page and f'src="{Path(name).stem}_overlay.png"' in page


def test_predict_defaults_to_a_new_version_folder_of_the_run(run_dir, images, capsys):
    first = run_predict([run_dir, images], capsys)
    second = run_predict([run_dir, images, "--checkpoint", "last"], capsys)
    v0, v1 = run_dir / "predict" / "version_0", run_dir / "predict" / "version_1"
    assert str(v0) in first[-1] and str(v1) in second[-1]
    assert "best-epoch" in first[0] and LAST_CHECKPOINT in second[0]
    assert (v0 / "a.png").is_file() and (v1 / "a.png").is_file()


def run_with_inference(run_dir: Path, checkpoint: Path, dest: Path, inference: dict) -> Path:
    """A copy of the finished run whose config sets ``model.inference``; its checkpoint keeps
    the InferenceConfig in its hyperparameters, as Lightning saves it."""
    (dest / CHECKPOINT_DIR).mkdir(parents=True)
    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    config["model"]["inference"] = inference
    (dest / CONFIG_FILE).write_text(yaml.safe_dump(config))
    (dest / METRICS_FILE).write_text((run_dir / METRICS_FILE).read_text())
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["inference"] = InferenceConfig(**inference)
    torch.save(saved, dest / CHECKPOINT_DIR / LAST_CHECKPOINT)
    return dest


def test_load_trained_rebuilds_the_net_and_reads_the_inference_settings(run_dir, tmp_path):
    """The InferenceConfig in the checkpoint still loads with ``weights_only=True``."""
    checkpoint = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    run = run_with_inference(
        run_dir, checkpoint, tmp_path / "tta", {"flip": True, "scales": [0.75, 1]}
    )
    trained = load_trained(run, "last")
    assert trained.inference.flip and trained.inference.scales == [0.75, 1.0]
    assert trained.class_names == ["background", "disc", "box", "triangle", "blob"]
    assert trained.mean == IMAGENET_MEAN and trained.std == IMAGENET_STD
    assert not trained.net.training
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    for key, value in trained.net.state_dict().items():
        torch.testing.assert_close(value, state[f"net.{key}"], rtol=0, atol=0)


def test_predict_runs_the_variants_inference_settings_crf_included(
    run_dir, varied_checkpoint, images, tmp_path, capsys
):
    inference = {"crf": True, "crf_iterations": 2, "flip": True}
    run = run_with_inference(run_dir, varied_checkpoint, tmp_path / "crf", inference)
    lines = run_predict([run, images, "--checkpoint", "last", "--out", tmp_path / "out"], capsys)
    assert "inference: whole, flip, crf" in lines[0]
    trained = load_trained(run, "last")
    config = InferenceConfig(**inference)
    for name in SIZES:
        image = np.array(Image.open(images / name).convert("RGB"))
        x = (image.astype(np.float32) / 255 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        x = torch.from_numpy(x).permute(2, 0, 1)[None]
        raw = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        scores = predict_logits(trained.net, x, config, raw_images=raw)[0]
        expected = scores.argmax(0).numpy()
        labels = np.asarray(Image.open(tmp_path / "out" / f"{Path(name).stem}.png"))
        # Batching and thread counts change the last bits of the scores: near-ties may flip.
        top2 = scores.topk(2, dim=0).values
        decided = (top2[0] - top2[1] > 1e-5).numpy()
        assert decided.mean() > 0.95
        np.testing.assert_array_equal(labels[decided], expected[decided])


def test_load_trained_refuses_a_checkpoint_of_another_net(run_dir, tmp_path):
    run = tmp_path / "other"
    run.mkdir()
    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    config["model"]["net"]["init_args"]["base_width"] = 8
    (run / CONFIG_FILE).write_text(yaml.safe_dump(config))
    (run / METRICS_FILE).write_text((run_dir / METRICS_FILE).read_text())
    with pytest.raises(TrainedRunError, match="does not fit the net"):
        load_trained(run, str(resolve_checkpoint(run_dir)))


# ------------------------------------------------------------------------------ errors

CHECK_IMPORTS = (
    "import runpy, sys\n"
    "sys.argv = ['seglit.predict', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('seglit.predict', run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'wandb'})\n"
    "    print('imported:', heavy)\n"
)


def predict_process(*args: object) -> subprocess.CompletedProcess:
    """``python -m seglit.predict ARGS``, reporting which heavy modules it imported."""
    return subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seglit.predict: error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert "imported: []" in result.stdout  # neither Lightning nor W&B


def fake_run(folder: Path, status: str | None = "finished", checkpoints: bool = True) -> Path:
    """A run folder with a config, optionally a metrics.json and empty checkpoint files."""
    folder.mkdir(parents=True)
    net = {"class_path": "seglit.models.UNet", "init_args": {"base_width": 4, "depth": 2}}
    data = {"class_path": "seglit.data.SyntheticVOCDataModule"}
    (folder / CONFIG_FILE).write_text(yaml.safe_dump({"model": {"net": net}, "data": data}))
    if status is not None:
        (folder / METRICS_FILE).write_text(json.dumps({"status": status}))
    if checkpoints:
        (folder / CHECKPOINT_DIR).mkdir()
        (folder / CHECKPOINT_DIR / "best-epoch000-step000001.ckpt").write_bytes(b"")
    return folder


def test_a_missing_run_is_one_line_and_quick(tmp_path, images):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "seglit.predict", str(tmp_path / "nope"), str(images)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"seglit.predict: error: run folder {tmp_path / 'nope'} does not exist"
    ]
    assert result.stdout == ""
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert_one_error_line(predict_process(tmp_path / "nope", images), "does not exist")


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing_folder", ["image folder", "does not exist"]),
        ("empty_folder", ["holds no images"]),
        ("unreadable_image", ["broken.jpg"]),
        ("unfinished_run", ["no finished run", "failed"]),
        ("no_metrics", ["no finished run", METRICS_FILE]),
        ("missing_best", ["holds no best-*.ckpt"]),
        ("missing_last", [LAST_CHECKPOINT, "does not exist"]),
        ("missing_path", ["checkpoint", "other.ckpt", "does not exist"]),
        ("used_out", ["already holds files"]),
    ],
)
def test_input_errors_are_one_named_line_before_anything_starts(tmp_path, images, case, words):
    run = fake_run(
        tmp_path / "run",
        status={"unfinished_run": "failed", "no_metrics": None}.get(case, "finished"),
        checkpoints=case != "missing_best",
    )
    folder, extra = images, []
    if case == "missing_folder":
        folder = tmp_path / "nothing"
    elif case == "empty_folder":
        folder = tmp_path / "empty"
        folder.mkdir()
        (folder / "readme.txt").write_text("no pictures here")
    elif case == "unreadable_image":
        folder = tmp_path / "broken"
        folder.mkdir()
        data = (images / "a.jpg").read_bytes()
        (folder / "broken.jpg").write_bytes(data[: len(data) // 3])
    elif case == "missing_last":
        extra = ["--checkpoint", "last"]
    elif case == "missing_path":
        extra = ["--checkpoint", tmp_path / "other.ckpt"]
    elif case == "used_out":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "a.png").write_bytes(b"")
        extra = ["--out", tmp_path / "out"]
    assert_one_error_line(predict_process(run, folder, *extra), *words)
    assert not (run / "predict").exists()
