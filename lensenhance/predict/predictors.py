"""Predictors: what the `~lensenhance.Enhancer` runs on normalised image tiles.

A predictor is called on a normalised batch ``x`` of shape ``(B, 1, y, x)`` and returns
a `Prediction`: a ``mean`` ``(B, 1, s*y, s*x)`` and, when it knows them, a per-pixel
standard deviation ``std`` (same shape) and ``samples`` ``(S, B, 1, s*y, s*x)``. It
declares

* ``scale``: the upsampling factor ``s`` (1 for a denoiser);
* ``halo``: the margin, in input pixels, that a tile needs around the pixels it is used
  for so that those pixels come out as in a whole-image run (the receptive field);
* ``exact_tiling``: False for networks with global operations (RCAN's channel attention,
  the attention and down-sampling of diffusion UNets), whose tiles can only be blended.

Randomness is keyed to the position of a pixel in its image (`position_noise`), so the
same ``seed`` gives the same result whatever the tiling, the batch size, the number of
workers or the device. `NetworkPredictor` wraps a residual network (optionally its D4
self-ensemble) and propagates an input uncertainty by Monte Carlo.

Pure torch and numpy: no FITS, units or WCS here.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validation import check_int
from ..nn.inference import inference_copy

__all__ = [
    "Prediction",
    "Predictor",
    "NetworkPredictor",
    "position_noise",
    "count_receptive_field",
    "has_global_operations",
    "NOISE_BLOCK",
]

#: Side of the blocks of `position_noise`, in input pixels.
NOISE_BLOCK = 64

# Modules whose output depends on the whole image, not on a neighbourhood.
_GLOBAL_MODULES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                   nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
                   nn.MultiheadAttention)
# How far an interpolation reaches, in input pixels.
_INTERPOLATION_REACH = {"nearest": 1, "bilinear": 1, "bicubic": 2}


@dataclass
class Prediction:
    """What a predictor returns for a batch.

    Attributes
    ----------
    mean : torch.Tensor
        ``(B, 1, sy, sx)``, normalised units.
    std : torch.Tensor or None
        Per-pixel standard deviation, same shape.
    samples : torch.Tensor or None
        ``(S, B, 1, sy, sx)`` draws from the predictive distribution.
    """

    mean: torch.Tensor
    std: torch.Tensor | None = None
    samples: torch.Tensor | None = None


class Predictor(abc.ABC):
    """Base class of predictors: everything the engine reads from one is declared here.

    Subclass it, implement `predict`, and set the attributes below that differ from the
    defaults; the `~lensenhance.Enhancer` takes any instance (``Enhancer(predictor)``),
    tiles and batches the images for it, and records `settings` in a catalog run.

    Attributes
    ----------
    scale : int
        Output pixels per input pixel along each axis (1 for a denoiser).
    halo : int
        Input pixels a tile needs around the pixels it is used for (receptive field).
    exact_tiling : bool
        False when tiles can only be blended (global operations).
    tile_alignment : int
        Tiles start on multiples of this (a U-Net's down-sampling factor).
    name : str
        Shown in reprs, headers and catalogs.
    uncertainty_type : str
        What the returned ``std`` is (the output header's UNCTYPE); empty when none.
    n_samples : int
        Samples returned per image (0: none).
    needs_sigma : bool
        True when the input's sigma is needed (the Enhancer estimates a constant one,
        `lensenhance.predict.posterior.estimate_sigma`, for an image without one).
    n_draws : int
        Monte-Carlo redraws of the input noise behind ``std`` (0: none).
    steps, sampler : int or None, str or None
        A sampler's number of steps and its name (diffusion models).
    self_ensemble : bool
        Whether the D4 self-ensemble is averaged.
    domain : dict or None
        What the model was trained on (a shipped card's ``domain``:
        `lensenhance.predict.domain.check_domain`); None: unknown, nothing is checked.
    """

    scale: int = 1
    halo: int = 0
    exact_tiling: bool = True
    tile_alignment: int = 1
    name: str = "predictor"
    uncertainty_type: str = ""
    n_samples: int = 0
    needs_sigma: bool = False
    n_draws: int = 0
    steps: int | None = None
    sampler: str | None = None
    self_ensemble: bool = False
    domain: dict | None = None

    @abc.abstractmethod
    def predict(self, x, *, sigma=None, seed=0, origins=None):
        """Predict a normalised batch: the work of `__call__` (same parameters)."""

    def gives_std(self, has_sigma):
        """Whether a ``std`` comes back for an input with (``has_sigma``) or without a
        sigma. Default: a propagated input noise, which needs an input sigma and draws.
        (An estimated sigma is for the network's input only: the Enhancer passes False
        for it, since an uncertainty propagated from it would claim more than is known.)
        """
        return bool(has_sigma and self.n_draws > 0)

    def settings(self):
        """What a run with this predictor depends on, recorded by catalog runs."""
        return {"name": self.name, "scale": int(self.scale),
                "self_ensemble": bool(self.self_ensemble), "n_samples": int(self.n_samples),
                "steps": self.steps, "sampler": self.sampler, "n_draws": int(self.n_draws),
                "uncertainty_type": self.uncertainty_type,
                "weights_sha256": self.weights_hash()}

    #: Whether `predict` takes each image's zero level (``zero``): a std calibration that
    #: depends on the signal above the data's zero, not above the normalisation's offset.
    uses_zero_level = False

    def __call__(self, x, *, sigma=None, seed=0, origins=None, zero=None):
        """Predict a normalised batch.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, 1, y, x)`` normalised images on the predictor's device.
        sigma : torch.Tensor, optional
            ``(B, 1, y, x)`` normalised per-pixel standard deviation of ``x``.
        seed : int
            Seed of the randomness.
        origins : sequence of (int, int, int), optional
            Per batch item: an image key and the ``(y, x)`` position of the tile's first
            pixel in that image, for noise keyed to the pixel position. Default: each
            item is image ``b`` at ``(0, 0)``.
        zero : torch.Tensor, optional
            ``(B, 1, 1, 1)``: each item's data zero in normalised units (``-offset /
            scale``); used by predictors with `uses_zero_level` (default: 0, the offset).

        Returns
        -------
        Prediction
        """
        if origins is None:
            origins = [(b, 0, 0) for b in range(len(x))]
        if self.uses_zero_level:
            return self.predict(x, sigma=sigma, seed=seed, origins=origins, zero=zero)
        return self.predict(x, sigma=sigma, seed=seed, origins=origins)

    @property
    def device(self):
        return torch.device("cpu")

    def to(self, device):
        """Move to ``device``; returns self."""
        return self

    def weights_hash(self):
        """A SHA-256 digest that identifies the predictor's weights, or None."""
        return None

    def __repr__(self):
        return (f"<{type(self).__name__} {self.name!r} scale={self.scale} halo={self.halo} "
                f"exact_tiling={self.exact_tiling}>")


def position_noise(seed, key, y0, x0, ny, nx, n, *, block=NOISE_BLOCK):
    """Standard normal noise ``(n, ny, nx)`` keyed to pixel positions in an image.

    The image is cut into ``block`` x ``block`` squares, each drawn from its own
    generator seeded with ``(seed, key, row, column)``: a pixel's noise is the same
    whichever tile, batch or worker asks for it.

    Parameters
    ----------
    seed : int
        The run's seed.
    key : int
        The image (within a stack or list).
    y0, x0 : int
        Position of the first pixel of the window in the image.
    ny, nx : int
        Size of the window.
    n : int
        Number of independent draws.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, ny, nx)``.
    """
    out = np.empty((n, ny, nx), np.float32)
    for by in range(y0 // block, (y0 + ny - 1) // block + 1):
        for bx in range(x0 // block, (x0 + nx - 1) // block + 1):
            rng = np.random.default_rng([int(seed), int(key), by, bx])
            noise = rng.standard_normal((n, block, block), dtype=np.float32)
            ya, yb = max(y0, by * block), min(y0 + ny, (by + 1) * block)
            xa, xb = max(x0, bx * block), min(x0 + nx, (bx + 1) * block)
            out[:, ya - y0:yb - y0, xa - x0:xb - x0] = \
                noise[:, ya - by * block:yb - by * block, xa - bx * block:xb - bx * block]
    return out


def has_global_operations(module):
    """True when ``module`` holds a layer whose output depends on the whole image."""
    return any(isinstance(m, _GLOBAL_MODULES) for m in module.modules())


def count_receptive_field(module, *, probe=24):
    """The receptive-field radius of a network, in input pixels, by counting its layers.

    One forward pass on a ``probe`` x ``probe`` zero image records every convolution
    and pooling layer that runs, with the resolution it runs at; the radius is the sum
    of their kernel radii, each divided by its resolution relative to the input (so a
    3x3 convolution after a x2 pixel shuffle adds half a pixel), plus the reach of the
    interpolation of a global residual (2 pixels for bicubic). Summing over all layers
    bounds every path through the network; for the chain-like networks of
    `lensenhance.nn` it is the exact radius (`lensenhance.predict.tiling.measure_receptive_field`
    checks it by an impulse response). Convolutions called as functions are not seen.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(B, 1, y, x)`` to ``(B, 1, s*y, s*x)``.
    probe : int, optional
        Side of the probe image.

    Returns
    -------
    int
        The radius, rounded up.
    """
    radius = 0.0
    size = float(probe)

    def hook(layer, inputs, _output):
        nonlocal radius
        resolution = inputs[0].shape[-1] / size
        kernel = _pair(layer.kernel_size)[-1]
        dilation = _pair(getattr(layer, "dilation", 1))[-1]
        if isinstance(layer, nn.ConvTranspose2d):
            stride = _pair(layer.stride)[-1]
            padding = _pair(layer.padding)[-1]
            # output o reads inputs (o + p - k + 1) / stride ... (o + p) / stride
            reach = ((kernel - 1) / 2 + abs(padding - (kernel - 1) / 2)) / stride + 1
        else:
            reach = dilation * (kernel - 1) / 2
        radius += reach / resolution

    kinds = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    try:
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        dtype = parameter.dtype if parameter is not None else torch.float32
        zeros = torch.zeros(1, 1, probe, probe, device=device, dtype=dtype)
        with torch.inference_mode():
            # A denoiser taking sigma (the RAUNet) gets a second image.
            module(zeros, zeros) if getattr(module, "takes_sigma", False) else module(zeros)
    finally:
        for handle in handles:
            handle.remove()
    for m in module.modules():
        mode = getattr(m, "global_residual", None) or (
            getattr(m, "mode", None) if type(m).__name__ == "Interpolation" else None)
        radius += _INTERPOLATION_REACH.get(mode, 0)
    return math.ceil(radius - 1e-9)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _state_hash(module):
    import hashlib

    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class NetworkPredictor(Predictor):
    """A residual network (or its D4 self-ensemble) as a predictor.

    The mean is the network's output. When the input has an uncertainty, its
    propagation through the network is estimated by Monte Carlo: the network runs on
    ``n_draws`` re-draws ``x + sigma * noise`` (noise keyed to the pixel positions,
    `position_noise`), and ``std`` is the root-mean-square deviation of those outputs
    from the mean. It scales with the flux, follows the network's non-linearity and,
    like any estimate from ``n_draws`` draws, has a relative error of about
    ``1 / sqrt(2 * n_draws)``.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(B, 1, y, x)`` to ``(B, 1, s*y, s*x)``, fully convolutional.
    scale : int
        Its upsampling factor.
    name : str, optional
        A label (default: the module's class name).
    self_ensemble : bool, optional
        Average over the 8 rotations and flips (`lensenhance.nn.d4_self_ensemble`).
    n_draws : int, optional
        Monte-Carlo draws for the propagated uncertainty (0: none).
    halo : int, optional
        Default: `count_receptive_field`.
    exact_tiling : bool, optional
        Default: False when the module has global operations (`has_global_operations`).
    weights_sha256 : str, optional
        Digest of the weights file it was loaded from (default: a hash of its tensors).
    """

    def __init__(self, module, *, scale, name=None, self_ensemble=False, n_draws=8,
                 halo=None, exact_tiling=None, weights_sha256=None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        check_int(scale, "scale", integral_floats=True)
        if int(n_draws) != n_draws or n_draws < 0 or n_draws == 1:
            raise ValueError(f"n_draws must be 0 or an integer >= 2, got {n_draws!r}")
        # The same function, rewritten to run faster on oneDNN (a copy where anything
        # changes: the caller's module stays as it is).
        self.module = inference_copy(module.eval())
        self.scale = int(scale)
        self.name = name or type(module).__name__
        self.self_ensemble = bool(self_ensemble)
        self.n_draws = int(n_draws)
        if exact_tiling is None:
            # A network may declare itself (a U-Net's down-sampling ties its output to
            # the parity of the tile's position); otherwise global operations decide.
            exact_tiling = getattr(module, "exact_tiling", None)
        self.exact_tiling = (not has_global_operations(module)) if exact_tiling is None \
            else bool(exact_tiling)
        self.halo = count_receptive_field(module) if halo is None else int(halo)
        # A U-Net's pooling grid is that of the whole image only in aligned tiles.
        self.tile_alignment = int(getattr(module, "divisor", 1))
        if self.halo < 0:
            raise ValueError(f"halo must be >= 0, got {halo!r}")
        self._weights_sha256 = weights_sha256
        self.uncertainty_type = (f"MC propagation of input noise ({self.n_draws} draws)"
                                 if self.n_draws else "")
        # A denoiser that takes the per-pixel sigma beside the image (the RAUNet).
        self.needs_sigma = bool(getattr(module, "takes_sigma", False))

    @property
    def device(self):
        parameter = next(self.module.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def to(self, device):
        self.module.to(device)
        return self

    def weights_hash(self):
        if self._weights_sha256 is None:
            self._weights_sha256 = _state_hash(self.module)
        return self._weights_sha256

    def _forward(self, x, sigma=None):
        x = x.contiguous(memory_format=torch.channels_last)
        if self.needs_sigma:
            if self.self_ensemble:
                from ..nn import d4_inverse, d4_transform

                out = [d4_inverse(self.module(d4_transform(x, k, f), d4_transform(sigma, k, f)),
                                  k, f) for k in range(4) for f in (False, True)]
                return torch.stack(out).mean(dim=0)
            return self.module(x, sigma)
        if self.self_ensemble:
            from ..nn import d4_self_ensemble

            return d4_self_ensemble(self.module, x)
        return self.module(x)

    def predict(self, x, *, sigma=None, seed=0, origins=None):
        if self.needs_sigma and sigma is None:
            raise ValueError(f"{self.name} needs the input's sigma (the Enhancer estimates "
                             "one for an image without an uncertainty)")
        with torch.inference_mode():
            mean = self._forward(x, sigma).float()
            if sigma is None or self.n_draws == 0:
                return Prediction(mean)
            _, _, ny, nx = x.shape
            noise = np.stack([position_noise(seed, key, y0, x0, ny, nx, self.n_draws)
                              for key, y0, x0 in origins], axis=1)  # (n, B, y, x)
            noise = torch.from_numpy(noise).to(x.device)[:, :, None]
            square = torch.zeros_like(mean)
            for draw in noise:
                square += (self._forward(x + sigma * draw, sigma).float() - mean) ** 2
            return Prediction(mean, std=torch.sqrt(square / self.n_draws))

    def __repr__(self):
        ensemble = ", self_ensemble" if self.self_ensemble else ""
        return (f"<NetworkPredictor {self.name!r} scale={self.scale} halo={self.halo} "
                f"exact_tiling={self.exact_tiling}{ensemble} n_draws={self.n_draws}>")
