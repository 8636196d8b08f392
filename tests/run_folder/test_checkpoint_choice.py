"""The one choice of a run's checkpoint: best, last, a path, or the one to resume from."""

from __future__ import annotations

import os
import zipfile

import pytest

from seglit.run_folder import (
    BEST,
    FINISHED,
    LAST,
    RESUME,
    CheckpointNotFound,
    RunMetrics,
    best_checkpoint_name,
    choose_checkpoint,
    write_metrics,
)


def _checkpoints(run_dir, *names):
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for age, name in enumerate(names):
        with zipfile.ZipFile(folder / name, "w") as archive:  # what torch.save writes
            archive.writestr("data.pkl", b"ckpt")
        os.utime(folder / name, (1000 - age, 1000 - age))  # the first name is the newest
    return folder


def test_best_is_the_one_best_checkpoint_or_the_best_epoch_of_several(tmp_path):
    assert best_checkpoint_name(2, 12) == "best-epoch002-step000012.ckpt"
    folder = _checkpoints(tmp_path, "best-epoch002-step000012.ckpt", "last.ckpt")
    assert choose_checkpoint(tmp_path, BEST) == (folder / "best-epoch002-step000012.ckpt", [])
    _checkpoints(tmp_path, "best-epoch001-step000008.ckpt")
    with pytest.raises(CheckpointNotFound, match="several best checkpoints"):
        choose_checkpoint(tmp_path, BEST)
    write_metrics(tmp_path, RunMetrics(FINISHED, best={"epoch": 1, "step": 8, "mIoU": 0.5}))
    assert choose_checkpoint(tmp_path)[0] == folder / "best-epoch001-step000008.ckpt"


def test_last_and_paths_must_exist(tmp_path):
    with pytest.raises(CheckpointNotFound, match="holds no best-"):
        choose_checkpoint(tmp_path, BEST)
    with pytest.raises(CheckpointNotFound, match="no last checkpoint"):
        choose_checkpoint(tmp_path, LAST)
    with pytest.raises(CheckpointNotFound, match="does not exist"):
        choose_checkpoint(tmp_path, str(tmp_path / "x.ckpt"))
    folder = _checkpoints(tmp_path, "last.ckpt")
    assert choose_checkpoint(tmp_path, LAST) == (folder / "last.ckpt", [])
    assert choose_checkpoint(tmp_path, str(folder / "last.ckpt")) == (folder / "last.ckpt", [])


def test_resume_takes_a_readable_last_or_the_newest_readable_and_sets_the_rest_aside(tmp_path):
    assert choose_checkpoint(tmp_path, RESUME) == (None, [])
    folder = _checkpoints(tmp_path, "best-epoch002-step000012.ckpt", "last.ckpt", "old.ckpt")
    assert choose_checkpoint(tmp_path, RESUME) == (folder / "last.ckpt", [])
    chosen, notes = choose_checkpoint(tmp_path, RESUME, readable=lambda p: p.name != "last.ckpt")
    assert chosen == folder / "best-epoch002-step000012.ckpt"
    assert (folder / "last.ckpt.corrupt").exists() and not (folder / "last.ckpt").exists()
    assert "last.ckpt cannot be read" in notes[0]
    assert notes[1] == "resuming from best-epoch002-step000012.ckpt, the newest readable checkpoint"
    assert choose_checkpoint(tmp_path, RESUME, readable=lambda p: False)[0] is None
