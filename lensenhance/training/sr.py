"""The super-resolution task: aligned (LR, HR) patches, an L1/MSE/SSIM/feature loss, PSNR.

`train_sr` trains any SR network of `lensenhance.nn` on pairs drawn from a
`~lensenhance.training.data.PairSource` through the one loop of `lensenhance.training.loop`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int
from ..nn.sr import build_sr_model
from ..nn.weights import read_weights_metadata
from .data import ArrayPairSource, PairSource, as_image_stack
from .initial import init_record, initial_network, weights_file
from .loop import train

__all__ = ["LOSS_TERMS", "SRLoss", "SRTask", "ssim", "train_sr", "validation_psnr"]

#: Terms of the training loss, in the order they are reported.
LOSS_TERMS = ("l1", "mse", "ssim", "feature")

# Validation pairs drawn from a PairSource use a stream apart from every (rank, step).
_VALIDATION_STREAM = 2**32 - 1
_VALIDATION_SAMPLES = 64


def _as_pair_source(data, *, patch_size, scale) -> PairSource:
    """Turn ``data`` (a PairSource or an ``(lr, hr)`` pair of arrays) into a PairSource."""
    if hasattr(data, "sample"):
        source_scale = getattr(data, "scale", scale)
        if source_scale != scale:
            raise ValueError(f"the data source {data!r} has scale {source_scale}, "
                             f"the model has scale {scale}")
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return ArrayPairSource(data[0], data[1], patch_size=patch_size, scale=scale)
    raise TypeError("data must be a PairSource (with a sample(batch_size, rng) method) or an "
                    f"(lr, hr) pair of arrays, got {type(data).__name__}")


def _check_pair(lr, hr, scale: int, origin) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a batch ``(lr, hr)`` from ``origin`` and return float32 tensors."""
    lr = torch.as_tensor(np.asarray(lr, dtype=np.float32))
    hr = torch.as_tensor(np.asarray(hr, dtype=np.float32))
    if lr.ndim == 3:
        lr, hr = lr[:, None], hr[:, None]
    if lr.ndim != 4 or lr.shape[1] != 1 or hr.ndim != 4 or hr.shape[1] != 1:
        raise ValueError(f"{origin!r} gave pairs of shapes {tuple(lr.shape)} and "
                         f"{tuple(hr.shape)}; expected (B, 1, h, w) and (B, 1, sh, sw)")
    expected = (lr.shape[0], 1, lr.shape[2] * scale, lr.shape[3] * scale)
    if tuple(hr.shape) != expected:
        raise ValueError(f"{origin!r} gave hr of shape {tuple(hr.shape)}, expected {expected} "
                         f"for scale {scale}")
    return lr, hr


def _validation_set(val_data, *, scale: int, seed: int):
    """Fixed validation tensors from ``(lr, hr)`` arrays or from a PairSource."""
    if val_data is None:
        return None
    if hasattr(val_data, "sample"):
        rng = np.random.default_rng([seed, _VALIDATION_STREAM])
        return _check_pair(*val_data.sample(_VALIDATION_SAMPLES, rng), scale, val_data)
    if isinstance(val_data, (tuple, list)) and len(val_data) == 2:
        lr = as_image_stack(val_data[0], "val_data lr")
        hr = as_image_stack(val_data[1], "val_data hr")
        if len(lr) != len(hr):
            raise ValueError(f"val_data lr and hr hold {len(lr)} and {len(hr)} images")
        return _check_pair(lr, hr, scale, "val_data")
    raise TypeError("val_data must be an (lr, hr) pair of arrays or a PairSource, got "
                    f"{type(val_data).__name__}")


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(pred: torch.Tensor, target: torch.Tensor, *, data_range=None,
         window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Differentiable SSIM with a Gaussian window, one value per image.

    The same definition as ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: local
    statistics in an 11x11 Gaussian window, averaged over the positions where the
    window fits. A training loss; evaluation metrics use skimage.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, H, W)`` images.
    data_range : float, torch.Tensor or None, optional
        Dynamic range for the stabilising constants; None uses each target
        image's ``max - min``.
    window_size : int, optional
        Side of the Gaussian window (shrunk to fit small images).
    sigma : float, optional
        Standard deviation of the window, in pixels.

    Returns
    -------
    torch.Tensor
        ``(B,)`` mean SSIM of each image.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if data_range is None:
        data_range = (target.amax(dim=(1, 2, 3)) - target.amin(dim=(1, 2, 3))).detach()
        data_range = data_range.clamp_min(torch.finfo(target.dtype).eps)
    data_range = torch.as_tensor(data_range, dtype=pred.dtype, device=pred.device)
    data_range = data_range.reshape(-1, 1, 1, 1) if data_range.ndim else data_range
    size = min(window_size, pred.shape[-2], pred.shape[-1])
    size -= 1 - size % 2  # odd
    channels = pred.shape[1]
    window = _gaussian_window(size, sigma, pred).expand(channels, 1, size, size)

    def local_mean(image):
        return F.conv2d(image, window, groups=channels)

    mu_x, mu_y = local_mean(pred), local_mean(target)
    var_x = local_mean(pred * pred) - mu_x**2
    var_y = local_mean(target * target) - mu_y**2
    cov = local_mean(pred * target) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3))


def _loss_weights(loss_weights, feature_net) -> dict[str, float]:
    if loss_weights is None:
        loss_weights = {"l1": 1.0}
    if not isinstance(loss_weights, dict):
        raise TypeError(f"loss_weights must be a dict, got {type(loss_weights).__name__}")
    unknown = set(loss_weights) - set(LOSS_TERMS)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; use {', '.join(LOSS_TERMS)}")
    weights = {term: float(loss_weights.get(term, 0.0)) for term in LOSS_TERMS}
    if any(w < 0 or not math.isfinite(w) for w in weights.values()):
        raise ValueError(f"loss weights must be finite and >= 0, got {weights}")
    if sum(weights.values()) == 0:
        raise ValueError("at least one loss weight must be positive")
    if weights["feature"] > 0 and feature_net is None:
        raise ValueError("a feature loss weight needs a feature_net")
    return weights


class SRLoss(nn.Module):
    """Weighted sum of L1, MSE, (1 - SSIM) and a feature (content) loss.

    Parameters
    ----------
    weights : dict
        Weight of each term in `LOSS_TERMS`; terms with weight 0 are not computed.
    feature_net : torch.nn.Module or None, optional
        Frozen network mapping ``(B, 1, H, W)`` images to features; the feature loss
        is the MSE between the features of the prediction and of the target.
    """

    def __init__(self, weights: dict, *, feature_net: nn.Module | None = None):
        super().__init__()
        self.weights = _loss_weights(weights, feature_net)
        self.feature_net = feature_net
        if feature_net is not None:
            feature_net.eval().requires_grad_(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        """Return the total loss and a dict of the (unweighted) terms as floats."""
        terms = {}
        if self.weights["l1"]:
            terms["l1"] = F.l1_loss(pred, target)
        if self.weights["mse"]:
            terms["mse"] = F.mse_loss(pred, target)
        if self.weights["ssim"]:
            terms["ssim"] = 1 - ssim(pred, target).mean()
        if self.weights["feature"]:
            with torch.no_grad():
                target_features = self.feature_net(target)
            terms["feature"] = F.mse_loss(self.feature_net(pred), target_features)
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def __repr__(self) -> str:
        active = {k: v for k, v in self.weights.items() if v}
        return f"SRLoss({active})"


@torch.no_grad()
def validation_psnr(model: nn.Module, lr: torch.Tensor, hr: torch.Tensor, *,
                    batch_size: int = 16, device=None) -> float:
    """Mean PSNR of ``model(lr)`` against ``hr``, each image with its own data range.

    The data range of an image is ``hr.max() - hr.min()`` (1 for a constant image).
    The model runs in eval mode and gets its previous mode back afterwards.
    """
    device = torch.device(device) if device is not None else lr.device
    was_training = model.training
    model.eval()
    values = []
    try:
        for start in range(0, len(lr), batch_size):
            x = lr[start:start + batch_size].to(device)
            y = hr[start:start + batch_size].to(device)
            mse = ((model(x) - y) ** 2).mean(dim=(1, 2, 3)).double()
            data_range = (y.amax(dim=(1, 2, 3)) - y.amin(dim=(1, 2, 3))).double()
            data_range = torch.where(data_range > 0, data_range, torch.ones_like(data_range))
            values.append(10 * torch.log10(data_range**2 / mse.clamp_min(1e-30)))
    finally:
        model.train(was_training)
    return float(torch.cat(values).mean())




def train_sr(*, model="rcan", scale: int = 2, preset: str = "small", data, steps: int,
             out_dir, batch_size: int = 16, patch_size: int = 48, lr: float = 2e-4,
             weight_decay: float = 1e-4, loss_weights: dict | None = None,
             ema_decay: float = 0.999, grad_clip: float | None = 1.0, val_every: int = 500,
             val_data=None, checkpoint_every: int = 1000, resume: bool = False,
             overwrite: bool = False, seed: int = 0, progress: bool = True, device=None,
             feature_net: nn.Module | None = None, model_overrides: dict | None = None,
             log_every: int = 10, metadata: dict | None = None,
             max_steps: int | None = None, init=None) -> dict:
    """Train a super-resolution network and export its EMA weights.

    Parameters
    ----------
    model : str or torch.nn.Module, optional
        Architecture name for `lensenhance.nn.build_sr_model`, or a built network
        with a ``config`` dict.
    scale : int, optional
        Upsampling factor.
    preset : {'small', 'paper'}, optional
        Size preset of a named architecture.
    data : PairSource or (lr, hr) arrays
        Training pairs; arrays ``(n, h, w)`` / ``(n, scale*h, scale*w)`` are cut into
        random aligned patches with D4 augmentation (`ArrayPairSource`).
    steps : int
        Total number of optimisation steps (also the length of the cosine schedule).
    out_dir : str or path-like
        Folder for checkpoints, ``weights.safetensors`` and ``history.json``.
    batch_size : int, optional
        Pairs per step (per rank under torchrun).
    patch_size : int, optional
        HR patch side for array data (ignored for a PairSource).
    lr, weight_decay : float, optional
        AdamW learning rate (decayed by a cosine to 1 % of it) and weight decay.
    loss_weights : dict, optional
        Weights of ``'l1'``, ``'mse'``, ``'ssim'`` and ``'feature'`` (missing terms
        weigh 0); default ``{'l1': 1}``.
    ema_decay : float, optional
        Decay of the exponential moving average of the weights (see
        `ExponentialMovingAverage`); the EMA weights are validated and exported.
    grad_clip : float or None, optional
        Maximum gradient norm (None or 0: no clipping).
    val_every : int, optional
        Validate every this many steps (and at the end) when ``val_data`` is given.
    val_data : (lr, hr) arrays or PairSource, optional
        Validation images (whole images; a PairSource gives a fixed set of 64 pairs).
    checkpoint_every : int, optional
        Write a checkpoint every this many steps (and at the end).
    resume : bool, optional
        Continue from the latest checkpoint in ``out_dir`` (to the same state as an
        uninterrupted run); start afresh if there is none.
    overwrite : bool, optional
        Start afresh even if ``out_dir`` holds checkpoints (they are deleted).
    seed : int, optional
        Seeds the initial weights and, with rank and step, every batch.
    progress : bool, optional
        Show a tqdm progress bar (rank 0 only).
    device : str or torch.device, optional
        Default: CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU.
    feature_net : torch.nn.Module, optional
        Frozen network for the feature loss (moved to ``device``, set to eval).
    model_overrides : dict, optional
        Constructor arguments replacing the preset's.
    log_every : int, optional
        Record the mean training loss every this many steps.
    metadata : dict, optional
        Extra metadata for the exported weights (e.g. the training command).
    max_steps : int, optional
        Stop (checkpointed) after this step; resume later to finish the schedule.
    init : str or path-like, optional
        Start from these weights (a shipped model's name or a weights file): fine-tuning,
        e.g. on your own survey pairs. ``model``, ``preset`` and ``model_overrides`` are
        then not used; the weights' scale must be ``scale``.

    Returns
    -------
    dict
        The history: ``train`` (step, loss terms, learning rate), ``val`` (step, PSNR),
        ``wall_time_s``, ``step``, ``world_size``, ``config`` and the paths of
        ``weights`` and ``checkpoint``.
    """
    # The loop checks these too; checking first keeps a bad call from building anything.
    for value, name in ((steps, "steps"), (batch_size, "batch_size"), (val_every, "val_every"),
                        (checkpoint_every, "checkpoint_every"), (log_every, "log_every")):
        check_int(value, name)
    seed = check_int(seed, "seed", 0)
    if init is not None:
        task = read_weights_metadata(weights_file(init)).get("task")
        if task != "sr":
            raise ValueError(f"{init}: the weights of a {task!r} model, not of a "
                             "super-resolution network")
        net = initial_network(init)
    elif isinstance(model, str):
        net = None
    elif isinstance(model, nn.Module) and isinstance(getattr(model, "config", None), dict):
        net = model
    else:
        raise TypeError("model must be an architecture name or a lensenhance.nn network "
                        f"with a config dict, got {type(model).__name__}")
    source = _as_pair_source(data, patch_size=patch_size, scale=scale)
    validation = _validation_set(val_data, scale=scale, seed=seed)
    weights = _loss_weights(loss_weights, feature_net)
    torch.manual_seed(seed)
    if net is None:
        net = build_sr_model(model, scale=scale, preset=preset, **(model_overrides or {}))
    if getattr(net, "scale", scale) != scale:
        raise ValueError(f"the model has scale {net.scale}, train_sr was given {scale}")
    task = SRTask(source, validation=validation, loss_weights=weights,
                  feature_net=feature_net, patch_size=patch_size)
    return train(net, task, steps=steps, out_dir=out_dir, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, ema_decay=ema_decay, grad_clip=grad_clip,
                 val_every=val_every, checkpoint_every=checkpoint_every,
                 log_every=log_every, resume=resume, overwrite=overwrite, seed=seed,
                 progress=progress, device=device, metadata=metadata, max_steps=max_steps,
                 extra_config={"model": net.config["architecture"], "preset": preset,
                               "model_overrides": model_overrides or {},
                               "init": init_record(init)})


class SRTask:
    """Super-resolution as a task of the training loop.

    Parameters
    ----------
    source : PairSource
        Training pairs.
    validation : tuple of torch.Tensor or None
        Whole validation images ``(lr, hr)``.
    loss_weights : dict
        Weights of `LOSS_TERMS`.
    feature_net : torch.nn.Module, optional
        Frozen network of the feature loss.
    patch_size : int, optional
        Recorded in the run configuration.
    """

    name = "sr"

    def __init__(self, source, *, validation=None, loss_weights=None, feature_net=None,
                 patch_size=None):
        self.source = source
        self.scale = source.scale
        self.validation = validation
        self.loss_fn = SRLoss(loss_weights or {"l1": 1.0}, feature_net=feature_net)
        self.patch_size = patch_size
        self._device = None

    def __repr__(self) -> str:
        return f"SRTask({self.source!r}, loss={self.loss_fn!r})"

    def config(self) -> dict:
        return {"scale": self.scale, "patch_size": self.patch_size,
                "loss_weights": self.loss_fn.weights, "source": repr(self.source)}

    def batch(self, batch_size, rng):
        return _check_pair(*self.source.sample(batch_size, rng), self.scale, self.source)

    def loss(self, net, batch):
        lr_batch, hr_batch = batch
        if self.loss_fn.feature_net is not None and self._device != hr_batch.device:
            self.loss_fn.feature_net.to(hr_batch.device)
            self._device = hr_batch.device
        return self.loss_fn(net(lr_batch), hr_batch)

    def validate(self, net, device, batch_size):
        if self.validation is None:
            return None
        lr_val, hr_val = self.validation
        return {"psnr": validation_psnr(net, lr_val, hr_val, batch_size=batch_size,
                                        device=device)}

    def weights_metadata(self) -> dict:
        return {"task": "sr", "scale": self.scale}
