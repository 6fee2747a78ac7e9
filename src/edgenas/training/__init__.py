"""Training: the shared loop (SGD, cosine schedule, BatchNorm recalibration), the loaders every run
uses, the proxy-training evaluator, and final training with its checkpoint."""

from edgenas.training.loop import (
    TrainConfig,
    TrainingDiverged,
    TrainStats,
    cosine_lr,
    evaluate,
    recalibrate_batchnorm,
    scheduled_lr,
    train,
)
from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator

__all__ = [
    "ProxyConfig",
    "ProxyTrainingEvaluator",
    "TrainConfig",
    "TrainStats",
    "TrainingDiverged",
    "cosine_lr",
    "evaluate",
    "recalibrate_batchnorm",
    "scheduled_lr",
    "train",
]
