"""Training: the shared loop (SGD, cosine schedule) and the proxy-training evaluator."""

from edgenas.training.loop import (
    TrainConfig,
    TrainingDiverged,
    TrainStats,
    cosine_lr,
    evaluate,
    train,
)
from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator, recalibrate_batchnorm

__all__ = [
    "ProxyConfig",
    "ProxyTrainingEvaluator",
    "TrainConfig",
    "TrainStats",
    "TrainingDiverged",
    "cosine_lr",
    "evaluate",
    "recalibrate_batchnorm",
    "train",
]
