"""``seglit``: one command family.

.. code-block:: bash

    seglit run RECIPE [...]                 # every variant of an ablation (= python -m seglit.fit)
    seglit fit|validate|test --config C     # one run, through the Lightning CLI
    seglit predict --config C               # the Lightning CLI's predict on a datamodule
    seglit predict RUN_DIR IMAGES [...]     # a folder of images (= python -m seglit.predict)
    seglit export RUN_DIR [...]             # ONNX / TorchScript / torch.export

Both ``predict`` forms write the same files with the same writer
(:func:`seglit.visualize.write_prediction_files`). This module only dispatches: each command
imports what it needs, so ``seglit run`` starts as light as ``python -m seglit.fit``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

FAMILY = """seglit commands:
  seglit run RECIPE [--smoke] [--dry-run] ...   every variant of an ablation recipe
  seglit fit|validate|test --config CONFIG      one run (the Lightning CLI, below)
  seglit predict --config CONFIG                predict on a datamodule (Lightning CLI)
  seglit predict RUN_DIR IMAGES [--out DIR]     segment a folder of images with a trained run
  seglit export RUN_DIR [--format ...]          ONNX, TorchScript and torch.export files
"""


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``seglit`` console script and ``python -m seglit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command == "run":
        from seglit.fit import main as run_recipe

        # like `python -m seglit.fit`: nothing has touched torch yet, so variants may fork
        raise SystemExit(run_recipe(args[1:], fork=True))
    if command == "export":
        from seglit.export import main as export

        export(args[1:])
        return
    if command == "predict" and len(args) > 1 and not args[1].startswith("-"):
        from seglit.predict import main as predict_folder

        predict_folder(args[1:])
        return
    if not args or command in ("-h", "--help"):
        print(FAMILY)
    from seglit.cli import main as lightning_cli

    lightning_cli(args)
