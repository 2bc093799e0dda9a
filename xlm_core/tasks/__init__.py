"""Tasks: data generators, preprocessing and evaluators (star graphs, TinyGSM, GSM8K, code execution)."""

from xlm_core.tasks import data_paths  # noqa: F401  (registers the ${xlm.shipped_data:...} resolvers)
