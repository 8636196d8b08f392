"""The docs' examples, executed, so they cannot drift from the code.

* ``docs/tracking.md``: the offline-run reading example runs on a real offline W&B run, and
  the workspace example up to its upload;
* ``docs/recipes.md``: every row of the "Mistakes are errors" table is made in a recipe (or
  on the command line) and its error compared with the documented message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from seglit.fit import main as fit_main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_block(markdown: Path, after: str) -> str:
    """The first ```python block after the line ``after`` in ``markdown``."""
    text = markdown.read_text()
    start = text.index(after)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {after!r} in {markdown}"
    return match.group(1)


def test_the_offline_run_reading_example_of_tracking_md_runs(tmp_path, monkeypatch, capsys):
    from seglit.wandb.logger import WandbLogger

    folder = tmp_path / "runs" / "ablation_skip" / "unet-sum-s0"
    logger = WandbLogger(project="p", name="unet-sum-s0", group="ablation_skip",
                         save_dir=str(folder), mode="offline")  # fmt: skip
    logger.log_hyperparams({"model": {"net": {"class_path": "seglit.models.UNet"}}})
    logger.log_metrics({"val/mIoU": 0.5}, step=0)
    logger.finalize("success")
    code = python_block(DOCS / "tracking.md", "## Reading offline runs back")
    code = code.replace("read_offline_run(path)", "read_offline_run(path, timeout_s=30)")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/tracking.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("unet-sum-s0 ablation_skip") for line in out), out
    assert "[0.5]" in out


def test_the_workspace_example_of_tracking_md_runs_up_to_its_upload(monkeypatch):
    pytest.importorskip("wandb_workspaces", reason="pip install 'seglit[dashboard]'")
    code = python_block(DOCS / "tracking.md", "In Python:")
    assert code.rstrip().endswith("workspace.save()  # online: creates it in W&B")
    offline = code.rstrip().rsplit("\n", 1)[0]  # everything but the upload
    monkeypatch.chdir(DOCS.parent)
    namespace: dict = {}
    exec(compile(offline, "docs/tracking.md", "exec"), namespace)
    spec = namespace["spec"]
    assert spec["entity"] == "my-team" and spec["spec"]["section"]
    assert "ablation_skip" in str(spec)


def mistakes_table() -> dict[str, str]:
    """docs/recipes.md's table: mistake (its first cell) -> documented message."""
    text = (DOCS / "recipes.md").read_text()
    section = text[text.index("## Mistakes are errors") :]
    table = section.index("| mistake |")
    section = section[table : section.index("\n\n", table)]
    rows = {}
    for line in section.splitlines()[2:]:
        mistake, message = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[mistake] = re.match(r"`([^`]*)`", message).group(1)
    return rows


def _set(raw: dict, dotted: str, value: object) -> list[str]:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return []


def _rename(mapping: dict, old: str, new: str) -> list[str]:
    mapping[new] = mapping.pop(old)
    return []


# each mistake of the table, made in the tiny recipe (a dict); returns extra command-line args
MISTAKES = {
    "`ablaton:`": lambda raw: _rename(raw, "ablation", "ablaton"),
    "`seed: [0, 1]` in `ablation`": lambda raw: _set(raw, "ablation.seed", [0, 1]),
    "`model.net.init_args.fusoin: [sum]`": lambda raw: _set(
        raw, "ablation", {"model.net.init_args.fusoin": ["sum"]}
    ),
    "`num_trian: 16` under `data.init_args`": lambda raw: _rename(
        raw["data"]["init_args"], "num_train", "num_trian"
    ),
    "`--trainer.max_epoch=2`": lambda raw: ["--trainer.max_epoch=2"],
    "`batch_size: eight`": lambda raw: _set(raw, "data.init_args.batch_size", "eight"),
    "`batch_size: 0`": lambda raw: _set(raw, "data.init_args.batch_size", 0),
    "`lr: 0`": lambda raw: _set(raw, "model.optimizer.init_args.lr", 0),
    "`max_epochs: 3` with `check_val_every_n_epoch: 5`": lambda raw: (
        raw["trainer"].update(max_epochs=3, check_val_every_n_epoch=5) or []
    ),
    "`max_epochs: 2` and, later in the same mapping, `max_epochs: 5`": None,  # in the text
    "`model.net.init_args.fusion: {../sum: sum}`": lambda raw: _set(
        raw, "ablation", {"model.net.init_args.fusion": {"../sum": "sum"}}
    ),
    "`seeds: [-1]` in `ablation`": lambda raw: _set(raw, "ablation.seeds", [-1]),
    "`max_epochs: -1` without `max_steps`": lambda raw: _set(raw, "trainer.max_epochs", -1),
    "`head_lr_mult: -1` under `model`": lambda raw: _set(raw, "model.head_lr_mult", -1),
    "`--model.net.init_args.depth=[3`": lambda raw: ["--model.net.init_args.depth=[3"],
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_the_mistakes_table_of_recipes_md_shows_the_real_messages(
    mistake, tmp_path, write_tiny_recipe, capsys
):
    documented = mistakes_table()[mistake]
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml", ablation={"model.net.init_args.fusion": ["sum"]}
    )
    args: list[str] = []
    if MISTAKES[mistake] is None:  # a key stated twice: only the text can say it
        lines = recipe.read_text().splitlines()
        at = lines.index("  max_epochs: 2")
        lines.insert(at + 1, "  max_epochs: 5")
        recipe.write_text("\n".join(lines) + "\n")
        documented = re.sub(r"lines \d+ and \d+", f"lines {at + 1} and {at + 2}", documented)
    else:
        raw = yaml.safe_load(recipe.read_text())
        args = MISTAKES[mistake](raw)
        recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert fit_main([str(recipe), "--dry-run", *args]) == 2
    err = capsys.readouterr().err
    pattern = ".*".join(re.escape(part) for part in documented.split("..."))
    assert re.search(pattern, err), f"docs/recipes.md says {documented!r}; the error is {err!r}"


def test_every_row_of_the_mistakes_table_is_tested():
    assert set(mistakes_table()) == set(MISTAKES)


def test_no_doc_imports_a_name_its_module_lacks():
    import importlib

    for page in DOCS.glob("*.md"):
        for module, names in re.findall(
            r"^from (seglit[\w.]*) import ([\w, ]+)$", page.read_text(), re.M
        ):
            imported = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                assert hasattr(imported, name), f"{page.name}: {module} has no {name}"
