"""Each scenario's claims (the papers' statements as comparisons) and its positive control."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .claims import ClaimSpec, Comparison, judge
from .controls import conflict_control, flip_control, learning_control, sources_control, unpaired_control
from .scenarios import SCENARIOS, RunSpec, concrete, frontier_runs, scenarios_of

if TYPE_CHECKING:
    from .scenarios import ShiftOptions

__all__ = ["evaluate_claims", "claim_specs", "mixture_regret"]

F = "dpo-frontier"


def _tuned_id(sc, method: str, chosen: dict) -> str:
    t = next(t for t in sc.tuned if t.method == method)
    return RunSpec(t.dataset, t.method, ((t.param, chosen[(t.dataset, t.method)]),)).id


def claim_specs(opts: ShiftOptions, chosen: dict) -> list[ClaimSpec]:
    specs = []
    for sc in scenarios_of(opts):
        fixed = [concrete(opts, f).id for f in sc.fixed]
        if sc.name == "mixture":
            kl, wd = _tuned_id(sc, "kldpo", chosen), _tuned_id(sc, "wdpo", chosen)
            specs.append(
                ClaimSpec(
                    "mixture",
                    "Xu et al. 2025 (WDPO, KLDPO)",
                    "Under a shift of the preference mixture, KLDPO and WDPO keep a higher worst-case "
                    "gold reward over the α grid than DPO (at matched r(α₀) on DPO's β-frontier).",
                    (Comparison(kl, F, "worst", "r0"), Comparison(wd, F, "worst", "r0")),
                    effect_of_interest=0.015,
                )
            )
        elif sc.name == "divergence":  # one claim per divergence and statement, each over its β grid
            paper = "Wang et al. 2024 (f-DPO)"
            for method, name in (("fdpo-fkl", "Forward KL"), ("fdpo-js", "JS")):
                runs = [r for r in fixed if r.startswith(f"mix/{method}[")]
                specs += [
                    ClaimSpec(
                        "divergence",
                        paper,
                        f"Reverse KL (DPO) reaches a higher gold reward than {name} at matched KL to the start.",
                        tuple(Comparison(F, r, "r0", "kl") for r in runs),
                        effect_of_interest=0.02,
                    ),
                    ClaimSpec(
                        "divergence",
                        paper,
                        f"{name} trades reward for diversity: higher token entropy than reverse KL at matched reward.",
                        tuple(Comparison(r, F, "entropy", "r0") for r in runs),
                        effect_of_interest=0.05,
                    ),  # nats
                    ClaimSpec(
                        "divergence",
                        paper,
                        f"{name} is better calibrated than reverse KL (mean |p̂ − p| with "
                        "each method's own link against the known preference probability, at matched KL).",
                        tuple(Comparison(r, F, "calib", "kl", sign=-1.0) for r in runs),
                        effect_of_interest=0.02,
                    ),
                ]
        elif sc.name == "flips":
            robust = [_tuned_id(sc, "cdpo", chosen), fixed[1], _tuned_id(sc, "drdpo", chosen)]
            papers = "Chowdhury et al. 2024 (rDPO); Mitchell 2023 (cDPO); Wu et al. 2025 (Dr. DPO)"
            specs += [
                ClaimSpec(
                    "flips",
                    papers,
                    f"With {opts.flip_rate:.0%} of labels flipped, rDPO (ε = true rate), cDPO and Dr. DPO rank "
                    "held-out pairs more accurately (noise-free ordering) than DPO at matched KL.",
                    tuple(Comparison(r, F, "acc", "kl") for r in robust),
                    effect_of_interest=0.01,
                ),
                ClaimSpec(
                    "flips",
                    papers,
                    f"With {opts.flip_rate:.0%} of labels flipped, they reach a higher gold reward r(α₀) than DPO at matched KL.",
                    tuple(Comparison(r, F, "r0", "kl") for r in robust),
                    effect_of_interest=0.01,
                ),
                ClaimSpec(
                    "flips",
                    "Chowdhury et al. 2024 (rDPO)",
                    "rDPO needs the true flip rate: at ε = true rate it ranks held-out pairs more accurately than at ε = 0.1.",
                    (Comparison(fixed[1], fixed[2], "acc"),),
                    effect_of_interest=0.01,
                ),
            ]
        elif sc.name == "sources":
            dora, dro = _tuned_id(sc, "dora", chosen), _tuned_id(sc, "dro", chosen)
            paper = "Zhu et al. 2025 (DoRA)"
            specs += [  # F here is the upper envelope of DPO on all rows and DPO on the human rows
                ClaimSpec(
                    "sources",
                    paper,
                    "With scarce human rows and plentiful useful-but-shifted synthetic rows, DoRA reaches a "
                    "higher target gold reward r(α₀) than the better of DPO on all rows and DPO on the human "
                    "rows, at matched KL.",
                    (Comparison(dora, F, "r0", "kl"),),
                    effect_of_interest=0.02,
                ),
                ClaimSpec(
                    "sources",
                    paper,
                    "DoRA's calibrated DRO beats plain importance reweighting by the same estimated density ratios.",
                    (Comparison(dora, fixed[0], "r0"),),
                    effect_of_interest=0.01,
                ),
                ClaimSpec(
                    "sources",
                    paper,
                    "DoRA beats vanilla KL-DRO (both tuned) in target gold reward r(α₀).",
                    (Comparison(dora, dro, "r0"),),
                    effect_of_interest=0.02,
                ),
            ]
        elif sc.name == "unpaired":
            specs.append(
                ClaimSpec(
                    "unpaired",
                    "Melnyk et al. 2024 (AOT)",
                    "AOT on unpaired data reaches a higher gold reward r(α₀) than an unpaired baseline "
                    "(DPO on randomly re-paired completions, on its β grid) at matched KL, the same "
                    "completions per step.",
                    (Comparison(fixed[0], F, "r0", "kl"),),
                    effect_of_interest=0.02,
                )
            )
    return specs


def _dpo(opts: ShiftOptions, dataset: str) -> str:
    """DPO on `dataset` at the default β (a point of every frontier)."""
    return RunSpec(dataset, "dpo", (("beta", opts.beta),)).id


def control_of(opts: ShiftOptions, scenario: str, metrics: dict, ratios: list[dict], seen: dict | None = None) -> dict:
    """The scenario's positive control, computed from the test runs (and, for the sources
    scenario, the per-seed density-ratio fits; for the unpaired one, the completions each
    trainer drew per step, `seen`)."""
    if scenario == "mixture":
        return conflict_control(metrics[_dpo(opts, "labmix")], metrics["start"])
    if scenario == "flips":
        return flip_control(metrics[RunSpec("clean", "dpo").id], metrics[_dpo(opts, "flip")])
    if scenario == "sources":
        return sources_control(
            metrics[_dpo(opts, "sources")],
            metrics[_dpo(opts, "human")],
            metrics[RunSpec("sources-oracle", "dora-reweight").id],
            [r["auc"] for r in ratios],
        )
    if scenario == "unpaired":
        seen = seen or {}
        return unpaired_control(
            seen.get(RunSpec("unpaired", "aot-unpaired").id, []), seen.get(_dpo(opts, "repaired"), [])
        )
    return learning_control(metrics[_dpo(opts, "mix")], metrics["start"])


def mixture_regret(opts: ShiftOptions, metrics: dict) -> dict:
    """Mixture: each run's regret at α = r(α) of DPO trained at α (same pairs, the labeller
    mixture at α, default β) minus the run's r(α), mean over seeds, at every α that has such a DPO
    run (α₀ included: DPO at the default β). {run id: {α: regret}}; empty without the scenario."""
    if "mixture" not in [s.name for s in scenarios_of(opts)]:
        return {}
    refs = {a: RunSpec(f"labmix-a{a:g}", "dpo").id for a in (0.0, 0.5, 1.0)}
    refs[opts.alpha0] = _dpo(opts, "labmix")
    idx = {a: int(np.argmin(np.abs(np.asarray(opts.alphas) - a))) for a in refs}
    out = {}
    for rid, ms in metrics.items():
        if rid != "start" and not rid.startswith("labmix"):
            continue
        out[rid] = {
            f"{a:g}": float(np.mean([r.curve[idx[a]] - m.curve[idx[a]] for r, m in zip(metrics[ref], ms)]))
            for a, ref in sorted(refs.items())
            if ref in metrics
        }
    return out


def evaluate_claims(
    opts: ShiftOptions, metrics: dict, chosen: dict, ratios: list[dict] = (), seen: dict | None = None
) -> list[dict]:
    out = []
    for spec in claim_specs(opts, chosen):
        fids = [r.id for r in frontier_runs(opts, SCENARIOS[spec.scenario])]
        if not all(f in metrics for f in fids):
            continue
        control = control_of(opts, spec.scenario, metrics, list(ratios), seen)
        out.append(judge(spec, metrics, fids, control))
    return out
