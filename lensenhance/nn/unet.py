"""The denoising UNet of the diffusion models: diffusers' `UNet2DModel` with a config.

`DiffusionUNet` maps ``(x_t, t)`` to the schedule's parameterisation, with an optional
class label (``n_classes`` classes plus a null class for classifier-free guidance) and an
optional conditioning image stacked onto the input channels (the conditional models of
super-resolution and denoising). Attention runs only at the coarsest resolutions, where it
is cheap on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DiffusionUNet"]


class DiffusionUNet(nn.Module):
    """A class- and image-conditional UNet for diffusion (wraps diffusers' UNet2DModel).

    Parameters
    ----------
    sample_size : int
        Side of the training images (the network is convolutional; other sizes divisible
        by ``2**(len(channels) - 1)`` work).
    channels : sequence of int
        Feature channels per resolution level (each level halves the image).
    attention_levels : sequence of int
        Indices of the levels with self-attention.
    layers_per_block : int
        Residual blocks per level.
    n_classes : int
        Number of classes; 0 for an unconditional model. Label ``n_classes`` is the null
        class used by classifier-free guidance.
    out_channels : int
        Output channels (the diffused image's channels).
    cond_channels : int
        Channels of a conditioning image concatenated to the input (0: none).
    norm_groups : int
        Group-norm groups.
    attention_head_dim : int
    """

    architecture = "unet"

    def __init__(self, *, sample_size: int = 64, channels=(16, 32, 64, 96),
                 attention_levels=(2,), layers_per_block: int = 1, n_classes: int = 0,
                 out_channels: int = 1, cond_channels: int = 0, norm_groups: int = 8,
                 attention_head_dim: int = 32):
        super().__init__()
        from diffusers import UNet2DModel

        channels = [int(c) for c in channels]
        attention_levels = sorted(int(a) for a in attention_levels)
        if any(not 0 <= a < len(channels) for a in attention_levels):
            raise ValueError(f"attention_levels {attention_levels} outside 0..{len(channels) - 1}")
        self.config = {"architecture": self.architecture, "sample_size": int(sample_size),
                       "channels": channels, "attention_levels": attention_levels,
                       "layers_per_block": int(layers_per_block), "n_classes": int(n_classes),
                       "out_channels": int(out_channels), "cond_channels": int(cond_channels),
                       "norm_groups": int(norm_groups),
                       "attention_head_dim": int(attention_head_dim)}
        down = ["AttnDownBlock2D" if i in attention_levels else "DownBlock2D"
                for i in range(len(channels))]
        up = ["AttnUpBlock2D" if i in attention_levels else "UpBlock2D"
              for i in reversed(range(len(channels)))]
        self.unet = UNet2DModel(
            sample_size=sample_size, in_channels=out_channels + cond_channels,
            out_channels=out_channels, block_out_channels=tuple(channels),
            down_block_types=tuple(down), up_block_types=tuple(up),
            layers_per_block=layers_per_block, norm_num_groups=norm_groups,
            attention_head_dim=attention_head_dim,
            num_class_embeds=n_classes + 1 if n_classes else None)

    @property
    def null_label(self) -> int | None:
        """The label of "no class" (classifier-free guidance), or None if unconditional."""
        return self.config["n_classes"] or None

    @property
    def divisor(self) -> int:
        """Image sides must be multiples of this."""
        return 2 ** (len(self.config["channels"]) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, *, class_labels=None,
                cond=None) -> torch.Tensor:
        """The network output at noisy images ``x`` ``(B, C, y, x)`` and steps ``t`` ``(B,)``."""
        if self.config["cond_channels"]:
            if cond is None:
                raise ValueError("this UNet needs a conditioning image (cond=)")
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        if self.config["n_classes"]:
            if class_labels is None:  # unconditional: the null class
                class_labels = torch.full((x.shape[0],), self.null_label, device=x.device)
            class_labels = class_labels.to(x.device).long()
        else:
            class_labels = None
        return self.unet(x, t, class_labels=class_labels).sample

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        c = self.config
        return (f"DiffusionUNet(sample_size={c['sample_size']}, channels={c['channels']}, "
                f"attention_levels={c['attention_levels']}, n_classes={c['n_classes']}, "
                f"cond_channels={c['cond_channels']}, parameters={n / 1e6:.3g}M)")
