"""The ARLM family's entry point into xlm (entry point ``xlm: arlm = "xlm_arlm.plugin"``)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from xlm_arlm import metrics_arlm
from xlm_arlm.collators_arlm import ARLMSeq2SeqCollator, ARLMSeq2SeqPredCollator, DefaultARLMCollator
from xlm_arlm.export_hf import export_hf
from xlm_arlm.loss_arlm import ARLMLoss
from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.kit.metrics import UPDATE_FUNCTIONS
from xlm_core.plugin.components import Component
from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.protocols import ARLMModel

_TINY_MODEL = dict(d_model=32, num_layers=2, nhead=4, dim_feedforward=64, dropout=0.0, rotary_emb_dim=8, max_length=64)
_TINY_SEQ2SEQ = dict(block_size=6, input_block_size=6, add_bos="output", add_eos=True)


@hookimpl
def register_families(register: Any) -> None:
    """Register the auto-regressive family, its Hydra config tree and its components."""
    register(
        name="arlm",
        config_dir=files("xlm_arlm") / "configs",
        description="Auto-regressive causal rotary Transformer language model (next-token prediction).",
        api_version="1.0",  # the plugin API this family is written against (xlm_core.api)
        model_protocol=ARLMModel,
        models=[
            Component(RotaryTransformerARLMModel, tiny=_TINY_MODEL, capabilities={"causal", "kv_cache", "key_padding"})
        ],
        losses=[ARLMLoss],
        collators=[
            Component(DefaultARLMCollator, role="lm", tiny=dict(block_size=8, add_eos=True)),
            Component(ARLMSeq2SeqCollator, role="seq2seq", tiny=_TINY_SEQ2SEQ),
            Component(ARLMSeq2SeqPredCollator, role="prediction", tiny=_TINY_SEQ2SEQ),
        ],
        predictors=[
            Component(ARLMPredictor, tiny=dict(max_steps=6, max_length=None, sampling_method="sample_top_k", top_k=1))
        ],
        metrics=[
            *UPDATE_FUNCTIONS,
            metrics_arlm.sequence_length_metric_update_fn,
            metrics_arlm.valid_tokens_metric_update_fn,
        ],
        exporters={"hf": export_hf},
    )
