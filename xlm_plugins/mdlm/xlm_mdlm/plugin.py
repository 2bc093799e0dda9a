"""The MDLM family's entry point into xlm (entry point ``xlm: mdlm = "xlm_mdlm.plugin"``)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from xlm_core.api import UPDATE_FUNCTIONS, Component, FamilyNames, MLMModel, hookimpl
from xlm_mdlm.collators_mdlm import MDLMPredCollator, MDLMSeq2SeqCollator, MDLMTextCollator
from xlm_mdlm.loss_mdlm import MDLMLoss
from xlm_mdlm.model_mdlm import MDLMModel
from xlm_mdlm.predictor_mdlm import MDLMPredictor

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


@hookimpl
def register_families(register: Any) -> None:
    """Register the masked diffusion family, its Hydra config tree and its components."""
    register(
        name="mdlm",
        config_dir=files("xlm_mdlm") / "configs",
        description="Masked diffusion language model (MDLM): continuous-time NELBO, ancestral and cached samplers.",
        api_version="1.0",  # the plugin API this family is written against (xlm_core.api)
        names=FamilyNames(),  # input_ids / attention_mask / target_ids, predicted ids under "ids"
        model_protocol=MLMModel,
        models=[Component(MDLMModel, tiny=_TINY_MODEL, capabilities={"key_padding"})],
        losses=[MDLMLoss],
        collators=[
            Component(MDLMTextCollator, role="lm", tiny=dict(block_size=8, seed=0)),
            Component(MDLMSeq2SeqCollator, role="seq2seq", tiny=dict(block_size=6, input_block_size=6, seed=0)),
            Component(MDLMPredCollator, role="prediction", tiny=dict(block_size=6, input_block_size=6)),
        ],
        predictors=[Component(MDLMPredictor, tiny=dict(num_steps=6, unmasking="confidence", temperature=0.0))],
        metrics=list(UPDATE_FUNCTIONS),
    )
