# Shared fixtures of the conformance suites (simple_tokenizer, vocab_size, dummy_noise_schedule, batch_size).
pytest_plugins = ["xlm_core.testing.fixtures"]
