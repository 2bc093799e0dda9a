"""The family kit: the pieces every family needs and imports instead of copying (batch checks, sampling,
metrics)."""
