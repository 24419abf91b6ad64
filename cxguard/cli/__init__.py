"""The ``cxguard`` command line (the contract in README.md; tests rely on it).

One Typer app (:mod:`cxguard.cli.common`); each module registers its commands on import:
:mod:`~cxguard.cli.serving` (serve, asr-worker, demo), :mod:`~cxguard.cli.simulating`
(simulate), :mod:`~cxguard.cli.judging` (eval, drift, policy, train) and
:mod:`~cxguard.cli.evidence` (evidence …). Heavy imports stay inside the commands, so
``cxguard --help`` starts fast.
"""

from __future__ import annotations

# isort: off
# Imported for their registrations, in the order ``cxguard --help`` lists the commands.
from cxguard.cli import serving, simulating, judging, evidence
from cxguard.cli.common import app

# isort: on

__all__ = ["app", "main"]
_COMMANDS = (serving, simulating, judging, evidence)


def main() -> None:
    app()
