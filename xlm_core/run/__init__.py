"""A run directory and what keeps it truthful: its files, atomic writes, the lock, checkpoints and the
callbacks that save, validate and stop cleanly."""
