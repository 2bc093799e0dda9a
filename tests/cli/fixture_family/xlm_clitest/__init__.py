"""A config-only family used by the CLI tests (installed into a temporary site dir by conftest)."""
