"""Model and reference loading, log-prob computation, reference cache."""

from dralign.modeling.cache import ReferenceCache, model_fingerprint
from dralign.modeling.loading import (
    apply_lora,
    attention_supports_double_backward,
    enable_gradient_checkpointing,
    load_model,
    load_tokenizer,
)
from dralign.modeling.logps import (
    PairLogps,
    SequenceLogps,
    pair_logps,
    sequence_logps,
    split_pairs,
    target_log_probs,
)
from dralign.modeling.reference import (
    AdapterDisabledReference,
    CachedReference,
    FrozenReference,
    Reference,
)

__all__ = [
    "AdapterDisabledReference",
    "CachedReference",
    "FrozenReference",
    "PairLogps",
    "Reference",
    "ReferenceCache",
    "SequenceLogps",
    "apply_lora",
    "attention_supports_double_backward",
    "enable_gradient_checkpointing",
    "load_model",
    "load_tokenizer",
    "model_fingerprint",
    "pair_logps",
    "sequence_logps",
    "split_pairs",
    "target_log_probs",
]
