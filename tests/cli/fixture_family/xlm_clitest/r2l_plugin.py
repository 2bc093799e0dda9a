"""Registers the test family "r2l", which declares its own batch and prediction keys (``r2l.NAMES``)."""

from importlib.resources import files

from xlm_clitest import r2l
from xlm_core.plugin.components import Component
from xlm_core.plugin.hookspecs import hookimpl


@hookimpl
def register_families(register):
    """Register "r2l" with its names, components and config tree."""
    register(
        name="r2l",
        config_dir=files("xlm_clitest") / "r2l_configs",
        description="Right-to-left test family with its own names.",
        api_version="1.0",
        names=r2l.NAMES,
        models=[
            Component(
                r2l.R2LModel, tiny=dict(d_model=16, nhead=2, max_length=64), capabilities={"causal", "key_padding"}
            )
        ],
        losses=[r2l.R2LLoss],
        collators=[
            Component(r2l.R2LCollator, role="seq2seq", tiny=dict(block_size=12)),
            Component(r2l.R2LPredictionCollator, role="prediction", tiny=dict(block_size=12)),
        ],
        predictors=[Component(r2l.R2LPredictor, tiny=dict(max_new_tokens=4))],
        metrics=[r2l.r2l_exact_match_update_fn, r2l.r2l_token_accuracy_update_fn],
    )
