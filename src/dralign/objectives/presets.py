"""Named presets: each is only a name for a point in the grid (DESIGN §1). The names are the
public contract; every other combination is reachable by naming the four choices."""

from __future__ import annotations

from dataclasses import dataclass, field

PARAMETERS = {
    "beta": 0.1, "label_smoothing": 0.0, "alpha": 0.5, "tau": 1.0, "drdpo_beta": 1.0,
    "lam": 1.0, "eta": 0.01, "cvar_level": 0.2, "chi2_radius": 1.0, "rho": 0.01,
}
"""Method parameters and their defaults; one name everywhere (keyword, YAML key, --flag)."""

CHOICES = ("divergence", "coupling", "link", "robust", "penalty", "penalty_form", "penalty_mode",
           "length_normalize", "num_groups")


@dataclass(frozen=True)
class Preset:
    name: str
    choices: dict
    paper: str
    summary: str
    defaults: dict = field(default_factory=dict)  # parameter defaults that differ from PARAMETERS
    parameters: tuple = ("beta",)  # the parameters that matter for this preset


XU = "Xu et al. 2025, Robust LLM Alignment via Distributionally Robust DPO (arXiv 2502.01930)"
WANG = "Wang et al. 2024, Beyond Reverse KL: Generalizing DPO with Diverse Divergence Constraints (arXiv 2309.16240)"
ZHU = "Zhu et al. 2025, Leveraging Robust Optimization for LLM Alignment under Distribution Shifts (arXiv 2504.05831)"
MELNYK = "Melnyk et al. 2024, Distributional Preference Alignment of LLMs via Optimal Transport (arXiv 2406.05882)"


def _p(name, paper, summary, defaults=None, parameters=("beta",), **choices):
    return Preset(name, choices, paper, summary, defaults or {}, parameters)


PRESETS = {p.name: p for p in (
    _p("dpo", "Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290)",
       "logistic loss on the reward margin"),
    _p("ipo", "Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from Human Preferences (arXiv 2310.12036)",
       "squared loss; length-normalised log-probs as in TRL and the IPO authors' experiments",
       link="ipo", length_normalize=True),
    _p("hinge", "Zhao et al. 2023, SLiC-HF (arXiv 2305.10425)", "hinge loss on the margin",
       link="hinge"),
    _p("cdpo", "Mitchell 2023, A note on DPO with noisy preferences (cDPO)",
       "label-smoothed logistic loss", {"label_smoothing": 0.1}, ("beta", "label_smoothing")),
    _p("rdpo", "Chowdhury et al. 2024, Provably Robust DPO (arXiv 2403.00409)",
       "unbiased loss under label flips at rate eps", {"label_smoothing": 0.1},
       ("beta", "label_smoothing"), link="robust"),
    _p("fdpo-fkl", WANG, "forward-KL f-DPO", divergence="forward_kl"),
    _p("fdpo-js", WANG, "Jensen-Shannon f-DPO", divergence="js"),
    _p("fdpo-alpha", WANG, "alpha-divergence f-DPO", parameters=("beta", "alpha"), divergence="alpha"),
    _p("aot", MELNYK, "AOT paired: sorted policy margins dominate sorted reference margins",
       parameters=("beta", "label_smoothing"), coupling="aot"),
    _p("aot-unpaired", MELNYK, "AOT unpaired: sorted chosen scores dominate sorted rejected scores",
       parameters=("beta", "label_smoothing"), coupling="aot_unpaired"),
    _p("kldpo", XU, "KL-ball distributionally robust DPO", parameters=("beta", "tau"), robust="kl"),
    _p("wdpo", XU, "Wasserstein DRO DPO via a gradient penalty on input embeddings",
       parameters=("beta", "rho"), penalty="wasserstein"),
    _p("dora", ZHU, "density-ratio calibrated KL-DRO", parameters=("beta", "lam"), robust="dora"),
    _p("dora-reweight", ZHU, "importance reweighting by density ratios (DoRA baseline)",
       robust="reweight"),
    _p("dro", ZHU, "vanilla KL-DRO (DoRA baseline; tau plays lam)", parameters=("beta", "tau"),
       robust="kl"),
    _p("drdpo", "Wu et al. 2025, Towards Robust Alignment of LMs: Distributionally Robustifying DPO (arXiv 2407.07880)",
       "Dr. DPO: log-mean-exp of negative losses", parameters=("beta", "drdpo_beta"), robust="drdpo"),
    _p("group-dro", "Ramesh et al. 2024, Group Robust Preference Optimization (arXiv 2405.20304)",
       "group DRO with a persistent simplex weight q over groups", parameters=("beta", "eta"),
       robust="group"),
    _p("cvar", "Rockafellar & Uryasev 2000; Duchi & Namkoong 2021 (CVaR DRO)",
       "mean of the worst fraction of losses", parameters=("beta", "cvar_level"), robust="cvar"),
)}


def preset_kwargs(name: str, **params) -> dict:
    """Keyword arguments of `Objective` for preset `name`, `params` overriding its defaults."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    unknown = set(params) - set(PARAMETERS) - set(CHOICES)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}; valid: "
                         f"{', '.join(list(PARAMETERS) + list(CHOICES))}")
    preset = PRESETS[name]
    return {**preset.choices, **preset.defaults, **params}
