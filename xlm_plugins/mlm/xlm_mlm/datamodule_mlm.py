"""Deprecated: the MLM collators live in :mod:`xlm_mlm.collators_mlm` (this module never held a datamodule).

Kept so that configs and code naming ``xlm_mlm.datamodule_mlm.MLMSeq2SeqTrainCollator`` etc. keep working for
one minor version; importing it warns with the new path. Removed in xlm-mlm 0.3.
"""

from __future__ import annotations

import warnings

from xlm_mlm.collators_mlm import *  # noqa: F403 (the same objects under the old module name)
from xlm_mlm.collators_mlm import __all__  # noqa: F401

warnings.warn(
    "xlm_mlm.datamodule_mlm was renamed xlm_mlm.collators_mlm (it holds collators, no datamodule) and the old "
    "name goes away in xlm-mlm 0.3; import from xlm_mlm.collators_mlm and name "
    "xlm_mlm.collators_mlm.<Collator> in a config's _target_",
    DeprecationWarning,
    stacklevel=2,
)
