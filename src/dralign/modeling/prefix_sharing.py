"""Whether to score pairs in the prefix-shared layout: the one cost model and the decision.

The layout itself (one row [prompt | chosen | rejected], a 4-D mask, restarted positions) is
`dralign.data.collate.collate_shared_pairs` and `dralign.modeling.logps.shared_pair_logps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from dralign.modeling.logps import prefix_sharing_support
from dralign.modeling.wrappers import unwrap

# `auto` turns prefix sharing on when its estimated forward cost is at most this fraction of
# the plain layout's (measured: ≈ 8 % fewer token positions already gave ≈ 6 % on a tiny llama).
PREFIX_SHARING_MAX_COST = 0.95

SETTINGS = ("auto", "on", "off")

PACKING_SETTINGS = SETTINGS

_PENALTY_REASON = (
    "WDPO's penalty sums ||grad_z l_i||^2 over the chosen and the rejected row, "
    "each with its own copy of the prompt's embeddings; a shared prefix has one "
    "copy, whose gradient is the sum of the two, so the per-example penalty would "
    "change"
)


class ModelDims(NamedTuple):
    """What the cost model needs of a model: `body` parameters (the transformer blocks, without
    the embeddings and LM head), `hidden` width and `layers`."""

    body: int
    hidden: int
    layers: int


def model_dims(model: torch.nn.Module) -> ModelDims:
    """The `ModelDims` of a 🤗 causal LM (DDP/PEFT-wrapped or not)."""
    base = unwrap(model)
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 0
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0
    head = {
        id(p)
        for m in (base.get_input_embeddings(), base.get_output_embeddings())
        if m is not None
        for p in m.parameters()
    }
    body = sum(p.numel() for p in base.parameters() if id(p) not in head)
    return ModelDims(body, hidden, layers)


def pair_forward_flops(dims: ModelDims, prompt: int, chosen: int, rejected: int, shared: bool) -> float:
    """Estimated forward FLOPs of one pair (padding ignored; the LM head, equal in both
    layouts, left out).

    Linear layers cost 2·N per token (N = `dims.body`) over P+C+R tokens shared vs 2P+C+R
    plain; attention costs 4·h per (query, key) pair and layer over a dense (P+C+R)² shared vs
    (P+C)² + (P+R)² plain (masked pairs are computed too).
    """
    p, c, r = prompt, chosen, rejected
    attention = 4 * dims.hidden * dims.layers
    if shared:
        return 2 * dims.body * (p + c + r) + attention * (p + c + r) ** 2
    return 2 * dims.body * (2 * p + c + r) + attention * ((p + c) ** 2 + (p + r) ** 2)


def prefix_sharing_cost_ratio(model: torch.nn.Module, examples: Sequence) -> float:
    """Estimated forward FLOPs of the prefix-shared layout over the plain one, summed over
    `examples` (pairs with `prompt_ids`, `chosen_ids`, `rejected_ids`); 1.0 for none."""
    dims = model_dims(model)
    shared = plain = 0.0
    for e in examples:
        lengths = len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids)
        shared += pair_forward_flops(dims, *lengths, shared=True)
        plain += pair_forward_flops(dims, *lengths, shared=False)
    return shared / plain if plain else 1.0


def choose_prefix_sharing(
    setting: str, model: torch.nn.Module, data, penalized: bool, unpaired: bool, penalty_layout: str = "per_sequence"
) -> tuple[bool, str]:
    """(use prefix sharing?, why) for the setting auto/on/off.

    `data`: the training `PreferenceData` (its examples feed the cost model); `penalized`:
    WDPO's Wasserstein penalty is active; `unpaired`: the data has no pairs; `penalty_layout`:
    the penalty's layout (`per_sequence` needs the plain layout, `shared` the prefix-shared
    one, see dralign.train.penalty). ValueError, with what to do instead, when `on` (or the
    shared-prompt penalty) cannot be honoured exactly.
    """
    if setting not in SETTINGS:
        raise ValueError(f"prefix sharing must be one of {', '.join(SETTINGS)}, got {setting!r}")
    if penalized and penalty_layout == "shared" and not unpaired:
        unsupported = "--prefix-sharing off" if setting == "off" else prefix_sharing_support(model)
        if unsupported is not None:
            raise ValueError(
                f"--penalty-layout shared needs prefix sharing, but {unsupported}. "
                "Use --penalty-layout per_sequence, or --attn-implementation sdpa/eager"
            )
        return True, "the shared-prompt penalty (--penalty-layout shared)"
    if setting == "off":
        return False, "off"
    if unpaired:
        return False, "unpaired data has no chosen/rejected pair to share a prompt between"
    if penalized:
        if setting == "on":
            raise ValueError(
                f"--prefix-sharing on is refused for the Wasserstein penalty: "
                f"{_PENALTY_REASON}. Use --prefix-sharing auto or off"
            )
        return False, _PENALTY_REASON
    unsupported = prefix_sharing_support(model)
    if unsupported is not None:
        if setting == "on":
            raise ValueError(
                f"--prefix-sharing on: {unsupported}. Use --prefix-sharing off, or --attn-implementation sdpa/eager"
            )
        return False, unsupported
    if setting == "on":
        return True, "on"
    ratio = prefix_sharing_cost_ratio(model, data.examples)
    if ratio <= PREFIX_SHARING_MAX_COST:
        return True, f"auto: estimated forward cost {ratio:.2f}x the plain layout's"
    return False, f"auto: prompts too short to pay (estimated cost {ratio:.2f}x the plain layout's)"


def choose_packing(setting: str, prefix_sharing: bool) -> tuple[bool, str]:
    """(pack several prefix-shared pairs a row?, why) for the setting auto/on/off.

    Packing fills rows up to the longest pair of the batch (first-fit decreasing,
    `dralign.data.collate.pack_rows`): no row is longer than unpacked, so under the one cost
    model (`pair_forward_flops` with padding: 2·N per position, 4·h·layers per (query, key)
    pair of a row) the attention cost of a row never grows, and the linear cost drops by the
    padding removed — it never costs more, so `auto` packs whenever the layout is prefix-shared.
    """
    if setting not in PACKING_SETTINGS:
        raise ValueError(f"packing must be one of {', '.join(PACKING_SETTINGS)}, got {setting!r}")
    if setting == "off":
        return False, "off"
    if not prefix_sharing:
        if setting == "on":
            raise ValueError(
                "--packing on packs prefix-shared pairs, but prefix sharing is off "
                "for this run. Use --packing auto or off"
            )
        return False, "the layout is not prefix-shared"
    return True, "on" if setting == "on" else "auto: rows no longer than unpacked, less padding"
