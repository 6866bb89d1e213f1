"""The training recipe on Accelerate: `train(config)`."""

from .config import TrainConfig

__all__ = ["Recipe", "TrainConfig", "TrainResult", "TrainingError", "train"]


def __getattr__(name: str):
    # the recipe (transformers, accelerate, peft) loads on first use: `dralign train --help`
    # needs only the config
    if name in ("Recipe", "TrainResult", "TrainingError", "train"):
        from . import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module 'dralign.train' has no attribute {name!r}")
