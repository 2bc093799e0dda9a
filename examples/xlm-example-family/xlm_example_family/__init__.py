"""An example xlm family: a tiny causal language model that predicts from the running mean of its inputs.

Small on purpose: it shows every piece a family provides (model, loss, collator, predictor, configs,
plugin hook) and is tested by the core's conformance suites.
"""
