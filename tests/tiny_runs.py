"""Override lists that shrink a preset to a run of seconds, shared by the tests that drive the CLI.

Each test file adds what its case needs (batch size, steps, logging) after these.
"""

from __future__ import annotations

from pathlib import Path

from xlm_core.data.text_corpus import python_stdlib_dir

# A one-layer, 32-wide ARLM network: the smallest that still learns the overfit star batch.
TINY_ARLM_NETWORK = [
    "model=rotary_transformer_tiny_arlm",
    "model.d_model=32",
    "model.num_layers=1",
    "model.nhead=2",
    "model.dim_feedforward=64",
    "model.rotary_emb_dim=16",
]

# star_easy_arlm with that network on the overfit debug set, without the sanity validation.
TINY_STAR_ARLM = [
    "experiment=star_easy_arlm",
    *TINY_ARLM_NETWORK,
    "debug=overfit",
    "trainer.num_sanity_val_steps=0",
]

# The pystdlib presets of any family on the standard library's json package: 4 steps of 8 rows of 32 tokens.
TINY_PYSTDLIB = [
    f"corpus.data_files={Path(python_stdlib_dir()) / 'json'}/*.py",
    "corpus.val_size=1",
    "tokenizer.vocab_size=320",
    "block_size=32",
    "model.d_model=32",
    "model.num_layers=1",
    "model.nhead=2",
    "model.dim_feedforward=64",
    "model.rotary_emb_dim=8",
    "per_device_batch_size=8",
    "global_batch_size=8",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.max_time=null",
    "checkpointing.every_n_steps=2",
    "lr_scheduler.num_warmup_steps=1",
    "trainer.limit_val_batches=4",
]
