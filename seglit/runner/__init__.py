"""The recipe runner behind ``python -m seglit.fit``.

* :mod:`seglit.runner.plan`: each variant's config, fingerprint and status;
* :mod:`seglit.runner.fetch`: the weights (and, with ``--download``, the data) the variants
  need, fetched once before any starts;
* :mod:`seglit.runner.train`: the unfinished variants trained here, ``--parallel`` at once;
* :mod:`seglit.runner.launch`: one process per variant (forked, or a subprocess for DDP);
* :mod:`seglit.runner.slurm`: ``--launcher slurm``, the variants as a SLURM job array
  (:mod:`~seglit.runner.launcher_block`: its resources; :mod:`~seglit.runner.slurm_task`:
  what a task runs);
* :mod:`seglit.runner.console`: permanent lines and the live progress line;
* :mod:`seglit.runner.run`: the steps, from checks to the summary.
"""

from seglit.runner.run import RunnerError, RunnerOptions, run_recipe

__all__ = ["RunnerError", "RunnerOptions", "run_recipe"]
