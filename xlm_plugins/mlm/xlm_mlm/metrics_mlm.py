"""Deprecated: MLM reports the core's metric update functions (``xlm_core.kit.metrics``).

Exact match and token accuracy compare the filled answer slot ``ids[:, output_start_idx:]`` with the
reference ``target_ids`` exactly as for ARLM, and mean loss, token NLL and perplexity read the
``LossDict`` every loss returns, so the MLM family has no update function of its own. The old names
below still resolve, with a DeprecationWarning naming the ``xlm_core.kit.metrics`` path; removed in
xlm-mlm 0.3.
"""

from __future__ import annotations

from xlm_core.kit.renamed import moved_attributes

__all__: list[str] = []

__getattr__ = moved_attributes(
    __name__,
    {
        "align_slot_to_target": "xlm_core.kit.metrics.align_to_target",
        "seq2seq_exact_match_update_fn": "xlm_core.kit.metrics.exact_match_update_fn",
        "seq2seq_token_accuracy_update_fn": "xlm_core.kit.metrics.token_accuracy_update_fn",
        "mean_metric_update_fn": "xlm_core.kit.metrics.mean_metric_update_fn",
        "token_nll_metric_update_fn": "xlm_core.kit.metrics.token_nll_metric_update_fn",
        "perplexity_metric_update_fn": "xlm_core.kit.metrics.perplexity_metric_update_fn",
    },
    removed_in="xlm-mlm 0.3",
)
