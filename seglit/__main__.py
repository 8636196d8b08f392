"""``python -m seglit``: the ``seglit`` command family (:mod:`seglit.commands`)."""

import sys

from seglit.commands import main

if __name__ == "__main__":
    sys.argv[0] = "seglit"  # the usage lines say `seglit ...`, not `__main__.py ...`
    main()
