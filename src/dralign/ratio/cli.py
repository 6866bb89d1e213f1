"""`dralign ratio fit`: DoRA's cross-fitted density-ratio classifier on a preference file.

Writes every input row unchanged plus `target_prob` and `ratio` (h = c/π_T; the pair's weight
under the response-level rule), ready for `dralign train --method dora --data OUT`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import SEED_RANGE, Range, option
from ..data.options import Columns, ReadOptions
from ..printable import shown  # source and target names are data: printed inert


@dataclass
class RatioOptions:
    """Density-ratio fitting for DoRA."""

    data: str | None = option(None, "preference file or folder (any format `dralign train` reads)")
    output: str | None = option(
        None, "where to write the rows with target_prob and ratio (JSONL; default: DATA.ratios.jsonl)"
    )
    target: list[str] = option([], "source value(s) that mark the target distribution, e.g. human")
    response_level: bool = option(False, "sources are per response (chosen and rejected separately)")
    chosen_source_column: str = option(
        "chosen_source", "response level: the chosen response's source (dotted path allowed, e.g. meta.chosen_policy)"
    )
    rejected_source_column: str = option(
        "rejected_source", "response level: the rejected response's source (dotted path allowed)"
    )
    pair_rule: Literal["geometric", "product"] = option(
        "geometric",
        "response level: a pair's weight from its two responses' ratios: geometric (sqrt(h+ h-)) or product",
    )
    model: str | None = option(
        None, "features: frozen mean-pooled hidden states of this causal LM (normally the reference model)"
    )
    encoder: str | None = option(None, "features: instead, any Hugging Face encoder (AutoModel) by name or path")
    folds: int = option(5, "cross-fitting folds: no row is scored by a classifier that saw it", Range(2))
    clip: float | None = option(None, "cap the weights at this value", Range(0, low_open=True))
    seed: int = option(0, "fold assignment seed", SEED_RANGE)


# fit_file's default for programmatic callers (the shift benchmark's fitted ratios): features cut
# at 256 tokens, as before; `dralign ratio fit` passes its data section (--max-length 512 as train)
FEATURES = ReadOptions(max_length=256)


@dataclass
class RatioConfig:
    """`dralign ratio fit`: the fitting options and the data section `dralign train` reads
    with (columns, --max-length for the features, --on-bad-row, --source-column)."""

    ratio: RatioOptions
    data: ReadOptions = dataclasses.field(default_factory=ReadOptions)


def _dotted(row: dict, path: str):
    value = row
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(path)
        value = value[key]
    return value


def pair_rows(data: str, on_bad_row: str = "error", columns: Columns = Columns()):  # noqa: B008 (frozen)
    """(valid rows' original dicts, their prompt/chosen/rejected texts) via dralign.data, the
    fields read from `columns`."""
    from ..data import load_rows, validate_pairs
    from ..data.report import DataError

    rows = load_rows(data)
    fmt, records, bad = validate_pairs(rows, columns=columns)
    if bad and on_bad_row == "error":
        raise DataError.from_bad_rows(bad, len(rows))
    if bad:
        print(f"skipped {len(bad)} invalid rows of {len(rows)}")
    by_index = {(r.file, r.index): r for r in rows}
    originals, texts = [], []
    for rec in records:
        if rec.conversational:
            raise ValueError(f"{rec.file}: ratio fit reads plain-text rows; render conversations first")
        originals.append(dict(by_index[(rec.file, rec.row)].data))
        texts.append({"prompt": rec.prompt, "chosen": rec.chosen, "rejected": rec.rejected})
    return originals, texts


def fit_file(opts: RatioOptions, read: ReadOptions = FEATURES):
    """Fit, print the summary, write the output; returns the RatioFit. read: how the rows are
    read (columns, bad rows, the source column) and the features' --max-length: the trainer's
    data section for inline fitting, `dralign ratio fit`'s own otherwise."""
    from ..modeling import load_model, load_tokenizer
    from .fit import fit_density_ratios

    if not opts.data:
        raise ValueError("pass --data FILE")
    if not opts.target:
        raise ValueError("pass --target SOURCE (the source value(s) of the target distribution)")
    if bool(opts.model) == bool(opts.encoder):
        raise ValueError("pass exactly one of --model (reference LM features) or --encoder NAME")
    originals, texts = pair_rows(opts.data, read.on_bad_row, read.columns())
    rows = []
    for i, (orig, text) in enumerate(zip(originals, texts)):
        row = dict(text)
        try:
            if opts.response_level:
                row["chosen_source"] = str(_dotted(orig, opts.chosen_source_column))
                row["rejected_source"] = str(_dotted(orig, opts.rejected_source_column))
            else:
                row["source"] = str(_dotted(orig, read.source_column))
        except KeyError as e:
            raise ValueError(f"{opts.data}: row {i}: field '{e.args[0]}' is missing (the row's source)") from None
        rows.append(row)
    model = tokenizer = None
    if opts.model:
        tokenizer = load_tokenizer(opts.model)
        model = load_model(opts.model, dtype="float32")
    fit = fit_density_ratios(
        rows,
        target=set(opts.target),
        source_column="source",
        model=model,
        tokenizer=tokenizer,
        encoder=opts.encoder,
        folds=opts.folds,
        clip=opts.clip,
        seed=opts.seed,
        response_level=opts.response_level,
        pair_rule=opts.pair_rule,
        max_length=read.max_length,
        progress=True,
    )
    output = Path(opts.output or Path(opts.data).with_suffix("").as_posix().removesuffix(".jsonl") + ".ratios.jsonl")
    fit.write_jsonl(output, originals)
    print(shown(fit.summary()))
    print(f"wrote {len(originals)} rows with target_prob and ratio to {output}")
    return fit
