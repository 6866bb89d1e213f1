"""The data as `dralign train` reads it, through one adapter (`read_data`), and the tokenizer
that counts its tokens."""

from __future__ import annotations

import dataclasses

from ..errors import BadOptionError
from .config import DiagnoseConfig

NO_CUT = 10**9  # byte-count mode: a max_length nothing reaches, so nothing is cut or dropped


def read_data(cfg: DiagnoseConfig, tokenizer, *, max_length: int | None = None, log=print, progress: bool = False):
    """(data, held-out data or None): the trainer's own loader (`dralign.train.inputs.load_data`)
    on a train config that carries diagnose's data options and --eval as its --eval-data, so
    validation, cuts, the bad-row report and the tokenised-data cache are the trainer's.

    The one place diagnose touches the loader: re-point it here when the loader moves.
    `max_length`: overrides --max-length (the byte-count mode passes `NO_CUT`)."""
    from ..train.config import (
        DataOptions,
        LoggingOptions,
        MethodOptions,
        ModelOptions,
        OptimOptions,
        TrainConfig,
    )
    from ..train.inputs import load_data

    data = DataOptions(**dataclasses.asdict(cfg.data), eval_data=cfg.diagnose.eval)
    if max_length is not None:
        data = dataclasses.replace(data, max_length=max_length, max_prompt_length=None)
    train_cfg = TrainConfig(
        model=ModelOptions(),
        data=data,
        method=MethodOptions(),
        optim=OptimOptions(seed=cfg.diagnose.seed),
        logging=LoggingOptions(),
    )
    return load_data(train_cfg, tokenizer, unpaired=False, log=log, cache_dir=cfg.diagnose.cache_dir, progress=progress)


def byte_tokenizer():
    """A tokenizer whose tokens are UTF-8 bytes (plus an eos and a pad token), built offline:
    the length unit when neither --model nor --tokenizer is given. Relative lengths (which
    response is longer) are meaningful in bytes; what `max_length` cuts is not."""
    from ..modeling.tiny import CHAT_TEMPLATE
    from .bytes import byte_tokenizer as build

    return build(CHAT_TEMPLATE)  # conversational rows render as with the tiny models


def choose_tokenizer(cfg: DiagnoseConfig):
    """(tokenizer, unit): --tokenizer, else --model's, in tokens; else `byte_tokenizer()` in bytes."""
    name = cfg.diagnose.tokenizer or cfg.diagnose.model
    if name is None:
        return byte_tokenizer(), "bytes"
    from ..modeling import load_tokenizer

    return load_tokenizer(name), "tokens"


def check(cfg: DiagnoseConfig) -> None:
    """Refuse what cannot be diagnosed before reading anything."""
    if not cfg.data.data:
        raise BadOptionError("pass --data FILE (the preference data to diagnose)")
    if cfg.data.format == "unpaired":
        raise BadOptionError("--format unpaired: diagnose reads preference pairs (prompt, chosen, rejected)")
