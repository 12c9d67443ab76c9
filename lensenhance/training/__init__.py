"""Training: one loop for every model family, a task object per family.

`lensenhance.training.loop.train` owns checkpoints, EMA, DDP, exact resume and progress;
`SRTask` (super-resolution) and `DiffusionTask` (diffusion models) supply batches, loss
and validation; `lensenhance.training.regression` trains the small regressors and
classifiers. Entry point for several GPUs or machines::

    torchrun --nproc_per_node=2 -m lensenhance train sr ...
"""

from ..nn.weights import export_weights
from .checkpoints import latest_checkpoint
from .classifier import (
    classifier_features,
    classifier_logits,
    classifier_predict,
    classifier_truth,
    train_classifier,
)
from .data import ArrayPairSource, PairSource
from .diffusion import DiffusionTask, train_ddpm
from .loop import ExponentialMovingAverage, Task, train
from .regression import fit_network, predict_regressor, train_feature_network, train_regressor
from .sr import LOSS_TERMS, SRLoss, SRTask, ssim, train_sr, validation_psnr

__all__ = [
    "ArrayPairSource",
    "DiffusionTask",
    "classifier_features",
    "classifier_logits",
    "classifier_predict",
    "classifier_truth",
    "fit_network",
    "train_classifier",
    "train_ddpm",
    "ExponentialMovingAverage",
    "LOSS_TERMS",
    "PairSource",
    "SRLoss",
    "SRTask",
    "Task",
    "export_weights",
    "latest_checkpoint",
    "predict_regressor",
    "ssim",
    "train",
    "train_feature_network",
    "train_regressor",
    "train_sr",
    "validation_psnr",
]
