"""Warnings and small helpers shared by the `lensenhance.io` modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning


class MissingUnitWarning(AstropyUserWarning):
    """The image has no unit (no BUNIT, no ``unit=``); it is taken as dimensionless."""


class WCSResampleWarning(AstropyWarning):
    """A part of a WCS that cannot be resampled exactly was dropped."""


def _check_readable_file(path, what="file"):
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

