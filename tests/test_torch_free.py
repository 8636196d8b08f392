"""The run files, the summary and the runner's planning import neither torch nor Lightning."""

from __future__ import annotations

import subprocess
import sys


def test_run_files_summary_and_runner_planning_import_neither_torch_nor_lightning():
    modules = (
        "seglit.io, seglit.fingerprint, seglit.run_folder, seglit.summary, "
        "seglit.summary.stats, seglit.summary.tables, seglit.summary.plots, seglit.recipe, "
        "seglit.runner"
    )
    code = (
        f"import sys, {modules}\n"
        "print([m for m in ('torch', 'lightning', 'wandb') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
