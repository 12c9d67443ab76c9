"""Training loop for the residual super-resolution networks (pure torch + numpy).

`train_sr` trains any network of `lensenhance.nn.sr` on aligned (LR, HR) pairs drawn
from a `PairSource` (in-memory arrays: `ArrayPairSource`; the simulator provides
another). Loss: a weighted mix of L1, MSE, SSIM and an optional feature (content)
loss; AdamW with a cosine schedule, EMA weights, gradient clipping, validation PSNR
of the EMA model, and checkpoints that resume to the exact same state.

Files (no pickle anywhere): checkpoints are ``checkpoint-<step>.safetensors`` (model,
EMA and optimizer tensors) with a ``checkpoint-<step>.json`` sidecar (config, step,
optimizer/scheduler scalars, RNG state, history); the final EMA weights are
``weights.safetensors`` with the model config in its metadata (`export_weights`,
`load_sr_weights`).

Reproducibility: at every step the batch is drawn with a fresh numpy Generator seeded
by ``(seed, rank, step)``, so a resumed run sees exactly the batches of an
uninterrupted one and DistributedDataParallel ranks see different batches.

Several GPUs or machines: launch the same call under ``torchrun``
(``WORLD_SIZE > 1``); each rank trains on its own batches of ``batch_size`` (global
batch ``batch_size * world_size``), gradients are averaged by DDP, and only rank 0
validates and writes files. Entry point::

    torchrun --nproc_per_node=2 -m lensenhance.training --data pairs.npz --out run/
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from ._atomic import atomic_write_bytes
from .nn.sr import build_sr_model
from .nn.weights import (
    export_weights,
    load_sr_weights,
    portable_state_dict,
    read_weights_metadata,
)

__all__ = [
    "PairSource",
    "ArrayPairSource",
    "ExponentialMovingAverage",
    "SRLoss",
    "ssim",
    "validation_psnr",
    "train_sr",
    "latest_checkpoint",
    "export_weights",
    "load_sr_weights",
    "read_weights_metadata",
    "LOSS_TERMS",
    "train_regressor",
    "predict_regressor",
    "train_feature_network",
]

#: Terms of the training loss, in the order they are reported.
LOSS_TERMS = ("l1", "mse", "ssim", "feature")

CHECKPOINT_FORMAT = "lensenhance-sr-checkpoint"
WEIGHTS_FILE = "weights.safetensors"
HISTORY_FILE = "history.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)\.json$")
# Validation pairs drawn from a PairSource use a stream apart from every (rank, step).
_VALIDATION_STREAM = 2**32 - 1
_VALIDATION_SAMPLES = 64


# --------------------------------------------------------------------------- data


@runtime_checkable
class PairSource(Protocol):
    """Protocol of the training-pair sources accepted by `train_sr`.

    A pair source has an integer attribute ``scale`` and a method
    ``sample(batch_size, rng) -> (lr, hr)`` returning two float32 numpy arrays,
    ``lr`` of shape ``(batch_size, 1, h, w)`` and ``hr`` of shape
    ``(batch_size, 1, scale*h, scale*w)``, aligned pixel for pixel and already
    normalised as the network sees them. Every random number must come from
    ``rng`` (a `numpy.random.Generator`): the training loop passes a generator
    seeded by ``(seed, rank, step)``, which is what makes runs reproducible,
    resumable to the same state, and different across distributed ranks.
    """

    scale: int

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return ``batch_size`` aligned ``(lr, hr)`` pairs drawn with ``rng``."""
        ...


def _as_image_stack(array, name: str) -> np.ndarray:
    """Return ``array`` as a finite float32 ``(N, y, x)`` stack (accepts (N, 1, y, x))."""
    stack = np.asarray(array, dtype=np.float32)
    if stack.ndim == 4 and stack.shape[1] == 1:
        stack = stack[:, 0]
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    if stack.ndim != 3:
        raise ValueError(f"{name} must be an image stack (n, y, x), got shape {stack.shape}")
    if not np.all(np.isfinite(stack)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return stack


def _d4_numpy(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """The D4 element ``(k, flip)`` of `lensenhance.nn.ensemble`, on a 2-D array."""
    if flip:
        image = image[:, ::-1]
    return np.rot90(image, k)


class ArrayPairSource:
    """Random aligned patches of in-memory (LR, HR) image pairs, with D4 augmentation.

    Parameters
    ----------
    lr, hr : array-like
        Image stacks ``(n, h, w)`` and ``(n, scale*h, scale*w)`` (a channel axis of
        length 1 is accepted), already normalised.
    patch_size : int or None, optional
        Side of the HR patches (a multiple of ``scale``); None uses whole images
        (which must then be square when ``augment`` is on).
    scale : int, optional
        Upsampling factor relating the two grids.
    augment : bool, optional
        Apply a random rotation by a multiple of 90 degrees and a random flip to each
        pair (the same to LR and HR).
    """

    def __init__(self, lr, hr, *, patch_size: int | None = 48, scale: int = 2,
                 augment: bool = True):
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.lr = _as_image_stack(lr, "lr")
        self.hr = _as_image_stack(hr, "hr")
        n, h, w = self.lr.shape
        if len(self.hr) != n:
            raise ValueError(f"lr and hr hold different numbers of images: {n} and {len(self.hr)}")
        if self.hr.shape[1:] != (h * scale, w * scale):
            raise ValueError(f"hr images {self.hr.shape[1:]} are not {scale} x the lr images "
                             f"{(h, w)}")
        if patch_size is None:
            if augment and h != w:
                raise ValueError("whole-image pairs must be square for rotation augmentation; "
                                 "give a patch_size")
            self._lr_patch = None
        else:
            if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
                raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
            if patch_size % scale:
                raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}")
            if patch_size > min(h, w) * scale:
                raise ValueError(f"patch_size {patch_size} exceeds the HR images "
                                 f"{self.hr.shape[1:]}")
            self._lr_patch = patch_size // scale
        self.patch_size = patch_size
        self.scale = scale
        self.augment = bool(augment)

    def __len__(self) -> int:
        return len(self.lr)

    def __repr__(self) -> str:
        return (f"ArrayPairSource(n={len(self)}, lr={self.lr.shape[1:]}, hr={self.hr.shape[1:]}, "
                f"patch_size={self.patch_size}, scale={self.scale}, augment={self.augment})")

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``batch_size`` aligned patches ``(B, 1, p/s, p/s)``, ``(B, 1, p, p)``."""
        n, h, w = self.lr.shape
        s = self.scale
        ph, pw = (h, w) if self._lr_patch is None else (self._lr_patch, self._lr_patch)
        index = rng.integers(0, n, size=batch_size)
        ys = rng.integers(0, h - ph + 1, size=batch_size)
        xs = rng.integers(0, w - pw + 1, size=batch_size)
        ks = rng.integers(0, 4, size=batch_size) if self.augment else np.zeros(batch_size, int)
        flips = rng.integers(0, 2, size=batch_size) if self.augment else ks
        lr_out, hr_out = [], []
        for i, y, x, k, flip in zip(index, ys, xs, ks, flips):
            lr_patch = self.lr[i, y:y + ph, x:x + pw]
            hr_patch = self.hr[i, y * s:(y + ph) * s, x * s:(x + pw) * s]
            lr_out.append(_d4_numpy(lr_patch, int(k), bool(flip)))
            hr_out.append(_d4_numpy(hr_patch, int(k), bool(flip)))
        return (np.ascontiguousarray(np.stack(lr_out)[:, np.newaxis]),
                np.ascontiguousarray(np.stack(hr_out)[:, np.newaxis]))


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
        lr = _as_image_stack(val_data[0], "val_data lr")
        hr = _as_image_stack(val_data[1], "val_data hr")
        if len(lr) != len(hr):
            raise ValueError(f"val_data lr and hr hold {len(lr)} and {len(hr)} images")
        return _check_pair(lr, hr, scale, "val_data")
    raise TypeError("val_data must be an (lr, hr) pair of arrays or a PairSource, got "
                    f"{type(val_data).__name__}")


# --------------------------------------------------------------------------- loss


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


# --------------------------------------------------------------------------- EMA, metric


class ExponentialMovingAverage:
    """Exponential moving average of a network's weights (a frozen copy).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
    that short runs are not dominated by the random initial weights. Buffers (batch
    norm statistics) are copied, not averaged.

    Parameters
    ----------
    model : torch.nn.Module
        The network being trained.
    decay : float, optional
        Asymptotic decay per update (0 follows the model exactly).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = float(decay)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights of ``model``."""
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for average, param in zip(self.module.parameters(), model.parameters()):
            average.lerp_(param.detach(), 1 - decay)
        for average, buffer in zip(self.module.buffers(), model.buffers()):
            average.copy_(buffer)

    def __repr__(self) -> str:
        return (f"ExponentialMovingAverage({type(self.module).__name__}, decay={self.decay}, "
                f"updates={self.num_updates})")


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


# --------------------------------------------------------------------------- files


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode()


def _split_tensors(obj, prefix: str, tensors: dict):
    """Move the tensors of a nested state into ``tensors``; return a JSON-ready tree.

    Tensors become ``{"__tensor__": key}``; dicts with non-string keys (an optimizer's
    parameter indices) become ``{"__items__": [[key, value], ...]}``.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _split_tensors(v, f"{prefix}.{k}", tensors)]
                              for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _join_tensors(obj, tensors: dict):
    """Inverse of `_split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: _join_tensors(v, tensors) for k, v in obj["__items__"]}
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def _prefixed(state: dict, prefix: str) -> dict:
    return {f"{prefix}.{k}": v.detach().to("cpu", copy=True).contiguous()
            for k, v in state.items()}


def _unprefixed(tensors: dict, prefix: str) -> dict:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _checkpoint_files(out_dir: Path, step: int) -> tuple[Path, Path]:
    stem = f"checkpoint-{step:08d}"
    return out_dir / f"{stem}.safetensors", out_dir / f"{stem}.json"


def _all_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    if not out_dir.is_dir():
        return []
    found = []
    for path in out_dir.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.with_suffix(".safetensors").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir) -> Path | None:
    """Return the JSON sidecar of the latest complete checkpoint in ``out_dir``, or None."""
    found = _all_checkpoints(Path(out_dir))
    return found[-1][1] if found else None


def _read_checkpoint(json_path: Path) -> tuple[dict, dict]:
    """Read a checkpoint sidecar and its tensors, checking that the two belong together."""
    meta = json.loads(Path(json_path).read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{json_path} is not a lensenhance SR checkpoint")
    tensor_path = Path(json_path).with_suffix(".safetensors")
    data = tensor_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise OSError(f"{tensor_path} does not match the checksum in {json_path.name}")
    return meta, safetensors_load(data)


# --------------------------------------------------------------------------- distributed


class _Distributed:
    """Process-group bookkeeping: a no-op unless launched with ``WORLD_SIZE > 1``."""

    def __init__(self, device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        self.created = False
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank if self.world_size > 1 else 0)
        self.device = device
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
            if device.type == "cuda":
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
                self.created = True
            self.rank = dist.get_rank()
            self.world_size = dist.get_world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


# --------------------------------------------------------------------------- training


def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _cosine_factor(steps: int, floor: float = 0.01):
    """Closed-form cosine decay from 1 to ``floor`` over ``steps`` (a LambdaLR factor)."""

    def factor(step: int) -> float:
        progress = min(step, steps) / steps
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_sr(*, model="rcan", scale: int = 2, preset: str = "small", data, steps: int,
             out_dir, batch_size: int = 16, patch_size: int = 48, lr: float = 2e-4,
             weight_decay: float = 1e-4, loss_weights: dict | None = None,
             ema_decay: float = 0.999, grad_clip: float | None = 1.0, val_every: int = 500,
             val_data=None, checkpoint_every: int = 1000, resume: bool = False,
             overwrite: bool = False, seed: int = 0, progress: bool = True, device=None,
             feature_net: nn.Module | None = None, model_overrides: dict | None = None,
             log_every: int = 10, metadata: dict | None = None) -> dict:
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

    Returns
    -------
    dict
        The history: ``train`` (step, loss terms, learning rate), ``val`` (step, PSNR),
        ``wall_time_s``, ``step``, ``world_size``, ``config`` and the paths of
        ``weights`` and ``checkpoint``.
    """
    steps = _check_int(steps, "steps")
    batch_size = _check_int(batch_size, "batch_size")
    val_every = _check_int(val_every, "val_every")
    checkpoint_every = _check_int(checkpoint_every, "checkpoint_every")
    log_every = _check_int(log_every, "log_every")
    seed = _check_int(seed, "seed", 0)
    weights = _loss_weights(loss_weights, feature_net)
    if isinstance(model, str):
        net = None
    elif isinstance(model, nn.Module) and isinstance(getattr(model, "config", None), dict):
        net = model
    else:
        raise TypeError("model must be an architecture name or a lensenhance.nn network "
                        f"with a config dict, got {type(model).__name__}")
    source = _as_pair_source(data, patch_size=patch_size, scale=scale)
    validation = _validation_set(val_data, scale=scale, seed=seed)
    out_dir = Path(out_dir)

    ctx = _Distributed(device)
    try:
        existing = latest_checkpoint(out_dir)
        if existing is not None and not resume and not overwrite:
            raise FileExistsError(f"{out_dir} already holds a checkpoint ({existing.name}); "
                                  "pass resume=True to continue or overwrite=True to restart")
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            if existing is not None and not resume:
                for _, old in _all_checkpoints(out_dir):
                    old.with_suffix(".safetensors").unlink()
                    old.unlink()
        ctx.barrier()

        torch.manual_seed(seed)
        if net is None:
            net = build_sr_model(model, scale=scale, preset=preset, **(model_overrides or {}))
        if getattr(net, "scale", scale) != scale:
            raise ValueError(f"the model has scale {net.scale}, train_sr was given {scale}")
        trainer = _Trainer(
            net, source=source, validation=validation, steps=steps, out_dir=out_dir,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, weights=weights,
            ema_decay=ema_decay, grad_clip=grad_clip, seed=seed, ctx=ctx,
            feature_net=feature_net,
            args={"model": net.config["architecture"], "scale": scale, "preset": preset,
                  "model_overrides": model_overrides or {}, "steps": steps,
                  "batch_size": batch_size, "patch_size": patch_size, "lr": lr,
                  "weight_decay": weight_decay, "loss_weights": weights,
                  "ema_decay": ema_decay, "grad_clip": grad_clip, "seed": seed,
                  "world_size": ctx.world_size, "source": repr(source)},
        )
        if resume and latest_checkpoint(out_dir) is not None:
            trainer.restore(latest_checkpoint(out_dir))
        return trainer.run(val_every=val_every, checkpoint_every=checkpoint_every,
                           log_every=log_every, progress=progress, metadata=metadata)
    finally:
        ctx.close()


class _Trainer:
    """State and steps of one `train_sr` run (see there)."""

    def __init__(self, net, *, source, validation, steps, out_dir, batch_size, lr,
                 weight_decay, weights, ema_decay, grad_clip, seed, ctx, feature_net, args):
        self.ctx = ctx
        self.device = ctx.device
        self.raw = net.to(self.device).train()
        self.net = ctx.wrap(self.raw)
        self.ema = ExponentialMovingAverage(self.raw, ema_decay)
        if feature_net is not None:
            feature_net = feature_net.to(self.device)
        self.loss = SRLoss(weights, feature_net=feature_net)
        self.optimizer = torch.optim.AdamW(self.raw.parameters(), lr=lr,
                                           weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           _cosine_factor(steps))
        self.source, self.validation = source, validation
        self.steps, self.out_dir, self.batch_size = steps, out_dir, batch_size
        self.grad_clip, self.seed, self.args = grad_clip, seed, args
        self.step = 0
        self.history = {"train": [], "val": []}
        self.window = {"count": 0, "sums": {}}
        self.wall_time = 0.0
        self.checkpoint = None

    # -- checkpoints
    def save(self) -> Path:
        tensors = {}
        tensors.update(_prefixed(portable_state_dict(self.raw), "model"))
        tensors.update(_prefixed(portable_state_dict(self.ema.module), "ema"))
        rng = {"torch": _split_tensors(torch.get_rng_state(), "rng.torch", tensors)}
        if self.device.type == "cuda":
            rng["cuda"] = _split_tensors(torch.cuda.get_rng_state(self.device), "rng.cuda",
                                         tensors)
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "step": self.step,
            "config": self.raw.config,
            "args": self.args,
            "optimizer": _split_tensors(self.optimizer.state_dict(), "optimizer", tensors),
            "scheduler": _split_tensors(self.scheduler.state_dict(), "scheduler", tensors),
            "ema_updates": self.ema.num_updates,
            "rng": rng,
            "window": self.window,
            "wall_time_s": self.wall_time,
            "history": self.history,
        }
        data = safetensors_save(tensors, metadata={"format": CHECKPOINT_FORMAT})
        state["sha256"] = hashlib.sha256(data).hexdigest()
        tensor_path, json_path = _checkpoint_files(self.out_dir, self.step)
        # The sidecar is written last: a checkpoint counts only once both files exist.
        atomic_write_bytes(tensor_path, data)
        atomic_write_bytes(json_path, _json_bytes(state))
        for step, old in _all_checkpoints(self.out_dir):
            if step < self.step:
                old.unlink()
                old.with_suffix(".safetensors").unlink()
        self.checkpoint = json_path
        return json_path

    def restore(self, json_path: Path) -> None:
        meta, tensors = _read_checkpoint(json_path)
        if meta["config"] != self.raw.config:
            raise ValueError(f"{json_path} holds a {meta['config']} model, this run trains "
                             f"{self.raw.config}; use another out_dir or overwrite=True")
        self.raw.load_state_dict(_unprefixed(tensors, "model"))
        self.ema.module.load_state_dict(_unprefixed(tensors, "ema"))
        self.ema.num_updates = meta["ema_updates"]
        self.optimizer.load_state_dict(_join_tensors(meta["optimizer"], tensors))
        self.scheduler.load_state_dict(_join_tensors(meta["scheduler"], tensors))
        torch.set_rng_state(_join_tensors(meta["rng"]["torch"], tensors))
        if self.device.type == "cuda" and "cuda" in meta["rng"]:
            torch.cuda.set_rng_state(_join_tensors(meta["rng"]["cuda"], tensors), self.device)
        self.step = meta["step"]
        self.history = meta["history"]
        self.window = meta["window"]
        self.wall_time = meta["wall_time_s"]
        self.checkpoint = Path(json_path)

    # -- one optimisation step
    def train_step(self) -> None:
        rng = np.random.default_rng([self.seed, self.ctx.rank, self.step])
        lr_batch, hr_batch = _check_pair(*self.source.sample(self.batch_size, rng),
                                         self.raw.scale, self.source)
        x = lr_batch.to(self.device, non_blocking=True)
        y = hr_batch.to(self.device, non_blocking=True)
        loss, terms = self.loss(self.net(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {float(loss)} at step "
                                     f"{self.step + 1}; lower lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.raw)
        self.step += 1
        sums = self.window["sums"]
        for key, value in {"loss": float(loss.detach()), **terms}.items():
            sums[key] = sums.get(key, 0.0) + value
        self.window["count"] += 1

    def log(self) -> dict:
        count = self.window["count"]
        entry = {"step": self.step, **{k: v / count for k, v in self.window["sums"].items()},
                 "lr": self.optimizer.param_groups[0]["lr"]}
        self.history["train"].append(entry)
        self.window = {"count": 0, "sums": {}}
        return entry

    def validate(self) -> float:
        lr_val, hr_val = self.validation
        value = validation_psnr(self.ema.module, lr_val, hr_val, batch_size=self.batch_size,
                                device=self.device)
        self.history["val"].append({"step": self.step, "psnr": value})
        return value

    # -- the loop
    def run(self, *, val_every, checkpoint_every, log_every, progress, metadata) -> dict:
        from tqdm.auto import tqdm

        main = self.ctx.is_main
        bar = tqdm(total=self.steps, initial=min(self.step, self.steps),
                   disable=not (progress and main), dynamic_ncols=True,
                   desc=f"train {self.raw.config['architecture']} x{self.raw.scale}")
        started = time.perf_counter()
        saved_step = self.step
        shown = {}
        try:
            while self.step < self.steps:
                self.train_step()
                done = self.step == self.steps
                if self.step % log_every == 0 or done:
                    shown["loss"] = f"{self.log()['loss']:.4g}"
                    bar.set_postfix(shown, refresh=False)
                if main and self.validation is not None and (self.step % val_every == 0
                                                            or done):
                    shown["val_psnr"] = f"{self.validate():.2f}"
                    bar.set_postfix(shown, refresh=False)
                if main and (self.step % checkpoint_every == 0 or done):
                    self.wall_time += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save()
                    saved_step = self.step
                bar.update(1)
        except KeyboardInterrupt:
            # Keep the work done so far: a later resume=True call continues from here.
            if main and self.ctx.world_size == 1 and self.step > saved_step:
                self.wall_time += time.perf_counter() - started
                self.save()
            raise
        finally:
            bar.close()
        weights_path = self.out_dir / WEIGHTS_FILE
        if main:
            if self.checkpoint is None or self.step > saved_step:
                self.save()
            info = {"step": self.step, "train_args": self.args,
                    "val_psnr": self.history["val"][-1]["psnr"] if self.history["val"] else None}
            export_weights(self.ema.module, weights_path, overwrite=True,
                           metadata={**info, **(metadata or {})})
        result = {**self.history, "step": self.step, "world_size": self.ctx.world_size,
                  "rank": self.ctx.rank,
                  "wall_time_s": self.wall_time, "config": self.raw.config,
                  "weights": str(weights_path),
                  "checkpoint": str(self.checkpoint) if self.checkpoint else None}
        if main:
            atomic_write_bytes(self.out_dir / HISTORY_FILE, _json_bytes(result))
        self.ctx.barrier()
        return result


# --------------------------------------------------------------------------- regression


def train_regressor(images, targets, *, epochs=20, batch_size=32, lr=2e-3, seed=0,
                    device=None, width=16, progress=False):
    """Train a `~lensenhance.nn.resnet.SmallResNet` to regress one number per image.

    Used by the ``sr`` benchmark's downstream task (the Einstein radius from HR, from
    interpolated LR and from super-resolved LR images) and to build the frozen network of
    the SR feature loss. Random rotations and flips augment the images (the targets must
    not depend on orientation); AdamW with a one-cycle schedule.

    Parameters
    ----------
    images : array-like, shape (n, y, x)
        Preprocessed images (the caller chooses the normalisation).
    targets : array-like, shape (n,)
    epochs, batch_size, lr, seed : optional
        Schedule; ``seed`` fixes the initial weights and the batches.

    Returns
    -------
    net : SmallResNet
        In eval mode.
    stats : dict
        ``target_mean`` and ``target_std``: the network predicts standardised targets.
    """
    from .nn.resnet import SmallResNet

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    target = np.asarray(targets, dtype=np.float32)
    if len(target) != len(x) or len(x) < 2:
        raise ValueError(f"need matching images and targets (at least 2), got {len(x)} "
                         f"images and {len(target)} targets")
    stats = {"target_mean": float(target.mean()), "target_std": float(target.std() + 1e-12)}
    y = torch.from_numpy((target - stats["target_mean"]) / stats["target_std"])[:, None]

    torch.manual_seed(seed)
    net = SmallResNet(1, width=width).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = int(np.ceil(len(x) / batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
                                                   total_steps=epochs * per_epoch)
    rng = np.random.default_rng(seed + 1)
    net.train()
    from tqdm.auto import tqdm

    for _ in tqdm(range(epochs), desc="regressor", unit="epoch", disable=not progress):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            xb = torch.rot90(x[batch].to(device), int(rng.integers(4)), (-2, -1))
            if rng.random() < 0.5:
                xb = xb.flip(-1)
            loss = F.mse_loss(net(xb), y[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval(), stats


def predict_regressor(net, images, stats, *, batch_size=256):
    """Predictions of a `train_regressor` network, in the targets' units."""
    device = next(net.parameters()).device
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    with torch.inference_mode():
        out = torch.cat([net(x[i:i + batch_size].to(device)).cpu()
                         for i in range(0, len(x), batch_size)]).numpy()[:, 0]
    return out * stats["target_std"] + stats["target_mean"]



def train_feature_network(out_dir, *, n=2000, n_val=200, epochs=15, preset="model_i",
                          scale=2, seed=0, data_seed=2, overwrite=False, progress=True,
                          metadata=None):
    """Train the frozen network of the SR feature loss: a theta_E regressor on HR images.

    The images are simulated HR images normalised exactly as `train_sr` sees its targets
    (`lensenhance.datasets.normalize_pairs`), so that the feature loss compares features
    of the kind of image the network was trained on. Writes ``weights.safetensors`` (the
    network, its target statistics and ``task="features"`` in the metadata) and
    ``history.json`` to ``out_dir``.

    Returns
    -------
    dict
        ``val_mae`` (arcsec) on ``n_val`` held-out images, ``wall_time_s``, ``config`` and
        the path of the weights.
    """
    from .datasets import normalize_pairs, simulated_pairs

    out_dir = Path(out_dir)
    weights_path = out_dir / WEIGHTS_FILE
    if weights_path.exists() and not overwrite:
        raise FileExistsError(f"{weights_path} exists")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ds = simulated_pairs(n + n_val, preset=preset, scale=scale, seed=data_seed,
                         progress=progress)
    _, hr = normalize_pairs(ds["lr"].values, ds["hr"].values, scale=scale)
    theta_e = ds["theta_E"].values.astype(np.float32)
    net, stats = train_regressor(hr[:n], theta_e[:n], epochs=epochs, seed=seed,
                                 progress=progress)
    val_mae = float(np.mean(np.abs(predict_regressor(net, hr[n:], stats) - theta_e[n:])))
    result = {"val_mae": val_mae, "n_train": n, "n_val": n_val, "epochs": epochs,
              "wall_time_s": time.perf_counter() - started, "config": net.config,
              "weights": str(weights_path)}
    export_weights(net, weights_path, overwrite=overwrite,
                   metadata={"task": "features", "data_preset": preset, **stats,
                             "val_mae": val_mae, **(metadata or {})})
    atomic_write_bytes(out_dir / HISTORY_FILE, _json_bytes(result))
    return result
