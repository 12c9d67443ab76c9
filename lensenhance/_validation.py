"""Checks of options shared by every layer, with errors that name the option."""

import numpy as np

__all__ = ["check_int"]


def check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int, or a ValueError naming ``name`` (bools and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
