"""Checks of options shared by every layer, with errors that name the option."""

import numpy as np

__all__ = ["check_int", "OptionTypeError"]


class OptionTypeError(TypeError, ValueError):
    """An option of the wrong type: a TypeError, and a ValueError for the callers that
    catch bad option values as one (as numpy's AxisError is both)."""


def check_int(value, name: str, minimum: int = 1, *, maximum: int | None = None,
              integral_floats: bool = False, note: str = "") -> int:
    """``value`` as an int, or a ValueError naming ``name``: the one integer check.

    Bools and strings are refused; floats too, unless ``integral_floats`` (then 2.0 is
    2, 2.5 is refused). ``note`` is appended to the message (why the bounds).
    """
    ok_type = isinstance(value, (int, np.integer)) or (
        integral_floats and isinstance(value, (float, np.floating)) and np.isfinite(value)
        and value == int(value))
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    if isinstance(value, (bool, np.bool_)) or not ok_type:
        raise OptionTypeError(f"{name} must be an integer {bounds}{note}, got "
                              f"{type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {bounds}{note}, got {value!r}")
    return int(value)
