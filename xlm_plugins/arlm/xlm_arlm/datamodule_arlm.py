"""Deprecated: the ARLM collators live in :mod:`xlm_arlm.collators_arlm` (this module never held a datamodule).

Kept so that configs and code naming ``xlm_arlm.datamodule_arlm.ARLMSeq2SeqCollator`` etc. keep working for one minor
version; importing it warns with the new path. Removed in xlm-arlm 0.3.
"""

from xlm_arlm.collators_arlm import *  # noqa: F403 (the same objects under the old module name)
from xlm_arlm.collators_arlm import __all__  # noqa: F401
from xlm_core.kit.renamed import warn_renamed_module

warn_renamed_module(__name__, "xlm_arlm.collators_arlm", "xlm-arlm 0.3", "it holds collators, no datamodule")
