"""Job ``name``: print the composed, resolved config and run nothing (a dry run)."""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def run(cfg: DictConfig) -> None:
    """Write ``cfg`` as YAML to stdout, with interpolations resolved where they can be."""
    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        print(f"xlm: note: printing the config unresolved, as resolving failed: {exc}", file=sys.stderr)
        text = OmegaConf.to_yaml(cfg)
    sys.stdout.write(text)
    sys.stdout.flush()
