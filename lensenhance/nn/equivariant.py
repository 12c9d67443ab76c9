"""A D4-equivariant FSRCNN built with escnn (optional dependency).

Where `lensenhance.nn.ensemble` makes any network equivariant by averaging over the
8 rotations/flips at inference, this network is equivariant by construction: its
feature maps are regular fields of the dihedral group D4 (``flipRot2dOnR2(N=4)``)
and every convolution is steerable, so one forward pass gives the symmetric answer.

Layout (FSRCNN with regular fields; ``d = 8 * fields`` channels):
feature extraction 5x5 -> shrink 1x1 -> ``n_mapping`` x 3x3 -> expand 1x1 ->
bilinear upsampling of the fields -> 5x5 steerable convolution to one scalar field.
The bilinear upsampling + convolution replaces FSRCNN's strided transposed
convolution, whose stride breaks the exact symmetry of the pixel grid. The global
residual (interpolation of the input) is added as in every `SRNetwork`.

escnn is imported on first use: ``pip install escnn``.
"""

from __future__ import annotations

import torch
from torch import nn

# The SR skeleton comes from base, not sr: sr finds this module through the registry's
# lazy entry, so neither imports the other.
from .base import SRNetwork, check_image_batch
from .blocks import upsample
from .registry import register_architecture

__all__ = ["EquivariantFSRCNN", "import_escnn"]

_INSTALL_HINT = (
    "the equivariant FSRCNN needs the optional package escnn: "
    "pip install escnn (or pip install 'lensenhance[all]')"
)


def import_escnn():
    """Return ``(escnn.gspaces, escnn.nn)``, or raise ImportError with an install hint."""
    try:
        from escnn import gspaces
        from escnn import nn as enn
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return gspaces, enn


@register_architecture("efsrcnn")
class EquivariantFSRCNN(SRNetwork):
    """FSRCNN whose convolutions are steerable under D4 (escnn).

    Parameters
    ----------
    scale : int, optional
        Upsampling factor.
    fields : int, optional
        Regular D4 fields of the feature layers (8 channels each).
    shrink_fields : int, optional
        Regular D4 fields of the mapping layers.
    n_mapping : int, optional
        Number of 3x3 mapping layers.
    global_residual : {'bicubic', 'bilinear', None}, optional
        Interpolation added to the output.

    Raises
    ------
    ImportError
        If escnn is not installed.
    """

    architecture = "efsrcnn"
    PRESETS = {
        "small": {"fields": 16, "shrink_fields": 8, "n_mapping": 4},
        # FSRCNN's d=56, s=12 rounded to whole regular fields (56 and 16 channels)
        "paper": {"fields": 7, "shrink_fields": 2, "n_mapping": 4},
    }

    def __init__(self, *, scale: int = 2, fields: int = 7, shrink_fields: int = 2,
                 n_mapping: int = 4, global_residual: str | None = "bicubic"):
        gspaces, enn = import_escnn()
        super().__init__(scale=scale, global_residual=global_residual)
        self._set_config(scale=scale, fields=fields, shrink_fields=shrink_fields,
                         n_mapping=n_mapping, global_residual=global_residual)
        gspace = gspaces.flipRot2dOnR2(N=4)
        scalar = enn.FieldType(gspace, [gspace.trivial_repr])
        wide = enn.FieldType(gspace, fields * [gspace.regular_repr])
        narrow = enn.FieldType(gspace, shrink_fields * [gspace.regular_repr])
        self.in_type = scalar
        self.head = enn.SequentialModule(
            enn.R2Conv(scalar, wide, 5, padding=2), enn.ReLU(wide, inplace=True)
        )
        mapping = []
        for _ in range(n_mapping):
            mapping += [enn.R2Conv(narrow, narrow, 3, padding=1), enn.ReLU(narrow, inplace=True)]
        self.body = enn.SequentialModule(
            enn.R2Conv(wide, narrow, 1), enn.ReLU(narrow, inplace=True),
            *mapping,
            enn.R2Conv(narrow, wide, 1), enn.ReLU(wide, inplace=True),
        )
        output = enn.R2Conv(wide, scalar, 5, padding=2)
        self.upsampler = enn.SequentialModule(
            enn.R2Upsampling(wide, scale_factor=scale, mode="bilinear"), output
        )
        self.tail = nn.Identity()
        with torch.no_grad():
            output.weights.mul_(0.1)
        # escnn keeps expanded filters as buffers only in eval mode; entering train
        # mode drops them, so state_dicts are the same in every freshly built model.
        self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x)
        out = self.upsampler(self.body(self.head(self.in_type(x)))).tensor
        if self.global_residual is not None:
            out = out + upsample(x, self.scale, self.global_residual)
        return out
