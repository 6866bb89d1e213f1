"""The geometry of WDPO's penalty (see `dralign.train.penalty`): input embeddings, which pair
each position belongs to, per-pair squared norms, the layout checks, the finite difference's
step and the RNG replay of dropout masks."""

from __future__ import annotations

import math

import torch

from dralign.modeling.logps import pair_of_position, sequence_logps, shared_pair_logps, split_pairs


def input_embeddings(embed: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """z = embed(ids), requiring grad even when the embedding is frozen (LoRA)."""
    z = embed(ids)
    if not z.requires_grad:
        z = z.detach().requires_grad_(True)
    return z


def pair_index(batch: dict, shared_prompt: bool) -> torch.Tensor:
    """[rows, L] the pair of every position: rows i and B+i are pair i in the plain layout;
    a prefix-shared batch, packed or not, says it (`pair_of_position`)."""
    if shared_prompt:
        return pair_of_position(batch)
    ids = batch["input_ids"]
    n = ids.shape[0] // 2
    return (torch.arange(ids.shape[0], device=ids.device) % max(1, n))[:, None].expand_as(ids)


def pair_sq_norms(g: torch.Tensor, pairs: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """‖g_i‖² per pair [B]: summed over width and every position of pair i (chosen row i and
    rejected row B+i in the plain layout; its positions in a prefix-shared batch)."""
    per_position = g.pow(2).sum(-1)
    keep = pairs >= 0
    return per_position.new_zeros(n_pairs).index_add(0, pairs[keep], per_position[keep])


def check_layout(batch: dict, shared_prompt: bool) -> None:
    """The batch's layout must be the penalty's: plain for per_sequence, prefix-shared for shared."""
    if "segment_ids" in batch and not shared_prompt:
        raise ValueError(
            "penalized_backward got a prefix-shared batch for the per-sequence penalty: its "
            "||grad_z l_i||^2 counts the prompt's embeddings once in the chosen row and once in the "
            "rejected row, and a shared prefix has one copy of them, whose gradient is the sum of "
            "the two; collate with prefix sharing off, or use the shared-prompt penalty "
            "(--penalty-layout shared)"
        )
    if shared_prompt and "segment_ids" not in batch:
        raise ValueError("the shared-prompt penalty takes a prefix-shared batch (collate_shared_pairs)")


def n_pairs(batch: dict, shared_prompt: bool) -> int:
    rows = batch["input_ids"].shape[0]
    if shared_prompt:
        return int(pair_of_position(batch).max()) + 1
    if rows % 2:
        raise ValueError(f"a paired batch has an even number of rows; got {rows}")
    return rows // 2


def policy_logps(model, batch: dict, z: torch.Tensor | None, ln: bool, shared_prompt: bool):
    """(chosen [B], rejected [B]) policy values at input embeddings z, in the objective's units."""
    if shared_prompt:
        return shared_pair_logps(model, batch, inputs_embeds=z).reduce(ln)
    seq = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], inputs_embeds=z)
    return split_pairs(seq).reduce(ln)


def default_step(z: torch.Tensor) -> float:
    """√(machine epsilon) of the lowest precision the forward runs in (at most 1e-2), float32 at
    best: models
    run norms in float32 even in a float64 model (llama's RMSNorm), so float64 gains nothing."""
    dtype = z.dtype if torch.finfo(z.dtype).eps > torch.finfo(torch.float32).eps else torch.float32
    device_type = z.device.type
    if torch.is_autocast_enabled(device_type):
        ac = torch.get_autocast_dtype(device_type)
        if torch.finfo(ac).eps > torch.finfo(dtype).eps:
            dtype = ac
    # capped at 1e-2: in bfloat16 √eps = 0.088 is truncation-dominated (measured best ≈ 1e-2)
    return min(math.sqrt(torch.finfo(dtype).eps), 1e-2)


class RNGState:
    """CPU and (model-device) CUDA RNG states, to replay dropout masks."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None

    def restore(self):
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)
