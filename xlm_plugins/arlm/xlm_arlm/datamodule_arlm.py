"""Deprecated: the ARLM collators live in :mod:`xlm_arlm.collators_arlm` (this module never held a datamodule).

Kept so that configs and code naming ``xlm_arlm.datamodule_arlm.ARLMSeq2SeqCollator`` etc. keep working for
one minor version; importing it warns with the new path. Removed in xlm-arlm 0.3.
"""

from __future__ import annotations

import warnings

from xlm_arlm.collators_arlm import *  # noqa: F403 (the same objects under the old module name)
from xlm_arlm.collators_arlm import __all__  # noqa: F401

warnings.warn(
    "xlm_arlm.datamodule_arlm was renamed xlm_arlm.collators_arlm (it holds collators, no datamodule) and the old "
    "name goes away in xlm-arlm 0.3; import from xlm_arlm.collators_arlm and name "
    "xlm_arlm.collators_arlm.<Collator> in a config's _target_",
    DeprecationWarning,
    stacklevel=2,
)
