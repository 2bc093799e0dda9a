"""A minimal test-only family (tiny causal LM, loss, collator, greedy predictor) that passes the
conformance suites, plus deliberately broken variants (``broken``) that each suite must reject."""
