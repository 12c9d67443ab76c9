"""D4 self-ensemble: average a network over the 8 rotations and flips of the square.

Lensing images have no preferred orientation. Averaging ``g^-1 f(g x)`` over the
dihedral group D4 (four 90-degree rotations, each with and without a flip) turns
any network ``f`` into one that is exactly equivariant to those transforms, at
eight times the cost of one forward pass.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["D4", "d4_transform", "d4_inverse", "d4_self_ensemble", "SelfEnsemble"]

#: The 8 elements of D4 as ``(k, flip)``: flip the last axis (if ``flip``), then
#: rotate by ``k`` quarter turns in the image plane.
D4 = tuple((k, flip) for flip in (False, True) for k in range(4))


def d4_transform(x, k: int, flip: bool):
    """Apply the D4 element ``(k, flip)`` to the last two axes of ``x``.

    The one D4 of the package: the self-ensemble here, and the rotation/flip
    augmentation of every training set. ``x`` is a `torch.Tensor` or a numpy array (a
    view is returned for an array).
    """
    if isinstance(x, np.ndarray):
        return np.rot90(x[..., ::-1] if flip else x, k, axes=(-2, -1))
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1))


def d4_inverse(x, k: int, flip: bool):
    """Undo `d4_transform` with the same ``(k, flip)``."""
    if isinstance(x, np.ndarray):
        x = np.rot90(x, -k, axes=(-2, -1))
        return x[..., ::-1] if flip else x
    x = torch.rot90(x, -k, dims=(-2, -1))
    if flip:
        x = torch.flip(x, dims=(-1,))
    return x


def d4_self_ensemble(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Average ``model`` over the 8 rotations/flips of its input.

    Parameters
    ----------
    model : callable
        Maps ``(B, C, H, W)`` to ``(B, C', sH, sW)`` for any ``H, W`` (fully
        convolutional), e.g. any network of `lensenhance.nn.sr`.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``; need not be square.

    Returns
    -------
    torch.Tensor
        ``mean_g g^-1(model(g x))``, exactly equivariant to D4 (to float rounding).
    """
    if x.ndim < 2:
        raise ValueError(f"expected an image tensor (..., y, x), got shape {tuple(x.shape)}")
    # One transform at a time: peak memory stays that of a single forward pass.
    total = None
    for k, flip in D4:
        out = d4_inverse(model(d4_transform(x, k, flip)), k, flip)
        total = out if total is None else total + out
    return total / len(D4)


class SelfEnsemble(nn.Module):
    """Wrap a network so that its forward pass is the D4 self-ensemble.

    Parameters
    ----------
    model : torch.nn.Module
        The wrapped network (its weights are shared, not copied).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    @property
    def config(self) -> dict | None:
        """The wrapped model's config (the ensemble adds no parameters)."""
        return getattr(self.model, "config", None)

    @property
    def scale(self):
        """The wrapped model's upsampling factor."""
        return getattr(self.model, "scale", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return d4_self_ensemble(self.model, x)

    def __repr__(self) -> str:
        return f"SelfEnsemble({self.model!r})"
