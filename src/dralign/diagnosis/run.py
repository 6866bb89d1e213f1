"""`diagnose`: read the data as `dralign train` does, measure it, advise, return a `Diagnosis`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import build, to_flat_dict
from .advice import Advice, advise
from .config import DiagnoseConfig
from .evidence import load_evidence


@dataclass
class Diagnosis:
    """The result of `diagnose` (the sections of the JSON report; intervals are `MeanCI`)."""

    rows: dict
    duplicates: dict
    leakage: dict | None
    lengths: dict
    groups: dict | None
    sources: dict | None
    label_signal: dict | None
    advice: list[Advice]
    evidence_source: str
    config: dict
    eval_rows: dict | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (MeanCI → {mean, low, high, n, level})."""
        from ..eval.evaluate import to_jsonable

        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["advice"] = [a.as_dict() for a in self.advice]
        return to_jsonable(out)


def diagnose(cfg: DiagnoseConfig | None = None, *, log=print, progress: bool | None = None, **options) -> Diagnosis:
    """Diagnose a preference file: `cfg`, or the options by name as the command line takes them
    (``diagnose(data="pairs.jsonl", max_length=1024, target=["human"])``), checked the same way.

    Sections: rows (read / kept / skipped by reason), duplicates (exact, contradictory), leakage
    (with `eval`), lengths (the longer-response baseline, what `max_length` cuts), groups,
    sources (with `target`: the density-ratio fit), label_signal (with `model`), advice."""
    from ..data.report import DataError
    from . import measure
    from .read import NO_CUT, check, choose_tokenizer, read_data
    from .sources import sources_report

    if cfg is None:
        cfg = build(DiagnoseConfig, options, where="diagnose()")
    elif options:
        raise TypeError("pass a DiagnoseConfig or options by name, not both")
    check(cfg)
    opts = cfg.diagnose
    show = opts.progress if progress is None else progress
    tokenizer, unit = choose_tokenizer(cfg)
    data, held_out = read_data(cfg, tokenizer, max_length=NO_CUT if unit == "bytes" else None, log=log, progress=show)
    if len(data) == 0:
        r = data.report
        raise DataError(f"{cfg.data.data}: no valid pairs (read {r.rows_read}, skipped {r.n_skipped}: {r.skipped})")
    keys = measure.pair_keys(data)
    measured: dict[str, Any] = {
        "rows": measure.rows_report(data),
        "duplicates": measure.duplicates(keys),
        "leakage": measure.leakage(keys, measure.pair_keys(held_out)) if held_out is not None else None,
        "lengths": measure.lengths_report(data, unit, opts.seed, cuts_known=unit == "tokens"),
        "groups": measure.groups_report(data, "group", opts.seed),
        "sources": sources_report(data, opts.target, opts.seed) if data.source_names or opts.target else None,
        "label_signal": _label_signal(cfg, data, show) if opts.model else None,
    }
    evidence, where = load_evidence()
    return Diagnosis(
        **measured,
        advice=advise(measured, evidence),
        evidence_source=where,
        config=to_flat_dict(cfg),
        eval_rows=measure.rows_report(held_out) if held_out is not None else None,
    )


def _label_signal(cfg: DiagnoseConfig, data, progress: bool) -> dict:
    """The model's label signal on `data` (`dralign.diagnosis.signal`)."""
    import torch

    from ..modeling import load_model
    from .signal import label_signal

    opts = cfg.diagnose
    assert opts.model is not None  # called only with --model
    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # transformers' stub types `to` through a wrapper that refuses a device string
    model = load_model(opts.model, dtype="auto").to(device)  # type: ignore[arg-type]
    return label_signal(
        model,
        data,
        max_rows=opts.max_rows,
        batch_size=opts.batch_size,
        seed=opts.seed,
        progress=progress,
        model_name=opts.model,
    )
