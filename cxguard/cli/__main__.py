"""``python -m cxguard.cli``: the same command line as the ``cxguard`` script."""

from cxguard.cli import main

main()
