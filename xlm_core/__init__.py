"""xlm-core: the family-agnostic core of xlm. Plugin authors import from :mod:`xlm_core.api`."""

from xlm_core import _moved

_moved.install()
