"""``seglit``: one command family.

.. code-block:: bash

    seglit run RECIPE [...]                 # every variant of an ablation (= python -m seglit.fit)
    seglit fit|validate|test --config C     # one run, through the Lightning CLI
    seglit predict --config C               # the Lightning CLI's predict on a datamodule
    seglit predict RUN_DIR IMAGES [...]     # a folder of images (= python -m seglit.predict)
    seglit export RUN_DIR [...]             # ONNX / TorchScript / torch.export

Both ``predict`` forms write the same files with the same writer
(:func:`seglit.visualize.write_prediction_files`). This module only dispatches: each command
imports what it needs, so ``seglit run`` starts as light as ``python -m seglit.fit``, and
``seglit --help``, ``seglit run --help`` and ``seglit predict --help`` answer without torch or
Lightning (only the Lightning verbs' own ``--help`` loads them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

FAMILY = """seglit commands:
  seglit run RECIPE [--smoke [NAME]] ...        every variant of an ablation recipe
  seglit fit|validate|test --config CONFIG      one run (the Lightning CLI)
  seglit predict --config CONFIG                predict on a datamodule (Lightning CLI)
  seglit predict RUN_DIR IMAGES [--out DIR]     segment a folder of images with a trained run
  seglit export RUN_DIR [--format ...]          ONNX, TorchScript and torch.export files
"""


USAGE = """
usage: seglit COMMAND [ARGS ...]
One run's options (the Lightning CLI): seglit fit --help (and validate, test, predict
--config CONFIG --help). A recipe's: seglit run --help.
"""

PREDICT_FORMS = """seglit predict has two forms:
  seglit predict RUN_DIR IMAGES [...]   a folder of images with a trained run (below)
  seglit predict --config CONFIG        the Lightning CLI's predict on a datamodule; its
                                        options: seglit predict --config CONFIG --help
"""

_HELP = ("-h", "--help")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``seglit`` console script and ``python -m seglit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if not args or command in _HELP:
        print(FAMILY + USAGE)
        if not args:
            print("seglit: error: name a command", file=sys.stderr)
            raise SystemExit(2)
        return
    if command == "run":
        from seglit.fit import main as run_recipe

        # As the console script (no argv given), like `python -m seglit.fit`: nothing has
        # touched torch yet, so variants may fork. Called from Python (a test, a notebook),
        # torch may have run threaded work already: variants start as subprocesses.
        fork = argv is None
        raise SystemExit(run_recipe(args[1:], fork=fork, prog="seglit run"))
    if command == "export":
        from seglit.export import main as export

        export(args[1:])
        return
    if command == "predict" and args[1:] and args[1] in _HELP:
        from seglit.predict import main as predict_folder

        print(PREDICT_FORMS)
        predict_folder(args[1:])
        return
    if command == "predict" and len(args) > 1 and not args[1].startswith("-"):
        from seglit.predict import main as predict_folder

        predict_folder(args[1:])
        return
    from seglit.cli import main as lightning_cli

    # None: Lightning reads sys.argv itself (and does not warn that both were given)
    lightning_cli(None if argv is None else args)
