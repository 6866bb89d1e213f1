"""Named presets: the only map from method names to components. Each preset is a name for a
point in the grid (see docs/design.md, "The objective algebra"); the names are the public
contract, and every other combination is reachable by naming the four choices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .aggregators import AGGREGATORS, XU, ZHU
from .couplings import COUPLINGS, MELNYK
from .links import LINKS
from .params import Param, params_of
from .penalty import PENALTIES
from .scores import SCORES, WANG

CHOICES = ("divergence", "coupling", "link", "robust", "penalty", "length_normalize")
"""Keywords that pick components (not parameters)."""

TABLES: dict[str, Mapping[str, type]] = {
    "divergence": SCORES,
    "coupling": COUPLINGS,
    "link": LINKS,
    "robust": AGGREGATORS,
    "penalty": PENALTIES,
}
"""For each choice, its component classes by name."""


@dataclass(frozen=True)
class Preset:
    name: str
    choices: dict
    paper: str
    summary: str
    defaults: dict = field(default_factory=dict)  # parameter defaults that differ from the Param's
    alias_of: str | None = None  # another name for that preset (same objective)


def _p(name, paper, summary, defaults=None, **choices):
    return Preset(name, choices, paper, summary, defaults or {})


_PRESETS = (
    _p(
        "dpo",
        "Rafailov et al. 2023, Direct Preference Optimization (arXiv 2305.18290)",
        "logistic loss on the reward margin",
    ),
    _p(
        "ipo",
        "Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from Human Preferences (arXiv 2310.12036)",
        "squared loss; length-normalised log-probs as in TRL and the IPO authors' experiments",
        link="ipo",
        length_normalize=True,
    ),
    _p("hinge", "Zhao et al. 2023, SLiC-HF (arXiv 2305.10425)", "hinge loss on the margin", link="hinge"),
    _p(
        "cdpo",
        "Mitchell 2023, A note on DPO with noisy preferences (cDPO)",
        "label-smoothed logistic loss",
        {"label_smoothing": 0.1},
    ),
    _p(
        "rdpo",
        "Chowdhury et al. 2024, Provably Robust DPO (arXiv 2403.00409)",
        "unbiased loss under label flips at rate eps",
        {"label_smoothing": 0.1},
        link="robust",
    ),
    _p("fdpo-fkl", WANG, "forward-KL f-DPO", divergence="forward_kl"),
    _p("fdpo-js", WANG, "Jensen-Shannon f-DPO", divergence="js"),
    _p("fdpo-alpha", WANG, "alpha-divergence f-DPO", divergence="alpha"),
    _p("aot", MELNYK, "AOT paired: sorted policy margins dominate sorted reference margins", coupling="aot"),
    _p(
        "aot-unpaired",
        MELNYK,
        "AOT unpaired: sorted chosen scores dominate sorted rejected scores",
        coupling="aot_unpaired",
    ),
    _p("kldpo", XU, "KL-ball distributionally robust DPO", robust="kl"),
    _p("wdpo", XU, "Wasserstein DRO DPO via a gradient penalty on input embeddings", penalty="wasserstein"),
    _p("dora", ZHU, "density-ratio calibrated KL-DRO", robust="dora"),
    _p("dora-reweight", ZHU, "importance reweighting by density ratios (DoRA baseline)", robust="reweight"),
    _p(
        "drdpo",
        "Wu et al. 2025, Towards Robust Alignment of LMs: Distributionally Robustifying DPO (arXiv 2407.07880)",
        "Dr. DPO: log-mean-exp of negative losses",
        robust="drdpo",
    ),
    _p(
        "group-dro",
        "Ramesh et al. 2024, Group Robust Preference Optimization (arXiv 2405.20304)",
        "group DRO with a persistent simplex weight q over groups",
        robust="group",
    ),
    _p(
        "cvar",
        "Rockafellar & Uryasev 2000; Duchi & Namkoong 2021 (CVaR DRO)",
        "mean of the worst fraction of losses",
        robust="cvar",
    ),
)
_ALIASES = {
    "dro": ("kldpo", ZHU, "vanilla KL-DRO, DoRA's baseline: the same objective as kldpo (its lambda is kldpo's tau)")
}

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
for _alias, (_target, _paper, _summary) in _ALIASES.items():
    _t = PRESETS[_target]
    PRESETS[_alias] = Preset(_alias, _t.choices, _paper, _summary, _t.defaults, alias_of=_target)


@dataclass(frozen=True)
class ParamSpec(Param):
    """A `Param` with where it is used: `used_by` ("robust=kl", ...) and the presets whose
    default differs (`preset_defaults`)."""

    used_by: tuple = ()
    preset_defaults: dict = field(default_factory=dict)


def parameters() -> dict[str, ParamSpec]:
    """Every method parameter, in a stable order, each declared once on its component(s):
    name → spec with `.default`, `.help`, `.range`/`.choices`, `.validate(value)`, `.used_by`
    and `.preset_defaults`. The CLI's flags and help and `dralign methods` derive from it."""
    found: dict[str, Param] = {}
    used: dict[str, list] = {}
    for kind in ("link", "divergence", "coupling", "robust", "penalty"):  # beta first, as in the docs
        for name, cls in TABLES[kind].items():
            for p in params_of(cls):
                found.setdefault(p.name, p)
                used.setdefault(p.name, []).append(f"{kind}={name}")
    specs = {}
    for name, p in found.items():
        overrides = {k: pr.defaults[name] for k, pr in PRESETS.items() if name in pr.defaults}
        specs[name] = ParamSpec(**vars(p), used_by=tuple(used[name]), preset_defaults=overrides)
    return specs


def resolve_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]
