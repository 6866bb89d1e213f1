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

# imported on first use (PEP 562): `dralign train --help` reads `dralign.data.options` without
# torch, which collate and metadata import
_EXPORTS = {
    **dict.fromkeys(
        ("batch_indices", "collate_pairs", "collate_shared_pairs", "collate_unpaired", "pad_rows"), "collate"
    ),
    **dict.fromkeys(("PreferenceData",), "dataset"),
    **dict.fromkeys(("PairExample", "RowMeta", "UnpairedExample"), "examples"),
    **dict.fromkeys(
        (
            "FORMATS",
            "ColumnMap",
            "Extras",
            "PairRecord",
            "UnpairedRecord",
            "detect_format",
            "split_implicit_conversation",
            "split_implicit_prompt",
            "validate_pairs",
            "validate_unpaired",
        ),
        "formats",
    ),
    **dict.fromkeys(("Row", "load_rows", "rows_from_records"), "loading"),
    **dict.fromkeys(("BadRow", "DataError", "DataReport"), "report"),
    **dict.fromkeys(("density_ratios", "has_weights", "number_names", "require_groups", "row_ratio"), "metadata"),
    **dict.fromkeys(
        ("Columns", "ReadOptions", "Source", "Truncation", "load_pairs", "load_preference_data", "load_unpaired"),
        "options",
    ),
    **dict.fromkeys(
        ("LONG_PROMPTS", "pad_token_id_of", "render_conversation", "tokenize_pairs", "tokenize_unpaired", "truncate"),
        "tokenize",
    ),
}

__all__ = [
    "Columns",
    "ReadOptions",
    "Source",
    "Truncation",
    "load_pairs",
    "load_unpaired",
    "FORMATS",
    "LONG_PROMPTS",
    "RowMeta",
    "collate_shared_pairs",
    "density_ratios",
    "has_weights",
    "number_names",
    "pad_rows",
    "require_groups",
    "row_ratio",
    "BadRow",
    "ColumnMap",
    "DataError",
    "DataReport",
    "Extras",
    "PairExample",
    "PairRecord",
    "PreferenceData",
    "Row",
    "UnpairedExample",
    "UnpairedRecord",
    "batch_indices",
    "collate_pairs",
    "collate_unpaired",
    "detect_format",
    "load_preference_data",
    "load_rows",
    "pad_token_id_of",
    "render_conversation",
    "rows_from_records",
    "split_implicit_conversation",
    "split_implicit_prompt",
    "tokenize_pairs",
    "tokenize_unpaired",
    "truncate",
    "validate_pairs",
    "validate_unpaired",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later reads are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
