"""Residual super-resolution networks: RCAN, RDN, SRResNet, EDSR and FSRCNN.

Every network maps a normalised single-channel image ``(B, 1, H, W)`` to the
``scale``-times finer grid ``(B, 1, scale*H, scale*W)``, in the same normalisation.
How flux per pixel is shared out on the fine grid (values / ``scale**2``) is the
business of the caller (`lensenhance.Enhancer`); these modules are plain tensor maps.

All five share one skeleton, ``tail(upsampler(body(head(x))))``, and one **global
residual**: the output is the network's correction *plus* the bicubic (or bilinear)
interpolation of the input,

    y = f(x) + interpolate(x, scale),

so the network only learns the high-frequency detail that interpolation misses; with
its last layer at zero it *is* the interpolation baseline (the last layer starts at a
tenth of its usual initial size, so training starts close to that baseline).
``global_residual=None`` switches it off.

Each architecture has two presets:

==========  ===================================  ==========================================
name        ``"small"`` (CPU default)            ``"paper"`` (published size)
==========  ===================================  ==========================================
rcan        3 groups x 3 RCABs x 48 ch           10 groups x 20 RCABs x 64 ch (Zhang+ 2018)
rdn         D=6, C=4, G=32, G0=32                D=16, C=8, G=64, G0=64 (Zhang+ 2018)
srresnet    8 blocks x 48 ch                     16 blocks x 64 ch (Ledig+ 2017)
edsr        8 blocks x 64 ch                     baseline 16 blocks x 64 ch (Lim+ 2017)
fsrcnn      d=128, s=64, m=6 (widened)           d=56, s=12, m=4 (Dong+ 2016)
==========  ===================================  ==========================================

The small presets hold 0.2-1.5 million parameters (see `count_parameters`); FSRCNN's
published size (about 12 thousand) is far below that, so its CPU preset is a widened
FSRCNN and its ``"paper"`` preset is the smaller of the two.

The five classes register themselves in `lensenhance.nn.registry` (with the two
interpolation baselines), so `model_from_config` rebuilds them from a weights file.
"""

from __future__ import annotations

import torch
from torch import nn

from . import registry
from .base import ConfiguredModule, SRNetwork, check_image_batch, count_parameters
from .blocks import (
    INTERPOLATION_MODES,
    Residual,
    ResidualBlock,
    ResidualDenseBlock,
    ResidualGroup,
    Upsampler,
    conv,
    conv3x3,
    make_activation,
    upsample,
    upsampling_stages,
)

# Kept for code that imported the old private name.
_ConfiguredModule = ConfiguredModule

__all__ = [
    "SRNetwork",
    "RCAN",
    "RDN",
    "SRResNet",
    "EDSR",
    "FSRCNN",
    "Interpolation",
    "SR_ARCHITECTURES",
    "OPTIONAL_ARCHITECTURES",
    "BASELINES",
    "SIZES",
    "build_sr_model",
    "count_parameters",
]

#: Preset names every architecture has.
SIZES = ("small", "paper")

#: Parameter-free interpolation baselines accepted by `build_sr_model`.
BASELINES = INTERPOLATION_MODES


@registry.register_architecture("edsr")
class EDSR(SRNetwork):
    """EDSR (Lim et al. 2017): residual blocks without batch normalisation.

    Parameters
    ----------
    scale : int, optional
        Upsampling factor.
    n_blocks : int, optional
        Number of residual blocks.
    channels : int, optional
        Feature channels.
    res_scale : float, optional
        Residual scaling inside the blocks (0.1 for the large EDSR).
    global_residual : {'bicubic', 'bilinear', None}, optional
        Interpolation added to the output.
    """

    architecture = "edsr"
    PRESETS = {
        "small": {"n_blocks": 8, "channels": 64},
        "paper": {"n_blocks": 16, "channels": 64},
    }

    def __init__(self, *, scale: int = 2, n_blocks: int = 16, channels: int = 64,
                 res_scale: float = 1.0, global_residual: str | None = "bicubic"):
        super().__init__(scale=scale, global_residual=global_residual)
        self._set_config(scale=scale, n_blocks=n_blocks, channels=channels,
                         res_scale=res_scale, global_residual=global_residual)
        self.head = conv3x3(1, channels)
        blocks = [ResidualBlock(channels, res_scale=res_scale) for _ in range(n_blocks)]
        self.body = Residual(nn.Sequential(*blocks, conv3x3(channels, channels)))
        self.upsampler = Upsampler(channels, scale)
        self.tail = conv3x3(channels, 1)
        self._damp(self.tail)


@registry.register_architecture("srresnet")
class SRResNet(SRNetwork):
    """SRResNet (Ledig et al. 2017): residual blocks with batch norm and PReLU.

    Parameters
    ----------
    scale : int, optional
        Upsampling factor.
    n_blocks : int, optional
        Number of residual blocks.
    channels : int, optional
        Feature channels.
    global_residual : {'bicubic', 'bilinear', None}, optional
        Interpolation added to the output.
    """

    architecture = "srresnet"
    PRESETS = {
        "small": {"n_blocks": 8, "channels": 48},
        "paper": {"n_blocks": 16, "channels": 64},
    }

    def __init__(self, *, scale: int = 2, n_blocks: int = 16, channels: int = 64,
                 global_residual: str | None = "bicubic"):
        super().__init__(scale=scale, global_residual=global_residual)
        self._set_config(scale=scale, n_blocks=n_blocks, channels=channels,
                         global_residual=global_residual)
        self.head = nn.Sequential(conv(1, channels, 9), make_activation("prelu", channels))
        blocks = [ResidualBlock(channels, batch_norm=True, activation="prelu")
                  for _ in range(n_blocks)]
        self.body = Residual(nn.Sequential(
            *blocks, conv3x3(channels, channels, bias=False), nn.BatchNorm2d(channels)
        ))
        self.upsampler = Upsampler(channels, scale, activation="prelu")
        self.tail = conv(channels, 1, 9)
        self._damp(self.tail)


@registry.register_architecture("rcan")
class RCAN(SRNetwork):
    """RCAN (Zhang et al. 2018): residual groups of residual channel-attention blocks.

    Parameters
    ----------
    scale : int, optional
        Upsampling factor.
    n_groups : int, optional
        Number of residual groups.
    n_blocks : int, optional
        RCABs per group.
    channels : int, optional
        Feature channels.
    reduction : int, optional
        Channel reduction inside the channel attention.
    res_scale : float, optional
        Residual scaling inside the RCABs.
    global_residual : {'bicubic', 'bilinear', None}, optional
        Interpolation added to the output.
    """

    architecture = "rcan"
    PRESETS = {
        "small": {"n_groups": 3, "n_blocks": 3, "channels": 48, "reduction": 8},
        "paper": {"n_groups": 10, "n_blocks": 20, "channels": 64, "reduction": 16},
    }

    def __init__(self, *, scale: int = 2, n_groups: int = 10, n_blocks: int = 20,
                 channels: int = 64, reduction: int = 16, res_scale: float = 1.0,
                 global_residual: str | None = "bicubic"):
        super().__init__(scale=scale, global_residual=global_residual)
        self._set_config(scale=scale, n_groups=n_groups, n_blocks=n_blocks, channels=channels,
                         reduction=reduction, res_scale=res_scale,
                         global_residual=global_residual)
        self.head = conv3x3(1, channels)
        groups = [ResidualGroup(channels, n_blocks, reduction=reduction, res_scale=res_scale)
                  for _ in range(n_groups)]
        self.body = Residual(nn.Sequential(*groups, conv3x3(channels, channels)))
        self.upsampler = Upsampler(channels, scale)
        self.tail = conv3x3(channels, 1)
        self._damp(self.tail)


class _DenseFeatureFusion(nn.Module):
    """RDN's global feature fusion: run blocks in turn, fuse all their outputs."""

    def __init__(self, blocks: list[nn.Module], channels: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.fusion = nn.Sequential(
            nn.Conv2d(len(blocks) * channels, channels, 1), conv3x3(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return self.fusion(torch.cat(outputs, dim=1))


@registry.register_architecture("rdn")
class RDN(SRNetwork):
    """RDN (Zhang et al. 2018): residual dense blocks and global feature fusion.

    Parameters
    ----------
    scale : int, optional
        Upsampling factor.
    n_blocks : int, optional
        Number of residual dense blocks (``D``).
    n_layers : int, optional
        Dense layers per block (``C``).
    growth : int, optional
        Growth rate of the dense layers (``G``).
    channels : int, optional
        Feature channels between blocks (``G0``).
    global_residual : {'bicubic', 'bilinear', None}, optional
        Interpolation added to the output.
    """

    architecture = "rdn"
    PRESETS = {
        "small": {"n_blocks": 6, "n_layers": 4, "growth": 32, "channels": 32},
        "paper": {"n_blocks": 16, "n_layers": 8, "growth": 64, "channels": 64},
    }

    def __init__(self, *, scale: int = 2, n_blocks: int = 16, n_layers: int = 8,
                 growth: int = 64, channels: int = 64, global_residual: str | None = "bicubic"):
        super().__init__(scale=scale, global_residual=global_residual)
        self._set_config(scale=scale, n_blocks=n_blocks, n_layers=n_layers, growth=growth,
                         channels=channels, global_residual=global_residual)
        self.head = conv3x3(1, channels)  # shallow feature F_-1, skipped over the body
        blocks = [ResidualDenseBlock(channels, growth, n_layers) for _ in range(n_blocks)]
        self.body = Residual(nn.Sequential(
            conv3x3(channels, channels), _DenseFeatureFusion(blocks, channels)
        ))
        self.upsampler = Upsampler(channels, scale)
        self.tail = conv3x3(channels, 1)
        self._damp(self.tail)


@registry.register_architecture("fsrcnn")
class FSRCNN(SRNetwork):
    """FSRCNN (Dong et al. 2016): extract, shrink, map, expand, then deconvolve.

    Parameters
    ----------
    scale : int, optional
        Upsampling factor.
    channels : int, optional
        Feature channels ``d``.
    shrink_channels : int, optional
        Channels of the mapping layers ``s``.
    n_mapping : int, optional
        Number of 3x3 mapping layers ``m``.
    global_residual : {'bicubic', 'bilinear', None}, optional
        Interpolation added to the output.
    """

    architecture = "fsrcnn"
    PRESETS = {
        "small": {"channels": 128, "shrink_channels": 64, "n_mapping": 6},
        "paper": {"channels": 56, "shrink_channels": 12, "n_mapping": 4},
    }

    def __init__(self, *, scale: int = 2, channels: int = 56, shrink_channels: int = 12,
                 n_mapping: int = 4, global_residual: str | None = "bicubic"):
        super().__init__(scale=scale, global_residual=global_residual)
        self._set_config(scale=scale, channels=channels, shrink_channels=shrink_channels,
                         n_mapping=n_mapping, global_residual=global_residual)
        d, s = channels, shrink_channels
        self.head = nn.Sequential(conv(1, d, 5), make_activation("prelu", d))
        mapping = []
        for _ in range(n_mapping):
            mapping += [conv3x3(s, s), make_activation("prelu", s)]
        self.body = nn.Sequential(
            nn.Conv2d(d, s, 1), make_activation("prelu", s),
            *mapping,
            nn.Conv2d(s, d, 1), make_activation("prelu", d),
        )
        # FSRCNN's own upsampler: a 9x9 transposed convolution of stride `scale`,
        # padded so that the output is exactly scale * H.
        self.upsampler = nn.ConvTranspose2d(
            d, 1, 9, stride=scale, padding=4, output_padding=scale - 1
        )
        self.tail = nn.Identity()
        self._damp(self.upsampler)


class Interpolation(ConfiguredModule):
    """Parameter-free interpolation baseline with the interface of the SR networks.

    Parameters
    ----------
    mode : {'bicubic', 'bilinear'}
        Interpolation (torch's, pixel centres aligned; bicubic uses ``a = -0.75``).
    scale : int
        Upsampling factor.
    """

    task = "sr"

    def __init__(self, mode: str = "bicubic", scale: int = 2):
        super().__init__()
        if mode not in INTERPOLATION_MODES:
            raise ValueError(f"unknown interpolation mode {mode!r}; use one of "
                             f"{INTERPOLATION_MODES}")
        upsampling_stages(scale)
        self.architecture = mode
        self.mode = mode
        self.scale = scale
        self._set_config(scale=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x)
        return upsample(x, self.scale, self.mode)


def _baseline_builder(mode: str):
    """A registry entry for one interpolation mode (the mode is the architecture name)."""

    def build(*, scale: int = 2) -> Interpolation:
        return Interpolation(mode, scale=scale)

    build.__qualname__ = build.__name__ = f"Interpolation_{mode}"
    build.__doc__ = f"The parameter-free {mode} interpolation baseline."
    return build


for _mode in INTERPOLATION_MODES:
    registry.register_architecture(_mode)(_baseline_builder(_mode))
del _mode

#: Names of the residual SR architectures, as accepted by `build_sr_model`.
SR_ARCHITECTURES = tuple(cls.architecture for cls in (RCAN, RDN, SRResNet, EDSR, FSRCNN))

#: Optional SR architectures with an extra dependency, imported on first use.
OPTIONAL_ARCHITECTURES = ("efsrcnn",)

#: Every name `build_sr_model` accepts.
_SR_NAMES = SR_ARCHITECTURES + OPTIONAL_ARCHITECTURES + BASELINES


def build_sr_model(name: str, *, scale: int = 2, preset: str = "small",
                   **overrides) -> nn.Module:
    """Build a super-resolution network (or interpolation baseline) by name.

    Parameters
    ----------
    name : str
        One of `SR_ARCHITECTURES` (``'rcan'``, ``'rdn'``, ``'srresnet'``, ``'edsr'``,
        ``'fsrcnn'``), ``'efsrcnn'`` (needs escnn) or a baseline in `BASELINES`
        (``'bilinear'``, ``'bicubic'``).
    scale : int, optional
        Upsampling factor (2 or 4; 3 also works).
    preset : {'small', 'paper'}, optional
        ``'small'``: CPU-sized default; ``'paper'``: the published size.
    **overrides
        Constructor arguments that replace the preset's (e.g. ``channels=32``).

    Returns
    -------
    torch.nn.Module
        Maps ``(B, 1, H, W)`` to ``(B, 1, scale*H, scale*W)``; ``model.config`` is a
        JSON-ready dict from which `model_from_config` rebuilds it.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    name = name.lower()
    if name in BASELINES:
        if overrides:
            raise ValueError(f"the {name!r} baseline takes no options, got {sorted(overrides)}")
        return Interpolation(name, scale=scale)
    if name not in _SR_NAMES:
        raise ValueError(f"unknown SR architecture {name!r}; choose from "
                         f"{', '.join(_SR_NAMES)} (other networks: lensenhance.nn.build_model)")
    cls = registry.get_architecture(name)
    if preset not in cls.PRESETS:
        raise ValueError(f"unknown preset {preset!r} for {name!r}; choose from "
                         f"{', '.join(cls.PRESETS)}")
    return cls(scale=scale, **{**cls.PRESETS[preset], **overrides})
