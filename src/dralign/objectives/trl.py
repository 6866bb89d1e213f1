"""The one translation of TRL's loss settings into a dralign objective.

`trl_loss(fields)` is a pure function of TRL's `DPOConfig` loss fields (``loss_type``,
``loss_weights``, ``label_smoothing``, ``f_divergence_type``, ``f_alpha_divergence_coef``) to
the dralign preset, its parameters, notes (one line per field, for printing) and refusals (one
line each, with the reason). Both the TRL YAML read by ``dralign train --config``
(`dralign.train.trl_config`) and the `DPOTrainer` drop-in (`dralign.integrations.trl`) call it,
so the rules live here once. Nothing here imports TRL.

α convention: the paper's α (dralign's ``alpha``) and TRL's coefficient c
(``f_alpha_divergence_coef``) satisfy α = 1 − c, i.e. c = 1 − α: the map is its own inverse
(`trl_alpha_coef` in `scores.py`, used both ways). TRL's c = 1 is reverse KL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .scores import trl_alpha_coef

TRL_LOSS_PRESETS = {"sigmoid": "dpo", "hinge": "hinge", "ipo": "ipo", "robust": "rdpo", "aot": "aot"}
"""TRL `loss_type` → the dralign preset computing the same loss."""

TRL_DIVERGENCES = {
    "reverse_kl": "reverse_kl",
    "forward_kl": "forward_kl",
    "js_divergence": "js",
    "alpha_divergence": "alpha",
}
"""TRL `f_divergence_type` → dralign divergence (α = 1 − `f_alpha_divergence_coef`)."""

TRL_LOSS_DEFAULTS = {
    "loss_type": ["sigmoid"],
    "loss_weights": None,
    "label_smoothing": 0.0,
    "f_divergence_type": "reverse_kl",
    "f_alpha_divergence_coef": 0.5,
}
"""TRL 1.16's `DPOConfig` defaults of the loss fields (a field not given takes these)."""

LOSS_FIELDS = tuple(TRL_LOSS_DEFAULTS)

UNPAIRED_REASON = (
    "unpaired objectives (aot-unpaired, coupling='aot_unpaired') read separate sets of desirable "
    "and undesirable responses, of different sizes and prompts, which TRL's paired rows (prompt, "
    "chosen, rejected) cannot carry; use `dralign train --method aot-unpaired` on unpaired data, "
    "or aot for paired data"
)


@dataclass(frozen=True)
class TrlLoss:
    """What TRL's loss fields translate to: `preset` (None when refused) with `parameters`
    (beta excluded: it is a field of its own), `notes` and `refusals` (one line each)."""

    preset: str | None
    parameters: dict[str, Any]
    notes: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()


def trl_loss(fields: Mapping[str, Any]) -> TrlLoss:
    """The dralign preset and parameters of TRL's loss fields (missing ones take TRL's defaults).

    sigmoid → dpo, hinge → hinge, ipo → ipo, robust → rdpo (ε = label_smoothing), aot → aot
    (ε = label_smoothing); TRL's sigmoid, ipo and hinge losses ignore label_smoothing, and so does
    the translation (noted). `f_divergence_type` selects the score; alpha takes α = 1 − c.
    """
    given = {**TRL_LOSS_DEFAULTS, **{k: v for k, v in fields.items() if k in TRL_LOSS_DEFAULTS}}
    notes: list[str] = []
    loss = _one_loss(given, notes)
    if isinstance(loss, tuple):  # a refusal
        return TrlLoss(None, {}, tuple(notes), loss)
    notes.append(f"loss_type: {given['loss_type']} -> method: {TRL_LOSS_PRESETS[loss]}")
    params: dict[str, Any] = {}
    _smoothing(loss, given["label_smoothing"], params, notes)
    refusals = _divergence(loss, given, params, notes)
    return TrlLoss(None if refusals else TRL_LOSS_PRESETS[loss], params, tuple(notes), refusals)


def _one_loss(given: dict, notes: list[str]) -> str | tuple[str, ...]:
    """The single TRL loss type of `given`, or the refusal (a tuple of lines)."""
    loss, weights = given["loss_type"], given["loss_weights"]
    losses = [loss] if isinstance(loss, str) else list(loss)
    if len(losses) != 1:
        return (
            f"loss_type={losses} (with loss_weights={weights}) combines several TRL losses "
            "in a weighted sum; dralign has no such objective: give one loss_type or a "
            "dralign method",
        )
    if weights is not None:
        if len(weights) != 1 or float(weights[0]) != 1.0:
            return (
                f"loss_weights={weights}: a weight other than 1 on a single loss only rescales "
                "the learning rate; drop it and set learning_rate",
            )
        notes.append(f"loss_weights: {weights} -> (one loss of weight 1: nothing to set)")
    (loss,) = losses
    if loss == "aot_unpaired":
        return (f"loss_type={loss!r}: {UNPAIRED_REASON}",)
    if loss not in TRL_LOSS_PRESETS:
        return (
            f"loss_type={loss!r}: no dralign equivalent (mapped: "
            f"{', '.join(f'{k} -> {v}' for k, v in TRL_LOSS_PRESETS.items())})",
        )
    return loss


def _smoothing(loss: str, eps: float, params: dict, notes: list[str]) -> None:
    """label_smoothing: ε of rdpo and aot; ignored by TRL's other losses, as here."""
    if loss in ("robust", "aot"):
        params["label_smoothing"] = eps
        notes.append(f"label_smoothing: {eps} -> label_smoothing")
    elif eps:  # TRL 1.16's sigmoid (and ipo, hinge) loss ignores it; dralign's cdpo smooths DPO
        notes.append(
            f"label_smoothing: {eps} -> (ignored, as TRL's {loss} loss ignores it; method cdpo is label-smoothed DPO)"
        )


def _divergence(loss: str, given: dict, params: dict, notes: list[str]) -> tuple[str, ...]:
    """f_divergence_type (+ f_alpha_divergence_coef) into params['divergence'] (and 'alpha')."""
    divergence, coef = given["f_divergence_type"], given["f_alpha_divergence_coef"]
    if divergence not in TRL_DIVERGENCES:
        return (f"f_divergence_type={divergence!r}: not one of {', '.join(TRL_DIVERGENCES)}",)
    if divergence != "alpha_divergence":
        if coef != TRL_LOSS_DEFAULTS["f_alpha_divergence_coef"]:
            notes.append(f"f_alpha_divergence_coef: {coef} -> (unused: f_divergence_type is {divergence})")
    elif abs(float(coef) - 1.0) < 1e-6:
        divergence = "reverse_kl"  # TRL: coefficient 1 is reverse KL
    params["divergence"] = TRL_DIVERGENCES[divergence]
    notes.append(f"f_divergence_type: {given['f_divergence_type']} -> divergence: {params['divergence']}")
    if divergence != "reverse_kl" and loss == "ipo":
        return (
            "f_divergence_type with loss_type ipo: TRL length-normalises the f-scores, dralign "
            "the log-probs, which differ for a nonlinear score; give an explicit objective "
            "(divergence, link ipo, length_normalize)",
        )
    if divergence == "alpha_divergence":
        params["alpha"] = trl_alpha_coef(float(coef))  # α = 1 − c (the map is its own inverse)
        notes.append(f"f_alpha_divergence_coef: {coef} -> alpha: {params['alpha']:g} (alpha = 1 - coef)")
    return ()
