"""Deprecated: the MLM collators live in :mod:`xlm_mlm.collators_mlm` (this module never held a datamodule).

Kept so that configs and code naming ``xlm_mlm.datamodule_mlm.MLMSeq2SeqTrainCollator`` etc. keep working for one minor
version; importing it warns with the new path. Removed in xlm-mlm 0.3.
"""

from xlm_core.kit.renamed import warn_renamed_module
from xlm_mlm.collators_mlm import *  # noqa: F403 (the same objects under the old module name)
from xlm_mlm.collators_mlm import __all__  # noqa: F401

warn_renamed_module(__name__, "xlm_mlm.collators_mlm", "xlm-mlm 0.3", "it holds collators, no datamodule")
