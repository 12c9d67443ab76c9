"""A Residual Attention U-Net denoiser: the deterministic baseline of the diffusion denoiser.

The network the HSC diffusion study (seed 004) compared its DDPM against: a U-Net whose
levels are residual blocks and whose skip connections pass through attention gates
(Oktay et al. 2018, "Attention U-Net"), which let the decoder weigh the encoder's
features by what it has seen at the coarser level. Here it also takes the per-pixel
noise ``sigma`` as a second input channel, so one network denoises at any signal-to-noise
ratio of its training range, and it predicts a correction added to its input.

No normalisation layers: the output at a pixel depends on a neighbourhood only. The
down-sampling makes it depend on a tile's position modulo ``divisor`` too, so
`lensenhance.predict.tiling` starts every tile on a multiple of it, and tiled equals whole to
float rounding. Pure torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import check_image_batch
from .blocks import conv3x3
from .registry import register_architecture

__all__ = ["RAUNet", "AttentionGate"]


class _ResidualBlock(nn.Module):
    """conv-LReLU-conv with a (1x1-projected) identity path."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(in_channels, out_channels), nn.LeakyReLU(0.1),
                                  conv3x3(out_channels, out_channels))
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class AttentionGate(nn.Module):
    """Additive attention gate: weigh skip features by a coarser gating signal.

    Parameters
    ----------
    skip_channels, gate_channels, inner_channels : int
    """

    def __init__(self, skip_channels: int, gate_channels: int, inner_channels: int):
        super().__init__()
        self.theta = nn.Conv2d(skip_channels, inner_channels, 1)
        self.phi = nn.Conv2d(gate_channels, inner_channels, 1)
        self.psi = nn.Conv2d(inner_channels, 1, 1)

    def forward(self, skip, gate):
        attention = torch.sigmoid(self.psi(F.relu(self.theta(skip) + self.phi(gate))))
        return skip * attention


@register_architecture("raunet")
class RAUNet(nn.Module):
    """Residual Attention U-Net denoiser taking the image and its per-pixel sigma.

    Parameters
    ----------
    channels : sequence of int
        Feature channels per level; each further level halves the resolution.
    blocks : int
        Residual blocks per level (encoder and decoder).

    Notes
    -----
    Called as ``net(x, sigma)`` with ``(B, 1, y, x)`` normalised image and noise; image
    sides need not be multiples of ``2**(levels - 1)`` (inputs are padded by
    reflection and cropped back).
    """

    architecture = "raunet"
    takes_sigma = True
    # Down-sampling ties the output to a tile's position modulo ``divisor``; tiles that
    # start on multiples of it (lensenhance.predict.tiling aligns them) are exact.
    exact_tiling = True

    def __init__(self, *, channels=(32, 64, 128), blocks: int = 1):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels needs at least two positive entries, got {channels}")
        blocks = int(blocks)
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.config = {"architecture": self.architecture, "channels": channels,
                       "blocks": blocks}
        self.scale = 1
        self.head = conv3x3(2, channels[0])
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        previous = channels[0]
        for i, c in enumerate(channels):
            if i:
                self.downs.append(nn.Conv2d(previous, c, 3, stride=2, padding=1))
            self.encoders.append(nn.Sequential(*[_ResidualBlock(c, c) for _ in range(blocks)]))
            previous = c
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for coarse, fine in zip(channels[:0:-1], channels[-2::-1]):
            self.ups.append(nn.ConvTranspose2d(coarse, fine, 2, stride=2))
            self.gates.append(AttentionGate(fine, fine, max(fine // 2, 1)))
            self.decoders.append(nn.Sequential(
                _ResidualBlock(2 * fine, fine), *[_ResidualBlock(fine, fine)
                                                  for _ in range(blocks - 1)]))
        self.tail = conv3x3(channels[0], 1)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.config["channels"]) - 1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        check_image_batch(x)
        if sigma.shape != x.shape:
            raise ValueError(f"sigma {tuple(sigma.shape)} and x {tuple(x.shape)} differ in "
                             "shape")
        ny, nx = x.shape[-2:]
        d = self.divisor
        pad_y, pad_x = (-ny) % d, (-nx) % d
        inputs = torch.cat([x, sigma.to(x.dtype)], dim=1)
        if pad_y or pad_x:
            mode = "reflect" if min(ny, nx) > max(pad_y, pad_x) else "replicate"
            inputs = F.pad(inputs, (0, pad_x, 0, pad_y), mode=mode)
        h = self.head(inputs)
        skips = []
        for i, encoder in enumerate(self.encoders):
            if i:
                h = self.downs[i - 1](h)
            h = encoder(h)
            skips.append(h)
        for up, gate, decoder, skip in zip(self.ups, self.gates, self.decoders,
                                           reversed(skips[:-1])):
            h = up(h)
            h = decoder(torch.cat([gate(skip, h), h], dim=1))
        return x + self.tail(h)[..., :ny, :nx]

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (f"RAUNet(channels={self.config['channels']}, blocks={self.config['blocks']}, "
                f"parameters={n / 1e6:.3g}M)")
