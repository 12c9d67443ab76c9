"""Bases shared by the networks of `lensenhance.nn`: a configured module and the SR skeleton.

`SRNetwork` lives here rather than in `lensenhance.nn.sr` so that every SR network,
including the escnn-based `lensenhance.nn.equivariant.EquivariantFSRCNN`, builds on it
without the modules importing one another. Pure torch.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import INTERPOLATION_MODES, upsample, upsampling_stages

__all__ = ["ConfiguredModule", "SRNetwork", "check_image_batch", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters of ``model`` (works on the meta device)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_image_batch(x: torch.Tensor) -> None:
    """Raise if ``x`` is not a ``(B, 1, H, W)`` floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected a (batch, 1, y, x) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {x.dtype}")


class ConfiguredModule(nn.Module):
    """A module that keeps its constructor arguments in ``config`` (JSON-ready).

    ``config["architecture"]`` is the registry name (`lensenhance.nn.registry`), so
    ``model_from_config(model.config)`` rebuilds the module. ``task`` is the task its
    weights files are written for when the caller names none (`export_weights`).
    """

    architecture = ""
    task: str | None = None

    def _set_config(self, **kwargs) -> None:
        self.config = {"architecture": self.architecture, **kwargs}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "architecture")
        n_params = count_parameters(self)
        size = f", parameters={n_params / 1e6:.3g}M" if n_params else ""
        return f"{type(self).__name__}({args}{size})"


class SRNetwork(ConfiguredModule):
    """Base of the residual SR networks: ``tail(upsampler(body(head(x)))) + interp(x)``.

    Subclasses build ``head``, ``body``, ``upsampler`` and ``tail`` and call
    `_set_config` with their constructor arguments, so that
    ``model_from_config(model.config)`` rebuilds the same network.

    Parameters
    ----------
    scale : int
        Upsampling factor (2, 3 or 4).
    global_residual : {'bicubic', 'bilinear', None}
        Interpolation added to the network's output (see `lensenhance.nn.sr`).
    """

    task = "sr"

    #: Keyword arguments of the ``"small"`` and ``"paper"`` presets.
    PRESETS: dict[str, dict] = {}

    def __init__(self, *, scale: int, global_residual: str | None):
        super().__init__()
        upsampling_stages(scale)  # validates the scale
        if global_residual is not None and global_residual not in INTERPOLATION_MODES:
            raise ValueError(
                f"global_residual must be one of {INTERPOLATION_MODES} or None, "
                f"got {global_residual!r}"
            )
        self.scale = scale
        self.global_residual = global_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x)
        out = self.tail(self.upsampler(self.body(self.head(x))))
        if self.global_residual is not None:
            out = out + upsample(x, self.scale, self.global_residual)
        return out

    @staticmethod
    def _damp(layer: nn.Module, factor: float = 0.1) -> None:
        """Shrink the initial weights of the output layer (start near the baseline)."""
        with torch.no_grad():
            layer.weight.mul_(factor)
            if layer.bias is not None:
                layer.bias.zero_()
