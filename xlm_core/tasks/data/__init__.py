"""Data files shipped with xlm_core for offline GSM8K/TinyGSM tests and demos (see docs/code_execution.md)."""
