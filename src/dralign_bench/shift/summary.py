"""Across seeds: every run's metrics with hierarchical-bootstrap intervals, the results
document, and the papers' claims checked by paired comparisons."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from dralign.stats import bootstrap_ci, hierarchical_ci

from .data import mixture_of
from .measure import SeedEval
from .scenarios import SCENARIOS, runs_of

if TYPE_CHECKING:
    from .scenarios import ShiftOptions

__all__ = ["alpha_index", "claims_spec", "evaluate_claims", "summarize", "summarize_run"]


def _ci(est, lo, hi, n: int) -> dict:
    return {"mean": float(est), "low": float(lo), "high": float(hi), "n": int(n)}


def _over_seeds(values: Sequence[float]) -> dict:
    """Seed-level scalars (one per seed): their mean with a bootstrap interval over seeds
    (zero width for one seed)."""
    return _ci(*bootstrap_ci(np.asarray(values, dtype=np.float64)), len(values))


def alpha_index(opts: ShiftOptions, alpha: float) -> int:
    return int(np.argmin(np.abs(np.asarray(opts.alphas) - alpha)))


def summarize_run(opts: ShiftOptions, evs: Sequence[SeedEval]) -> dict:
    """Every metric of one (dataset, method) across seeds, each with its 95 % interval."""
    rewards = [e.rewards for e in evs]
    r_est, r_lo, r_hi = hierarchical_ci(rewards)
    w_est, w_lo, w_hi = hierarchical_ci([e.wins for e in evs])
    n = sum(len(e.kl) for e in evs)
    worst = hierarchical_ci(rewards, stat=lambda m: m.min(axis=-1))
    a0 = alpha_index(opts, opts.alpha0)
    return {
        "reward": {str(a): _ci(r_est[i], r_lo[i], r_hi[i], n) for i, a in enumerate(opts.alphas)},
        "win_rate": {str(a): _ci(w_est[i], w_lo[i], w_hi[i], n) for i, a in enumerate(opts.alphas)},
        "reward_at_alpha0": _ci(r_est[a0], r_lo[a0], r_hi[a0], n),
        "win_rate_at_alpha0": _ci(w_est[a0], w_lo[a0], w_hi[a0], n),
        "worst": {"alpha": float(opts.alphas[int(np.argmin(r_est))]), "reward": _ci(*worst, n)},
        "kl": _ci(*hierarchical_ci([e.kl for e in evs]), n),
        "length": _ci(*hierarchical_ci([e.length for e in evs]), n),
        **{k: _over_seeds([getattr(e, k) for e in evs])
           for k in ("token_entropy", "distinct_1", "distinct_2", "accuracy", "ece", "brier")},
        "train_seconds": float(np.mean([e.train_seconds for e in evs])),
        "seeds": len(evs),
    }


def _run_names(opts: ShiftOptions, run_id: str) -> dict:
    dataset, method = run_id.split("/")
    return {"dataset": dataset, "method": method,
            "mixture": method if dataset == "start" else mixture_of(dataset)}


def summarize(opts: ShiftOptions, raw: dict[str, list[SeedEval]], runs, lm: Path, seconds: float) -> dict:
    """The results document: options, world-LM facts, every run's summary."""
    pretraining = json.loads((lm / "pretraining.json").read_text())
    return {
        "options": asdict(opts),
        "world_lm": {"path": str(lm), "parameters": pretraining["parameters"],
                     "final_loss": pretraining["final_loss"], "spec": pretraining["spec"]},
        "scenarios": {name: {"question": s.question, "runs": [f"{d}/{m}" for d, m in runs_of(s)]}
                      for name, s in SCENARIOS.items()
                      if not opts.methods and name in (opts.scenarios or SCENARIOS)},
        "runs": {run_id: {**_run_names(opts, run_id), **summarize_run(opts, evs)}
                 for run_id, evs in raw.items() if evs},
        "seconds": seconds,
    }


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "not significant"


def _compare(opts: ShiftOptions, raw, a: str, b: str, metric: str) -> dict | None:
    """Paired (by seed) difference a − b of a metric with its 95 % interval, or None if a run is missing.

    metric: "reward@alpha0", "worst" (min over α of the mean curve), or a seed-level scalar
    ("token_entropy", "accuracy", "ece" — for ece the sign is flipped so higher is better)."""
    if not raw.get(a) or not raw.get(b):
        return None
    ea, eb = raw[a], raw[b]
    if metric == "reward@alpha0":
        i = alpha_index(opts, opts.alpha0)
        est, lo, hi = hierarchical_ci([e.rewards[:, i] for e in ea], other=[e.rewards[:, i] for e in eb])
    elif metric == "worst":
        est, lo, hi = hierarchical_ci([e.rewards for e in ea], stat=lambda m: m.min(axis=-1),
                                      other=[e.rewards for e in eb])
    else:
        sign = -1.0 if metric == "ece" else 1.0
        est, lo, hi = hierarchical_ci([[sign * getattr(e, metric)] for e in ea],
                                      other=[[sign * getattr(e, metric)] for e in eb])
    return {"a": a, "b": b, "metric": metric, **_ci(est, lo, hi, len(ea)), "verdict": _verdict(lo, hi)}


def claims_spec(opts: ShiftOptions) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(paper, claim, [(run a, run b, metric), ...]): each claim holds if every a beats its b."""
    div = ("fdpo-fkl", "fdpo-js", "fdpo-alpha")
    return [
        ("Xu et al. 2025 (WDPO, KLDPO)",
         "Under a shift of the preference mixture, KLDPO and WDPO keep a higher worst-case gold reward over the α grid than DPO.",
         [(f"{ds}/{m}", f"{ds}/dpo", "worst") for ds in ("mix-linear", "mix-geometric") for m in ("kldpo", "wdpo")]),
        ("Zhu et al. 2025 (DoRA)",
         "With human and synthetic data, DoRA reaches a higher target (human) gold reward than vanilla DRO and than density-ratio reweighting.",
         [("sources/dora", "sources/dro", "reward@alpha0"), ("sources/dora", "sources/dora-reweight", "reward@alpha0")]),
        ("Melnyk et al. 2024 (AOT)",
         "AOT, paired and on unpaired data, reaches a higher gold reward than DPO on the paired data.",
         [("mix-linear/aot", "mix-linear/dpo", "reward@alpha0"), ("unpaired/aot-unpaired", "mix-linear/dpo", "reward@alpha0")]),
        ("Wang et al. 2024 (f-DPO)",
         "Reverse KL (DPO) reaches the highest gold reward of the four divergences.",
         [("mix-linear/dpo", f"mix-linear/{m}", "reward@alpha0") for m in div]),
        ("Wang et al. 2024 (f-DPO)",
         "The other divergences trade reward for diversity: higher token entropy than reverse KL.",
         [(f"mix-linear/{m}", "mix-linear/dpo", "token_entropy") for m in div]),
        ("Wang et al. 2024 (f-DPO)",
         "JS and forward KL are better calibrated (lower ECE of σ(β·margin) on held-out pairs) than reverse KL.",
         [(f"mix-linear/{m}", "mix-linear/dpo", "ece") for m in ("fdpo-js", "fdpo-fkl")]),
        ("Chowdhury et al. 2024 (rDPO); cDPO; Wu et al. 2025 (Dr. DPO)",
         "With 20 % and 40 % of labels flipped, rDPO, cDPO and Dr. DPO reach a higher gold reward than DPO.",
         [(f"{ds}/{m}", f"{ds}/dpo", "reward@alpha0") for ds in ("flip-20", "flip-40") for m in ("rdpo", "cdpo", "drdpo")]),
        ("Chowdhury et al. 2024 (rDPO); cDPO; Wu et al. 2025 (Dr. DPO)",
         "With flipped labels they also rank held-out (clean) pairs more accurately than DPO.",
         [(f"{ds}/{m}", f"{ds}/dpo", "accuracy") for ds in ("flip-20", "flip-40") for m in ("rdpo", "cdpo", "drdpo")]),
    ]


def evaluate_claims(opts: ShiftOptions, raw) -> list[dict]:
    """Each claim's comparisons and an overall verdict: reproduced (every comparison
    significantly in the claimed direction), contradicted (every one significantly against),
    partly (some reproduced), or not significant. Claims whose runs were not made are skipped."""
    out = []
    for paper, claim, comparisons in claims_spec(opts):
        rows = [c for c in (_compare(opts, raw, a, b, m) for a, b, m in comparisons) if c is not None]
        if not rows:
            continue
        verdicts = {r["verdict"] for r in rows}
        overall = (verdicts.pop() if len(verdicts) == 1
                   else "partly reproduced" if "reproduced" in verdicts else "not reproduced")
        out.append({"paper": paper, "claim": claim, "verdict": overall, "comparisons": rows})
    return out
