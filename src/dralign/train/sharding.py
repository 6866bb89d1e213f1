"""Sharded training with FSDP2 (`torch.distributed.fsdp.fully_shard`), our own path (`--sharding fsdp2`).

Accelerate 1.15 sets FSDP up only on accelerator devices (on CPU an FSDP config silently becomes
DDP), so dralign shards the model itself: after the reference log-probs are computed (they need
the full weights on every process) and before the optimizer is built, each decoder layer (the
classes the model names in `_no_split_modules`, as Accelerate's TRANSFORMER_BASED_WRAP does) and
then the root are wrapped with `fully_shard` over a 1-D device mesh of all processes, on the
accelerator's device type (cpu + gloo, cuda + nccl). The model is then *not* given to
Accelerate's `prepare` (no DDP wrapper); everything else of the recipe is unchanged: FSDP2
averages gradients over processes as DDP does, so the gradient strategies' scaling holds.

Checkpoints stay pickle-free and have the unsharded layout: the model's and the optimizer's full
state dicts are gathered to process 0 (a collective, moved to CPU) and written as safetensors
and JSON; on resume every process reads them and keeps its own shard. The final model is
gathered the same way and saved with `save_pretrained`.
"""

from __future__ import annotations

from typing import cast

import torch

from ..errors import BadOptionError


def check_sharding(accelerator, cfg, penalized: bool) -> bool:
    """Whether this run shards its model with FSDP2; refuses what cannot be combined with it
    (`penalized`: the objective carries WDPO's gradient penalty)."""
    if cfg.optim.sharding == "none":
        return False
    from accelerate.utils import DistributedType

    if penalized:  # z = embed(ids) runs outside the model's forward, where FSDP2 keeps the embedding sharded
        raise BadOptionError(
            "--sharding fsdp2 does not support WDPO's gradient penalty (it differentiates "
            "input embeddings computed outside the sharded forward): use DDP (accelerate "
            "launch --multi_gpu) or --rho 0"
        )

    kind = accelerator.distributed_type
    if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise BadOptionError(
            f"--sharding fsdp2 shards the model itself, but Accelerate already runs "
            f"{kind.value}: launch with torchrun or a plain multi-process config"
        )
    if cfg.optim.mixed_precision == "fp16":  # a GradScaler over sharded gradients is not wired here
        raise BadOptionError("--sharding fsdp2 does not support --mixed-precision fp16: use bf16")
    if accelerator.num_processes < 2:
        raise BadOptionError(
            "--sharding fsdp2 needs several processes: launch with "
            "`torchrun --nproc-per-node N -m dralign.cli train ...` (on CPU with "
            "ACCELERATE_USE_CPU=true); see docs/launch/fsdp2-multinode.sh"
        )
    return True


def layer_classes(model: torch.nn.Module) -> set[str]:
    """The class names of the model's repeated blocks (`_no_split_modules` of its pretrained
    parts, e.g. LlamaDecoderLayer, GPT2Block), each of which becomes one FSDP unit."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return names


def shard(model: torch.nn.Module, device: torch.device, log=print) -> torch.nn.Module:
    """Wrap each decoder layer, then the root, with `fully_shard` over all processes (in place;
    the same module is returned). Parameters become DTensors sharded along dim 0."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    classes = layer_classes(model)
    layers = [m for m in model.modules() if type(m).__name__ in classes]
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if not layers:  # still correct, but every forward gathers all the weights at once
        log("note: FSDP2 found no decoder layers (the model names no `_no_split_modules`): the whole model is one unit")
    log(f"FSDP2: {len(layers)} decoder layers and the root sharded over {mesh.size()} processes ({device.type})")
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_value(t):
    """A DTensor (e.g. the gradient norm of sharded parameters) as an ordinary tensor."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full weights on process 0, on CPU ({} elsewhere); a collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    # torch types the values as any state-dict value; a model's are tensors
    return cast(dict[str, torch.Tensor], get_model_state_dict(model, options=_options(cpu_offload=True)))


def load_model_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load full (unsharded) weights, e.g. a checkpoint's trainable ones, into the sharded
    model: each process keeps its shard; names the model lacks are refused."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    unknown = sorted(set(weights) - {n for n, _ in model.named_parameters()})
    if unknown:
        raise BadOptionError(f"the checkpoint holds parameters the model lacks: {', '.join(unknown[:5])}")
    set_model_state_dict(model, cast(dict, weights), options=_options(strict=False))  # stub: dict[str, ValueType]


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper holds the torch optimizer


def full_optimizer_state(model: torch.nn.Module, optimizer) -> dict:
    """The optimizer's full state on process 0, on CPU, keyed by parameter name; a collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, _inner(optimizer), options=_options(cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, optimizer, state: dict) -> None:
    """Load a full optimizer state (as `full_optimizer_state` wrote it); each process keeps its shard."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, _inner(optimizer), state, options=_options())
