"""The objective algebra: scores × couplings × links × robust aggregations [+ penalty].

Pure tensor code; imports nothing from the rest of dralign, so anyone with their own trainer can
use it alone:

    from dralign.objectives import Objective
    out = Objective.from_preset("kldpo", beta=0.1, tau=1.0)(pc, pr, rc, rr)
    out.loss.backward()
"""

from .aggregators import AGGREGATORS
from .couplings import COUPLINGS
from .links import LINKS
from .objective import Objective, ObjectiveOutput, preference_accuracy
from .penalty import Wasserstein
from .presets import PRESETS, parameters
from .scores import SCORES, trl_alpha_coef

__all__ = [
    "AGGREGATORS",
    "COUPLINGS",
    "LINKS",
    "Objective",
    "ObjectiveOutput",
    "PRESETS",
    "SCORES",
    "Wasserstein",
    "parameters",
    "preference_accuracy",
    "trl_alpha_coef",
]
