"""The MLM family's entry point into xlm (entry point ``xlm: mlm = "xlm_mlm.plugin"``)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from xlm_core.kit.metrics import UPDATE_FUNCTIONS
from xlm_core.plugin.components import Component
from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.protocols import MLMModel
from xlm_mlm.collators_mlm import DefaultMLMCollator, MLMSeq2SeqPredCollator, MLMSeq2SeqTrainCollator
from xlm_mlm.loss_mlm import MLMLoss
from xlm_mlm.model_mlm import RotaryTransformerMLMModel
from xlm_mlm.predictor_mlm import MLMPredictor

_TINY_MODEL = dict(
    d_model=32,
    num_layers=2,
    nhead=4,
    dim_feedforward=64,
    dropout=0.0,
    rotary_emb_dim=8,
    max_length=64,
    absolute_positions=True,
    neighbour_mixing=True,
)
# Half the slot masked or more, with a fixed seed: the checks' batches always hold masked positions.
_TINY_MASKING = dict(mask_rate_min=0.5, mask_rate_max=1.0, seed=0)


@hookimpl
def register_families(register: Any) -> None:
    """Register the masked family, its Hydra config tree and its components."""
    register(
        name="mlm",
        config_dir=files("xlm_mlm") / "configs",
        description="Bidirectional rotary Transformer masked language model with iterative unmasking.",
        api_version="1.0",  # the plugin API this family is written against (xlm_core.api)
        model_protocol=MLMModel,
        models=[Component(RotaryTransformerMLMModel, tiny=_TINY_MODEL, capabilities={"key_padding"})],
        losses=[MLMLoss],
        collators=[
            Component(DefaultMLMCollator, role="lm", tiny=dict(block_size=8, **_TINY_MASKING)),
            Component(
                MLMSeq2SeqTrainCollator, role="seq2seq", tiny=dict(block_size=6, input_block_size=6, **_TINY_MASKING)
            ),
            Component(MLMSeq2SeqPredCollator, role="prediction", tiny=dict(block_size=6, input_block_size=6)),
        ],
        predictors=[Component(MLMPredictor, tiny=dict(max_steps=6, confidence="top_prob", temperature=0.0))],
        metrics=list(UPDATE_FUNCTIONS),
    )
