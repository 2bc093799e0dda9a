"""Hydra configs: composing a family's config tree, checking values and ``_target_``s, plain-container helpers."""
