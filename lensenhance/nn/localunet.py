"""A UNet whose every output pixel sees a bounded window: no normalisation, no attention.

`LocalUNet` is the network of the few-step (distilled) posterior models. The UNet of
the 10-step models (diffusers' ``UNet2DModel``) normalises each block's features over
the whole image it is given (GroupNorm), so a tile's result depends on what else is in
the tile; here nothing is pooled over the image, and a tile with a margin of
`receptive_field` pixels gives exactly the whole image's result. Training stays stable
without normalisation because each residual block's last convolution starts at zero, so
every block starts as the identity (SkipInit; De & Smith 2020, NeurIPS).

The network maps ``(x_t, t, s, cond)`` to the clean image: ``t`` is the step it starts
from and ``s`` the step it is asked to land on (a consistency-trajectory student,
Kim et al. 2024, ICLR), each embedded as diffusers' sinusoidal timestep embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# With the module (the registry imports it when a model is built), not at the first
# forward pass: a catalog run's first rows would otherwise pay diffusers' 4 s import.
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

__all__ = ["LocalUNet"]


class _ResBlock(nn.Module):
    """``skip(x) + conv(silu(film(conv(silu(x)))))``, the last convolution zeroed."""

    def __init__(self, in_channels, out_channels, embed_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x, embedding):
        h = self.conv1(F.silu(x))
        scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(h * (1 + scale) + shift))
        return self.skip(x) + h


class LocalUNet(nn.Module):
    """A UNet with FiLM time conditioning, no normalisation and no attention.

    Parameters
    ----------
    channels : sequence of int
        Feature channels per resolution level (each level halves the image).
    blocks : int
        Residual blocks per level on the way down (and on the way up).
    out_channels : int
        Channels of the image it predicts.
    cond_channels : int
        Channels of the conditioning image stacked onto the input.
    embed_dim : int
        Width of the time embedding.
    """

    architecture = "localunet"

    def __init__(self, *, channels=(16, 32, 64), blocks: int = 1, out_channels: int = 1,
                 cond_channels: int = 3, embed_dim: int = 64):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be positive ints, got {channels}")
        self.config = {"architecture": self.architecture, "channels": channels,
                       "blocks": int(blocks), "out_channels": int(out_channels),
                       "cond_channels": int(cond_channels), "embed_dim": int(embed_dim)}
        self.embed = nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.SiLU(),
                                   nn.Linear(embed_dim, embed_dim))
        self.inp = nn.Conv2d(out_channels + cond_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        for level, width in enumerate(channels):
            previous = channels[max(level - 1, 0)]
            self.down.append(nn.ModuleList(
                [_ResBlock(previous if b == 0 else width, width, embed_dim)
                 for b in range(int(blocks))]))
            if level < len(channels) - 1:
                self.pool.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        self.lift = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            width = channels[level]
            self.lift.append(nn.Conv2d(channels[level + 1], width, 3, padding=1))
            self.up.append(nn.ModuleList(
                [_ResBlock(2 * width if b == 0 else width, width, embed_dim)
                 for b in range(int(blocks))]))
        self.out = nn.Conv2d(channels[0], out_channels, 3, padding=1)

    @property
    def divisor(self) -> int:
        """Image sides must be multiples of this."""
        return 2 ** (len(self.config["channels"]) - 1)

    @property
    def receptive_field(self) -> int:
        """The radius (pixels) of the window an output pixel depends on, rounded up.

        Each 3x3 convolution at a level ``2**k`` times coarser reaches ``2**k`` pixels; the
        stride-2 convolutions and the nearest upsampling add one coarse pixel each.
        """
        levels = len(self.config["channels"])
        blocks = self.config["blocks"]
        reach = 2  # the input and output convolutions
        for k in range(levels):
            factor = 2 ** k
            convs = 2 * blocks * (2 if k < levels - 1 else 1)  # down and up blocks
            reach += convs * factor
            if k < levels - 1:
                reach += 2 * 2 * factor  # the strided convolution and the lift, one coarse px
        return int(math.ceil(reach))

    def _time_embedding(self, t, s):
        dim = self.config["embed_dim"]
        both = torch.cat([get_timestep_embedding(t.float().reshape(-1), dim),
                          get_timestep_embedding(s.float().reshape(-1), dim)], dim=1)
        return self.embed(both.to(self.inp.weight.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor, *, s=None, cond=None,
                class_labels=None) -> torch.Tensor:
        """The clean-image estimate from ``x`` at step ``t`` bound for step ``s`` (default 0)."""
        if self.config["cond_channels"]:
            if cond is None:
                raise ValueError("this network needs a conditioning image (cond=)")
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        s = torch.zeros_like(t) if s is None else torch.as_tensor(s, device=x.device).expand(
            x.shape[0])
        embedding = self._time_embedding(t, s)
        h = self.inp(x)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, embedding)
            if level < len(self.pool):
                skips.append(h)
                h = self.pool[level](h)
        for lift, blocks in zip(self.lift, self.up):
            h = lift(F.interpolate(h, scale_factor=2, mode="nearest"))
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, embedding)
        return self.out(F.silu(h))

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        c = self.config
        return (f"LocalUNet(channels={c['channels']}, blocks={c['blocks']}, "
                f"cond_channels={c['cond_channels']}, receptive_field={self.receptive_field}, "
                f"parameters={n / 1e6:.3g}M)")
