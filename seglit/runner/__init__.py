"""The recipe runner behind ``python -m seglit.fit``.

* :mod:`seglit.runner.plan`: each variant's config, fingerprint and status;
* :mod:`seglit.runner.launch`: one process per variant (forked, or a subprocess for DDP);
* :mod:`seglit.runner.console`: permanent lines and the live progress line;
* :mod:`seglit.runner.run`: the steps, from checks to the summary.
"""

from seglit.runner.run import RunnerError, RunnerOptions, run_recipe

__all__ = ["RunnerError", "RunnerOptions", "run_recipe"]
