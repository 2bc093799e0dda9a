"""The ``xlm`` command line: Hydra composition and job dispatch (:mod:`xlm_core.cli.main`) and the
subcommands ``families``, ``check`` and ``new-family`` (:mod:`xlm_core.cli.commands`)."""

from xlm_core.cli.main import main

__all__ = ["main"]
