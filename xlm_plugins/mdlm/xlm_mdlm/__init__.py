"""xlm-mdlm: the masked diffusion language model family (MDLM) of xlm.

- ``model_mdlm``: ``MDLMModel``, the core's bidirectional rotary Transformer, and ``subs_log_probs``, its SUBS output.
- ``collators_mdlm``: ``DiffusionNoise`` (times from a noise schedule, masks from them) and the text, seq2seq and
  prediction collators.
- ``loss_mdlm``: ``MDLMLoss``, the continuous-time NELBO.
- ``predictor_mdlm``: ``MDLMPredictor``, ancestral (optionally cached) and confidence-ordered samplers.
- ``types_mdlm``: the batches and outputs that pass between them.
- ``plugin``: registration with xlm (entry point ``xlm: mdlm = "xlm_mdlm.plugin"``).

docs/mdlm.md describes the objective, the samplers and the measured results.
"""
