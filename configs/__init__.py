"""The core Hydra config tree, found by Hydra as ``pkg://xlm_core.configs``.

Hydra only accepts a ``pkg://`` source that is a regular package (it looks for this file), and
importing it registers the OmegaConf resolvers the tree uses and the deprecated aliases of renamed
options (xlm_core/config/aliases.py), so any composition of it works.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

# ${xlm.cwd:} is the directory the process was started in (Hydra never chdirs: hydra.job.chdir=false).
OmegaConf.register_new_resolver("xlm.cwd", os.getcwd, replace=True)

# ${xlm.python_stdlib:} is the running interpreter's standard-library directory (the pystdlib demo corpus).
from xlm_core.data.text_corpus import python_stdlib_dir  # noqa: E402

OmegaConf.register_new_resolver("xlm.python_stdlib", python_stdlib_dir, replace=True)

# The data resolvers of the TinyGSM/GSM8K configs (${xlm.shipped_data:...} and friends).
from xlm_core.tasks.data_paths import register_resolvers  # noqa: E402

register_resolvers()

# Renamed config-group options of earlier versions, composable with a warning until they go away.
from xlm_core.config.aliases import register_aliases  # noqa: E402

register_aliases()
