"""Tasks: data generators, preprocessing and evaluators (star graphs, TinyGSM, GSM8K, code execution)."""
