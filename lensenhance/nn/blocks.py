"""Building blocks shared by the super-resolution networks of `lensenhance.nn.sr`.

Each idea lives in one place: a residual connection (`Residual`), the EDSR/SRResNet
residual block (`ResidualBlock`), RCAN's channel attention (`ChannelAttention`, `RCAB`,
`ResidualGroup`), RDN's dense block (`ResidualDenseBlock`) and the sub-pixel
(pixel-shuffle) upsampler (`Upsampler`). Pure torch: tensors in, tensors out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int

__all__ = [
    "conv",
    "conv3x3",
    "make_activation",
    "upsample",
    "Residual",
    "ResidualBlock",
    "ChannelAttention",
    "RCAB",
    "ResidualGroup",
    "DenseLayer",
    "ResidualDenseBlock",
    "Upsampler",
    "upsampling_stages",
    "INTERPOLATION_MODES",
]

#: Interpolation modes accepted by `upsample` (and by the global residual of the networks).
INTERPOLATION_MODES = ("bilinear", "bicubic")


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool = True):
    """Return a 'same'-padded 2-D convolution (odd ``kernel_size``)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


def conv3x3(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    """Return a 3x3 'same'-padded convolution."""
    return conv(in_channels, out_channels, 3, bias=bias)


def make_activation(name: str | None, channels: int = 1) -> nn.Module:
    """Return an activation module by name.

    Parameters
    ----------
    name : {'relu', 'prelu', 'lrelu', None}
        ``'prelu'`` learns one slope per channel; ``None`` gives the identity.
    channels : int, optional
        Number of channels (only used by ``'prelu'``).
    """
    if name is None or name == "none":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    raise ValueError(f"unknown activation {name!r}; use 'relu', 'prelu', 'lrelu' or None")


def upsample(x: torch.Tensor, scale: int, mode: str = "bicubic") -> torch.Tensor:
    """Interpolate a ``(B, C, H, W)`` tensor onto the ``scale``-times finer grid.

    Values are interpolated, not divided by ``scale**2``: this is the value-preserving
    interpolation of a normalised image (the flux-per-pixel bookkeeping is done by the
    caller). Pixel centres are aligned as in ``align_corners=False``, which keeps the
    operation exactly equivariant to 90-degree rotations and flips.
    """
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; use one of {INTERPOLATION_MODES}")
    height, width = x.shape[-2:]
    return F.interpolate(x, size=(height * scale, width * scale), mode=mode, align_corners=False)


class Residual(nn.Module):
    """``x + res_scale * body(x)``: the one residual connection every network uses.

    Parameters
    ----------
    body : torch.nn.Module
        Maps a tensor to one of the same shape.
    res_scale : float, optional
        Scales the residual branch (EDSR's residual scaling stabilises wide networks).
    """

    def __init__(self, body: nn.Module, *, res_scale: float = 1.0):
        super().__init__()
        self.body = body
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.res_scale != 1.0:
            out = out * self.res_scale
        return x + out

    def extra_repr(self) -> str:
        return "" if self.res_scale == 1.0 else f"res_scale={self.res_scale:g}"


class ChannelAttention(nn.Module):
    """RCAN channel attention: rescale channels by a gate computed from their means.

    Parameters
    ----------
    channels : int
        Number of feature channels.
    reduction : int, optional
        Channel reduction of the gate's bottleneck.
    """

    def __init__(self, channels: int, *, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResidualBlock(Residual):
    """Residual block conv-(BN)-act-conv-(BN)-(CA) with a skip connection.

    EDSR uses it without batch normalisation (``batch_norm=False``, ReLU), SRResNet with
    batch normalisation and PReLU, RCAN appends channel attention (see `RCAB`).

    Parameters
    ----------
    channels : int
        Number of feature channels (input = output).
    batch_norm : bool, optional
        Insert `torch.nn.BatchNorm2d` after each convolution (SRResNet).
    activation : str, optional
        Activation between the convolutions (see `make_activation`).
    res_scale : float, optional
        Residual scaling (EDSR uses 0.1 for its large model).
    attention_reduction : int or None, optional
        If given, end the branch with `ChannelAttention` of this reduction.
    """

    def __init__(
        self,
        channels: int,
        *,
        batch_norm: bool = False,
        activation: str | None = "relu",
        res_scale: float = 1.0,
        attention_reduction: int | None = None,
    ):
        layers = [conv3x3(channels, channels, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers += [make_activation(activation, channels), conv3x3(channels, channels)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        if attention_reduction is not None:
            layers.append(ChannelAttention(channels, reduction=attention_reduction))
        super().__init__(nn.Sequential(*layers), res_scale=res_scale)


class RCAB(ResidualBlock):
    """RCAN's residual channel-attention block: conv-ReLU-conv-CA with a skip connection."""

    def __init__(self, channels: int, *, reduction: int = 16, res_scale: float = 1.0):
        super().__init__(channels, res_scale=res_scale, attention_reduction=reduction)


class ResidualGroup(Residual):
    """RCAN residual group: ``n_blocks`` RCABs and a convolution, with a skip connection."""

    def __init__(self, channels: int, n_blocks: int, *, reduction: int = 16,
                 res_scale: float = 1.0):
        blocks = [RCAB(channels, reduction=reduction, res_scale=res_scale)
                  for _ in range(n_blocks)]
        super().__init__(nn.Sequential(*blocks, conv3x3(channels, channels)))


class DenseLayer(nn.Module):
    """Dense connection: append ``growth`` new ReLU-conv features to the input channels."""

    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.conv = conv3x3(in_channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, F.relu(self.conv(x))], dim=1)


class ResidualDenseBlock(Residual):
    """RDN residual dense block: ``n_layers`` dense layers, 1x1 local fusion, skip.

    Parameters
    ----------
    channels : int
        Input = output channels (RDN's ``G0``).
    growth : int
        Channels added by each dense layer (RDN's ``G``).
    n_layers : int
        Number of dense layers (RDN's ``C``).
    """

    def __init__(self, channels: int, growth: int, n_layers: int):
        layers = [DenseLayer(channels + i * growth, growth) for i in range(n_layers)]
        fusion = nn.Conv2d(channels + n_layers * growth, channels, 1)
        super().__init__(nn.Sequential(*layers, fusion))


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: conv to ``r**2`` times the channels, then pixel shuffle.

    Scale 2 and 3 use one stage; powers of two use successive x2 stages (x4 = two).

    Parameters
    ----------
    channels : int
        Feature channels (kept through the upsampler).
    scale : int
        Upsampling factor: 2, 3 or a power of two.
    activation : str or None, optional
        Activation after each stage (SRResNet uses ``'prelu'``).
    """

    def __init__(self, channels: int, scale: int, *, activation: str | None = None):
        stages = upsampling_stages(scale)
        layers = []
        for factor in stages:
            layers += [conv3x3(channels, channels * factor**2), nn.PixelShuffle(factor)]
            if activation is not None:
                layers.append(make_activation(activation, channels))
        super().__init__(*layers)
        self.scale = scale


def upsampling_stages(scale: int) -> list[int]:
    """Split ``scale`` into pixel-shuffle stages (``[3]``, ``[2]``, ``[2, 2]``, ...)."""
    check_int(scale, "scale", 2)
    if scale == 3:
        return [3]
    n_stages = int(round(math.log2(scale)))
    if 2**n_stages != scale:
        raise ValueError(f"scale must be 3 or a power of two, got {scale}")
    return [2] * n_stages
