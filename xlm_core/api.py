"""The plugin API of xlm-core: what a family package may import, in one place.

Everything listed in ``__all__`` keeps working across minor releases of the plugin API
(:data:`PLUGIN_API_VERSION`, declared by a family with ``register(..., api_version=...)``); a major
release may change it and says how in CHANGELOG.md. Other modules of ``xlm_core`` are internal and may
move (moved ones keep a deprecated alias for one minor version). The conformance suites are public
too, in :mod:`xlm_core.testing` (imported apart because they need pytest)::

    from xlm_core.api import Component, hookimpl, ARLMModel, RotaryTransformerLayer, sample_from_top_k
"""

from __future__ import annotations

from xlm_core.data.packing import same_document_mask
from xlm_core.data.padding import TruncationCounter, pad_list, pad_truncate_list, truncate_list
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.errors import UsageError
from xlm_core.kit.answer_slot import AnswerSlotCollator, SlotPredictionCollator, answer_slot_start, answer_text
from xlm_core.kit.batch_checks import training_tensors
from xlm_core.kit.collate import (
    TruncationCounting,
    as_ids,
    mask_token_id_of,
    required_token_id,
    row_metadata,
    tokenizer_vocab_size,
    validate_examples,
)
from xlm_core.kit.documents import (
    attention_and_positions,
    check_document_options,
    document_attention_mask,
    document_fields,
)
from xlm_core.kit.masking import content_generator, mask_with_probability
from xlm_core.kit.metrics import (
    UPDATE_FUNCTIONS,
    ExactMatch,
    Perplexity,
    TokenAccuracy,
    align_to_target,
    exact_match_update_fn,
    mean_metric_update_fn,
    perplexity_metric_update_fn,
    token_accuracy_update_fn,
    token_nll_metric_update_fn,
)
from xlm_core.kit.noise import CosineSchedule, LogLinearSchedule, NoiseScheduleBase, sample_times
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.kit.prediction import prediction_rows
from xlm_core.kit.renamed import moved_attributes, warn_renamed_module
from xlm_core.kit.sampling import SeededGenerators, sample_from_logits, sample_from_top_k, sample_from_top_p
from xlm_core.kit.text_rows import TextRowCollator
from xlm_core.kit.token_nll import scored_token_nll
from xlm_core.kit.types import (
    IGNORE_INDEX,
    LossDict,
    PackedTrainingBatch,
    PredictionDict,
    Seq2SeqTrainingBatch,
    TrainingBatch,
)
from xlm_core.kit.unmasking import (
    CONFIDENCES,
    UNMASKING_ORDERS,
    check_sampling_options,
    confidence_scores,
    order_scores,
    reveal_top,
    sample_tokens,
)
from xlm_core.modules import (
    AbsolutePositionEmbedding,
    BidirectionalRotaryTransformer,
    HiddenStateModel,
    KVCache,
    NeighbourMixing,
    RotaryEmbedding,
    RotaryNetwork,
    RotaryTransformerFinalLayer,
    RotaryTransformerLayer,
    WeightDecayGroups,
    apply_rotary_emb,
    build_attention_mask,
    causal_mask,
    check_ids_and_positions,
    gpt2_init_,
    hidden_state_head,
    linear_cross_entropy,
    linear_weights,
    neighbour_mixing_mode,
    rotary_layer_stack,
    scored_linear_cross_entropy,
    validate_model_config,
)
from xlm_core.plugin.components import CAPABILITIES, COLLATOR_ROLES, Component
from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.names import FamilyNames
from xlm_core.plugin.protocols import (
    PREDICTION_TEXT_KEY,
    ARLMModel,
    Collator,
    LossFunction,
    MLMModel,
    Model,
    NoiseSchedule,
    Predictor,
    Tokenizer,
)
from xlm_core.plugin.version import PLUGIN_API_VERSION

__all__ = [
    # registering a family
    "PLUGIN_API_VERSION",
    "hookimpl",
    "Component",
    "COLLATOR_ROLES",
    "CAPABILITIES",
    "FamilyNames",
    # contracts
    "Model",
    "LossFunction",
    "Predictor",
    "Collator",
    "Tokenizer",
    "NoiseSchedule",
    "ARLMModel",
    "MLMModel",
    "PREDICTION_TEXT_KEY",
    # model building blocks
    "RotaryEmbedding",
    "RotaryTransformerLayer",
    "RotaryTransformerFinalLayer",
    "KVCache",
    "apply_rotary_emb",
    "build_attention_mask",
    "causal_mask",
    "linear_weights",
    "rotary_layer_stack",
    "RotaryNetwork",
    # the model kit and the architecture options every family may offer
    "validate_model_config",
    "gpt2_init_",
    "check_ids_and_positions",
    "WeightDecayGroups",
    "AbsolutePositionEmbedding",
    "NeighbourMixing",
    "neighbour_mixing_mode",
    "BidirectionalRotaryTransformer",
    # the fused LM head + cross-entropy and the hidden-state contract that enables it
    "HiddenStateModel",
    "hidden_state_head",
    "linear_cross_entropy",
    "scored_linear_cross_entropy",
    # the family kit
    "training_tensors",
    "scored_token_nll",
    "ExactMatch",
    "TokenAccuracy",
    "Perplexity",
    "sample_from_logits",
    "sample_from_top_k",
    "sample_from_top_p",
    "pad_list",
    "truncate_list",
    "pad_truncate_list",
    "TruncationCounter",
    "same_document_mask",
    "SimpleSpaceTokenizer",
    "UsageError",
    # the family kit: collators, positions, batch and output types, metric update functions, prediction rows
    "IGNORE_INDEX",
    "TrainingBatch",
    "Seq2SeqTrainingBatch",
    "LossDict",
    "PredictionDict",
    "as_ids",
    "validate_examples",
    "tokenizer_vocab_size",
    "required_token_id",
    "mask_token_id_of",
    "row_metadata",
    "TruncationCounting",
    "positions_from_attention_mask",
    "align_to_target",
    "exact_match_update_fn",
    "token_accuracy_update_fn",
    "mean_metric_update_fn",
    "token_nll_metric_update_fn",
    "perplexity_metric_update_fn",
    "UPDATE_FUNCTIONS",
    "prediction_rows",
    "SeededGenerators",
    # the family kit for masked families: answer slots, masking noise, packed documents, unmasking
    "PackedTrainingBatch",
    "TextRowCollator",
    "AnswerSlotCollator",
    "SlotPredictionCollator",
    "answer_slot_start",
    "answer_text",
    "content_generator",
    "mask_with_probability",
    "check_document_options",
    "document_fields",
    "document_attention_mask",
    "attention_and_positions",
    "CONFIDENCES",
    "UNMASKING_ORDERS",
    "check_sampling_options",
    "confidence_scores",
    "order_scores",
    "reveal_top",
    "sample_tokens",
    # noise schedules of masked diffusion (the NoiseSchedule protocol)
    "NoiseScheduleBase",
    "LogLinearSchedule",
    "CosineSchedule",
    "sample_times",
    "moved_attributes",
    "warn_renamed_module",
]
