"""The training recipe on Accelerate: `train(config)`."""

from .config import TrainConfig
from .recipe import Recipe, TrainingError, TrainResult, train

__all__ = ["Recipe", "TrainConfig", "TrainResult", "TrainingError", "train"]
