"""`dralign diagnose` options: its own (`DiagnoseOptions`) and the data options, which are the
trainer's own fields (`dralign.train.config.DataOptions`), so the file is read as `dralign train`
reads it: same flags, defaults, checks and bad-row report."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from ..config import Range, option

# The trainer's data fields that say how one file is read, validated, tokenised and cut. Left out:
# the held-out split options (diagnose's --eval names the held-out file), the ratio target
# (diagnose's --target), unpaired columns (diagnose reads pairs), batch layout options.
SHARED_DATA_OPTIONS = ("data", "data_subset", "data_split", "format", "prompt_column",
                       "chosen_column", "rejected_column", "weight_column", "group_column",
                       "source_column", "target_prob_column", "ratio_column", "max_length",
                       "max_prompt_length", "truncation_side", "long_prompts", "on_bad_row")

# A diagnosis reports bad rows rather than stopping at them (the report is the one train prints).
DEFAULTS = {"on_bad_row": "skip"}


@dataclass
class DiagnoseOptions:
    """What to look at besides the data file, and where the report goes."""

    eval: str | None = option(None, "held-out file or folder, read as `dralign train --eval-data` reads it: prompts shared with --data are reported (leakage)")
    model: str | None = option(None, "causal LM (the one you would train from): its tokenizer counts tokens, and its own log-probs give the label signal (how often it prefers the chosen response)")
    tokenizer: str | None = option(None, "tokenizer that counts tokens (default: --model's); with neither, lengths are UTF-8 bytes and the cut counts are not computed")
    target: list[str] = option([], "source value(s) of the target distribution: fit the density-ratio classifier (as `dralign ratio fit`) and report its AUC, calibration and ESS")
    json: str | None = option(None, "write the report as JSON here, and beside it (x.json -> x.png) the plots when matplotlib is installed")
    max_rows: int = option(0, "label signal: score at most this many pairs, sampled with --seed (0 = all)", Range(0))
    batch_size: int = option(16, "label signal: pairs per forward pass", Range(1))
    cache_dir: str | None = option(None, "tokenised-data cache to read and write (e.g. a train run's OUTPUT_DIR/ref_cache/data: with the run's data options, --on-bad-row included, its entries are reused); default: no cache")
    seed: int = option(0, "seed of sampling (--max-rows, the ratio fit's subsample and folds) and bootstrap intervals")
    device: str | None = option(None, "device for --model (default: cuda if available, else cpu)")
    progress: bool = option(True, "show progress bars")


def _data_options() -> type:
    """DiagnoseDataOptions: the `SHARED_DATA_OPTIONS` fields of the trainer's `DataOptions`,
    their defaults, help and ranges included (the same mechanics as `dralign eval`'s)."""
    from ..train.config import DataOptions

    hints = typing.get_type_hints(DataOptions)
    fields = [(f.name, hints[f.name], dataclasses.field(default=DEFAULTS.get(f.name, f.default),
                                                        default_factory=f.default_factory,
                                                        metadata=f.metadata))
              for f in dataclasses.fields(DataOptions) if f.name in SHARED_DATA_OPTIONS]
    return dataclasses.make_dataclass("DiagnoseDataOptions", fields, namespace={
        "__doc__": "Preference data, read as `dralign train` reads it (same options)."})


DiagnoseDataOptions = _data_options()


@dataclass
class DiagnoseConfig:
    diagnose: DiagnoseOptions = dataclasses.field(default_factory=DiagnoseOptions)
    data: DiagnoseDataOptions = dataclasses.field(default_factory=DiagnoseDataOptions)
