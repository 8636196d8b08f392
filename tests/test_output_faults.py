"""predict and export under faults: an output folder that cannot be written, file names that
are not UTF-8. Each case runs the real command in its own process, on real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def seglit_command(module: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def photos(synthetic_root: Path, tmp_path_factory) -> Path:
    """Two photos, one of them under a name that is not UTF-8 (bytes 0xff 0xfe)."""
    folder = tmp_path_factory.mktemp("photos")
    source = next((synthetic_root / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))
    picture = Image.open(source).convert("RGB")
    picture.save(folder / "plain.png")
    picture.save(os.path.join(os.fsencode(folder), b"\xff\xfe-photo.png"))
    return folder


@pytest.mark.parametrize("module", ["seglit.predict", "seglit.export"])
def test_an_output_folder_under_a_file_is_one_line_before_any_work(
    finished_run, photos, tmp_path, module
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    args = [finished_run, photos] if module == "seglit.predict" else [finished_run]
    result = seglit_command(module, *args, "--out", out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{module}: error: --out {out} is under a file ({blocker}), not a folder; "
        "choose another output folder with --out"
    ]
    assert "traced" not in result.stdout and result.stdout.count("\n") <= 1


def test_file_names_that_are_not_utf8_are_written_in_the_index_as_they_are(
    finished_run, photos, tmp_path
):
    out = tmp_path / "predictions"
    result = seglit_command("seglit.predict", finished_run, photos, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    names = set(os.listdir(os.fsencode(out)))
    assert b"\xff\xfe-photo.png" in names and b"plain.png" in names  # the masks
    index = (out / "index.csv").read_bytes()
    assert b"\n\xff\xfe-photo.png," in index  # the file system's bytes, exactly
    page = (out / "index.html").read_text(encoding="utf-8")  # still valid UTF-8
    assert 'href="%FF%FE-photo.png"' in page and "\ufffd\ufffd-photo.png" in page
