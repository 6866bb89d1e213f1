"""Scoring held-out pairs for `dralign bench real`: log-probs of a model on every pair and the
implicit-reward accuracy. The length controls reported beside every accuracy are those of
`dralign eval` and the trainer (:mod:`dralign.lengths`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["base_folder", "pair_logps", "pair_correct"]


def base_folder(model: str, cache_dir: str | Path, log=print) -> str:
    """A safetensors folder of `model`: a `.gguf` file is dequantised once into
    ``cache_dir/<file stem>`` (float32) so that every run loads plain weights in a second and
    saves only its LoRA adapter; any other model name is returned as it is."""
    from dralign.modeling import is_gguf, load_model, load_tokenizer

    if not is_gguf(model):
        return model
    folder = Path(cache_dir) / Path(model).stem
    if (folder / "config.json").is_file():
        return str(folder)
    log(f"dequantising {model} once into {folder}")
    tmp = folder.with_name(folder.name + ".tmp")
    m = load_model(model, dtype="float32")
    m.save_pretrained(tmp, safe_serialization=True)
    load_tokenizer(model).save_pretrained(tmp)
    tmp.rename(folder)  # atomic: a half-written folder is never taken for a model
    return str(folder)


def pair_logps(
    model, data, batch_size: int = 16, device=None, prefix_sharing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Summed completion log-probs (chosen, rejected), float64 [n], of every pair of `data`
    (a :class:`dralign.data.PreferenceData`), no gradient, in eval mode, the batches sent to
    `device` (default the model's). `prefix_sharing`: each pair one row [prompt | chosen |
    rejected] (the prompt computed once: the same values up to float rounding, cheaper with
    long prompts) instead of the plain layout."""
    from dralign.data import collate_shared_pairs
    from dralign.modeling import model_logps, score_rows

    def batch_of(idx: list[int]) -> dict:
        return (
            collate_shared_pairs([data.examples[i] for i in idx], data.pad_token_id)
            if prefix_sharing
            else data.collate(idx)
        )

    def score(batch: dict) -> dict:
        out = model_logps(model, batch)
        return {"chosen": out.chosen_sum.double(), "rejected": out.rejected_sum.double()}

    device = device if device is not None else next(model.parameters()).device
    scored = score_rows(len(data), batch_of, score, batch_size=batch_size, model=model, device=device)
    return scored["chosen"].numpy(), scored["rejected"].numpy()


def pair_correct(policy: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per pair 1 if the implicit reward prefers the chosen response, ½ on a tie, else 0:
    u⁺ − u⁻ with u = log π − log π_ref (β > 0 does not change the sign)."""
    margin = (policy[0] - reference[0]) - (policy[1] - reference[1])
    return (margin > 0) + 0.5 * (margin == 0)
