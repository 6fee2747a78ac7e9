"""Training: the shared loop (SGD, cosine schedule) and the proxy-training evaluator."""

from edgenas.training.loop import (
    TrainConfig,
    TrainingDiverged,
    TrainStats,
    cosine_lr,
    evaluate,
    train,
)

__all__ = ["TrainConfig", "TrainStats", "TrainingDiverged", "cosine_lr", "evaluate", "train"]
