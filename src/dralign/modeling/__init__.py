"""Model and reference loading, log-prob computation, reference cache, prefix sharing."""

from dralign.modeling.cache import CachedReference, ReferenceCache, build_reference_cache, model_fingerprint
from dralign.modeling.loading import (
    MissingExtraError,
    apply_lora,
    attention_supports_double_backward,
    check_same_tokenizer,
    enable_gradient_checkpointing,
    is_gguf,
    load_model,
    load_tokenizer,
    save_model,
)
from dralign.modeling.logps import (
    PairLogps,
    SequenceLogps,
    batch_logps,
    completion_logps,
    normalized,
    pair_logps,
    sequence_logps,
    split_pairs,
    target_log_probs,
)
from dralign.modeling.memory import choose_gradient_checkpointing, limit_heap_retention
from dralign.modeling.prefix_sharing import choose_packing, choose_prefix_sharing, prefix_sharing_cost_ratio
from dralign.modeling.reference import (
    AdapterDisabledReference,
    FrozenReference,
    Reference,
    model_logps,
)
from dralign.modeling.scoring import score_rows
from dralign.modeling.wrappers import eval_mode, unwrap

__all__ = [
    "AdapterDisabledReference",
    "CachedReference",
    "FrozenReference",
    "MissingExtraError",
    "PairLogps",
    "Reference",
    "ReferenceCache",
    "SequenceLogps",
    "apply_lora",
    "attention_supports_double_backward",
    "check_same_tokenizer",
    "batch_logps",
    "build_reference_cache",
    "choose_gradient_checkpointing",
    "choose_packing",
    "choose_prefix_sharing",
    "completion_logps",
    "enable_gradient_checkpointing",
    "eval_mode",
    "is_gguf",
    "limit_heap_retention",
    "load_model",
    "load_tokenizer",
    "model_fingerprint",
    "model_logps",
    "normalized",
    "pair_logps",
    "prefix_sharing_cost_ratio",
    "score_rows",
    "save_model",
    "sequence_logps",
    "split_pairs",
    "target_log_probs",
    "unwrap",
]
