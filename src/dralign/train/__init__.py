"""The training loop on Accelerate: `train(config)`."""

from .config import TrainConfig
from .trainer import TrainingError, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "train"]
