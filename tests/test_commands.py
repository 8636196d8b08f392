"""``seglit``: one command family (run, fit/validate/test/predict, predict a folder, export)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from seglit import fit
from seglit.commands import main


def run(argv: list[object]) -> int:
    """``seglit ARGV`` in this process; the exit status."""
    try:
        main([str(a) for a in argv])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_seglit_run_is_python_m_seglit_fit(write_tiny_recipe, tmp_path, capsys) -> None:
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    args = [recipe, "--dry-run", "--out", tmp_path / "runs"]
    assert fit.main([str(a) for a in args]) == 0
    expected = capsys.readouterr()
    assert run(["run", *args]) == 0
    got = capsys.readouterr()
    assert got.out == expected.out and "sum" in got.out and "concat" in got.out
    assert run(["run", tmp_path / "missing.yaml", "--dry-run"]) == 2  # fit's own exit codes
    assert "missing.yaml" in capsys.readouterr().err


def test_seglit_run_forks_only_as_the_console_script(monkeypatch) -> None:
    calls: list[bool] = []

    def fake_fit(argv, fork, prog):
        calls.append(fork)
        return 0

    monkeypatch.setattr(fit, "main", fake_fit)
    assert run(["run", "r.yaml"]) == 0  # from Python: torch may have run threaded work
    monkeypatch.setattr(sys, "argv", ["seglit", "run", "r.yaml"])
    assert run_console_script() == 0
    assert calls == [False, True]


def run_console_script() -> int:
    """``seglit`` as installed: ``main()`` reading ``sys.argv``; the exit status."""
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_seglit_predict_with_a_folder_writes_the_folder_modes_files(
    finished_run: Path, synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = sorted((synthetic_root / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))[0]
    Image.open(source).convert("RGB").resize((41, 37)).save(images / "odd.png")
    assert run(["predict", finished_run, images, "--out", tmp_path / "pred"]) == 0
    assert "seglit.predict:" in capsys.readouterr().out
    for name in ("odd.png", "odd_overlay.png"):  # the one writer's names and format
        with Image.open(tmp_path / "pred" / name) as picture:
            assert picture.format == "PNG" and picture.size[0] == 41
    assert (tmp_path / "pred" / "index.csv").is_file()
    assert run(["predict", tmp_path / "no_run", images]) == 2
    assert "no_run" in capsys.readouterr().err


def test_seglit_export_is_python_m_seglit_export(finished_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "export"
    assert run(["export", finished_run, "--format", "torchscript", "--out", out]) == 0
    assert (out / "model.torchscript.pt").is_file() and (out / "export.json").is_file()
    assert run(["export", tmp_path / "no_run"]) == 2
    assert "no_run" in capsys.readouterr().err


HEAVY = ("torch", "lightning")
LOADED = "import sys; print('LOADED', sorted(m for m in {heavy!r} if m in sys.modules))"


def _help(*args: str) -> subprocess.CompletedProcess:
    """``python -m seglit ARGS`` in a fresh interpreter; its stdout ends with the heavy
    modules it imported."""
    code = (
        f"import runpy, sys\nsys.argv = ['seglit', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('seglit', run_name='__main__')\n"
        "except SystemExit as exit_:\n    assert not exit_.code, exit_.code\n"
        + LOADED.format(heavy=HEAVY)
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(120)
def test_seglit_help_lists_the_command_family_without_loading_torch() -> None:
    result = _help("--help")
    assert result.returncode == 0, result.stderr
    assert "seglit run RECIPE" in result.stdout and "seglit export RUN_DIR" in result.stdout
    assert "usage: seglit" in result.stdout and "seglit fit --help" in result.stdout
    assert result.stdout.strip().endswith("LOADED []")
    assert "__main__.py" not in result.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("command", "expected"),
    [("run", "usage: seglit run"), ("predict", "seglit predict RUN_DIR IMAGES")],
)
def test_the_non_lightning_verbs_help_without_loading_torch(command, expected) -> None:
    result = _help(command, "--help")
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout and result.stdout.strip().endswith("LOADED []")


def test_a_bare_seglit_lists_the_commands_and_exits_2(capsys) -> None:
    assert run([]) == 2
    captured = capsys.readouterr()
    assert "seglit run RECIPE" in captured.out and "name a command" in captured.err


@pytest.mark.timeout(120)
def test_the_lightning_verbs_still_answer_with_lightning_s_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seglit", "fit", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "usage: seglit [options] fit" in result.stdout and "--trainer.max_epochs" in result.stdout
    )
    assert "args parameter is intended" not in result.stderr  # no Lightning warning
