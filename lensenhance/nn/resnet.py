"""A small ResNet for single-channel lensing images: regression or classification heads.

torchvision does not import beside the supported torch builds, so the few layers needed
are written here: a stem, four stages of basic residual blocks, global average pooling and
a linear head. Used by the ``sr`` benchmark's downstream regression of the Einstein radius.
"""

import torch
from torch import nn

__all__ = ["SmallResNet", "Features"]


class _BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else \
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                          nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet-style network mapping ``(batch, 1, y, x)`` images to ``(batch, n_outputs)``.

    Parameters
    ----------
    n_outputs : int
        1 for a scalar regression (e.g. the Einstein radius), the number of classes for
        classification (logits).
    width : int
        Channels of the first stage; each later stage doubles them.
    blocks : tuple of int
        Residual blocks per stage.
    """

    def __init__(self, n_outputs=1, *, width=16, blocks=(1, 1, 1, 1)):
        super().__init__()
        self.config = {"architecture": "smallresnet", "n_outputs": n_outputs, "width": width,
                       "blocks": list(blocks)}
        self.stem = nn.Sequential(nn.Conv2d(1, width, 5, 2, 2, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages = []
        channels = width
        for index, count in enumerate(blocks):
            out_channels = width * 2**index
            for block in range(count):
                stride = 2 if (block == 0 and index > 0) else 1
                stages.append(_BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, n_outputs)

    def features(self, x):
        """Globally pooled features, ``(batch, channels)``: the space of feature distances."""
        return self.stages(self.stem(x)).mean(dim=(-2, -1))

    def forward(self, x):
        return self.head(self.features(x))


class Features(nn.Module):
    """The pooled features of a `SmallResNet`, as a module: the frozen network of a feature
    (content) loss, comparing what a lensing-aware network sees in two images."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)
