"""Is the Hugging Face Hub reachable? Asked once per process, so an offline machine fails at once.

Without this, a hub tokenizer or dataset is only reported missing after the libraries' retries
(about 50 s). When the hub does not answer, loads go to the local cache only (``local_files_only``
for tokenizers, ``HF_HUB_OFFLINE`` for ``datasets``), which either finds a cached copy or fails fast
with the fix.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

__all__ = ["offline_requested", "hub_reachable", "use_hub_or_cache"]

_TRUTHY = {"1", "true", "yes", "on"}
_PROBE_TIMEOUT_S = 3.0


def offline_requested() -> bool:
    """The user's own offline switches (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` / ``HF_DATASETS_OFFLINE``)."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUTHY
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """True when a TCP connection to the hub endpoint opens within a few seconds (checked once)."""
    if offline_requested():
        return False
    try:
        with socket.create_connection(_endpoint(), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def use_hub_or_cache() -> bool:
    """Put the Hugging Face libraries in cache-only mode when the hub is unreachable; return reachability."""
    if hub_reachable():
        return True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets

        datasets.config.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):  # pragma: no cover - datasets is a core dependency
        pass
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    return False
