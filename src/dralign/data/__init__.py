"""Preference data: rows → validate → tokenize → batches.

    rows = load_rows("train.jsonl")                      # provenance kept per row
    data = tokenize_pairs(rows, tokenizer, max_length=512, on_bad_row="skip")
    print(data.report.summary())
    for idx in batch_indices(len(data), 8, seed=0, epoch=0):
        batch = data.collate(idx)                        # see collate_pairs for the contract

Formats (explicit, implicit, conversational, unpaired) and optional columns are described in
`dralign.data.formats`; file types in `dralign.data.loading`; truncation in
`dralign.data.tokenize`; the batch contract in `dralign.data.collate`; per-row metadata
(weights, groups, density ratios) in `dralign.data.metadata`.
"""

from .collate import batch_indices, collate_pairs, collate_shared_pairs, collate_unpaired, pad_rows
from .dataset import PreferenceData
from .examples import PairExample, RowMeta, UnpairedExample
from .formats import (FORMATS, ColumnMap, Extras, PairRecord, UnpairedRecord, detect_format,
                      split_implicit_conversation, split_implicit_prompt, validate_pairs,
                      validate_unpaired)
from .loading import Row, load_rows, rows_from_records
from .report import BadRow, DataError, DataReport
from .metadata import density_ratios, has_weights, number_names, require_groups, row_ratio
from .tokenize import (LONG_PROMPTS, load_preference_data, pad_token_id_of, render_conversation,
                       tokenize_pairs, tokenize_unpaired, truncate)

__all__ = [
    "FORMATS", "LONG_PROMPTS", "RowMeta", "collate_shared_pairs", "density_ratios", "has_weights",
    "number_names", "pad_rows", "require_groups", "row_ratio", "BadRow", "ColumnMap", "DataError", "DataReport", "Extras", "PairExample",
    "PairRecord", "PreferenceData", "Row", "UnpairedExample", "UnpairedRecord", "batch_indices",
    "collate_pairs", "collate_unpaired", "detect_format", "load_preference_data", "load_rows",
    "pad_token_id_of", "render_conversation", "rows_from_records", "split_implicit_conversation",
    "split_implicit_prompt", "tokenize_pairs", "tokenize_unpaired", "truncate", "validate_pairs",
    "validate_unpaired",
]
