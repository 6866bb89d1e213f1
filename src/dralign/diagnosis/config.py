"""`dralign diagnose` options: its own (`DiagnoseOptions`) and the data section the trainer also
composes (`ReadOptions`), so the file is read as `dralign train` reads it: same flags, defaults,
checks and bad-row report (only --on-bad-row defaults to skip here)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ..config import Range, option
from ..data.options import ReadOptions


@dataclass
class DiagnoseOptions:
    """What to look at besides the data file, and where the report goes."""

    eval: str | None = option(
        None,
        "held-out file or folder, read as `dralign train --eval-data` reads it: prompts shared with --data are reported (leakage)",
    )
    model: str | None = option(
        None,
        "causal LM (the one you would train from): its tokenizer counts tokens, and its own log-probs give the label signal (how often it prefers the chosen response)",
    )
    tokenizer: str | None = option(
        None,
        "tokenizer that counts tokens (default: --model's); with neither, lengths are UTF-8 bytes and the cut counts are not computed",
    )
    target: list[str] = option(
        [],
        "source value(s) of the target distribution: fit the density-ratio classifier (as `dralign ratio fit`) and report its AUC, calibration and ESS",
    )
    json: str | None = option(
        None, "write the report as JSON here, and beside it (x.json -> x.png) the plots when matplotlib is installed"
    )
    max_rows: int = option(0, "label signal: score at most this many pairs, sampled with --seed (0 = all)", Range(0))
    batch_size: int = option(16, "label signal: pairs per forward pass", Range(1))
    cache_dir: str | None = option(
        None,
        "tokenised-data cache to read and write (e.g. a train run's OUTPUT_DIR/ref_cache/data: with the run's data options, --on-bad-row included, its entries are reused); default: no cache",
    )
    seed: int = option(0, "seed of sampling (--max-rows, the ratio fit's subsample and folds) and bootstrap intervals")
    device: str | None = option(None, "device for --model (default: cuda if available, else cpu)")
    progress: bool = option(True, "show progress bars")


@dataclass
class DiagnoseDataOptions(ReadOptions):
    """Preference data, read as `dralign train` reads it: the data section both compose
    (`dralign.data.options.ReadOptions`), plus the file and its split."""

    data: str | None = option(None, "JSONL/JSON/Parquet/CSV (.gz ok), a save_to_disk folder, or a hub dataset name")
    data_split: str = option("train", "split to read")
    # a diagnosis reports bad rows (train's own report) rather than stopping at the first one
    on_bad_row: Literal["error", "skip"] = option(
        "skip",
        "what to do with invalid rows: skip them and count them by reason (the default here), or stop at the first (error, train's default)",
    )


@dataclass
class DiagnoseConfig:
    diagnose: DiagnoseOptions = dataclasses.field(default_factory=DiagnoseOptions)
    data: DiagnoseDataOptions = dataclasses.field(default_factory=DiagnoseDataOptions)
