"""What happens to pixel values when an image is enhanced: bad pixels and split flux.

`fill_bad_pixels` gives the network a value at every bad pixel (NaN, masked, outliers)
from its neighbourhood; the output masks them again. `flux_split_factor` says how values
change when each pixel is split into ``scale**2`` pixels, from the image's unit.
"""

import re
import warnings

import numpy as np
from astropy import units as u
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["fill_bad_pixels", "flux_split_factor"]


def flux_split_factor(unit, scale, *, name="image"):
    """The factor applied to values when each pixel is split into ``scale**2`` pixels.

    Flux per pixel (counts, electrons, ADU, Jy, electron/s, dimensionless) is shared out:
    ``1 / scale**2``. Surface brightness (per steradian, per square arcsecond, per beam),
    surface densities (per pc^2) and temperatures do not depend on the pixel size: 1.
    Magnitudes and dex are refused: they are logarithmic, and a network trained on linear
    fluxes cannot enhance them.

    Parameters
    ----------
    unit : astropy unit or None
    scale : int
    name : str, optional
        Names the image in messages.

    Raises
    ------
    ValueError
        For magnitudes and dex (also unparsed names such as ``ABmag`` or ``MAG``).

    Warns
    -----
    AstropyUserWarning
        For a unit astropy does not know, when ``scale > 1``: it is taken as flux per
        pixel.

    Examples
    --------
    >>> import astropy.units as u
    >>> flux_split_factor(u.electron / u.s, 2), flux_split_factor(u.MJy / u.sr, 2)
    (0.25, 1.0)
    """
    if unit is None:
        return 1.0 / scale**2
    logarithmic = (isinstance(unit, u.FunctionUnitBase)
                   or any(base in (u.mag, u.dex) for base in getattr(unit, "bases", [])))
    if isinstance(unit, u.UnrecognizedUnit):
        # astropy's parser does not know ABmag, STmag, MAG or magnitude as BUNIT values.
        logarithmic = _LOGARITHMIC_NAME.search(unit.name) is not None
        if not logarithmic:
            if scale > 1:
                warnings.warn(f"{name}: the unit {unit.name!r} is not one astropy knows; "
                              "taking the values as flux per pixel, divided among the new "
                              "pixels", AstropyUserWarning, stacklevel=3)
            return 1.0 / scale**2
    if logarithmic:
        raise ValueError(f"{name}: values in magnitudes or dex ({unit}) are logarithmic; "
                         "convert them to flux before enhancing")
    unit = u.Unit(unit)
    if unit.physical_type == "temperature":
        return 1.0
    for base, power in zip(unit.bases, unit.powers):
        if power < 0 and (base == u.beam or base.physical_type in ("angle", "solid angle")
                          or _is_astronomical_length(base)):
            return 1.0
    return 1.0 / scale**2


# Magnitude-like names astropy's parser leaves unrecognised (ABmag, STmag, MAG, mags,
# magnitude, ABmag/arcsec2), but not words that merely contain "mag" (magnetic).
_LOGARITHMIC_NAME = re.compile(r"(?i)(?:^|[^a-z])(?:[a-z]{0,2}mag(?:nitude)?s?|dex)(?:$|[^a-z])")


def _is_astronomical_length(base):
    """pc, kpc, AU, lyr...: per such an area the values are a surface density (L_sun/pc2).

    A laboratory area (erg / s / cm2) is the telescope's collecting area: still a flux.
    """
    return base.physical_type == "length" and base.si.scale >= u.AU.si.scale


def fill_bad_pixels(image, bad, *, kernel_sigma=1.0, max_passes=50):
    """Fill the bad pixels of ``image`` (NaN there) from their neighbourhood, in place.

    Each connected group of bad pixels is filled inside a small window around it by
    `astropy.convolution.interpolate_replace_nans` with a Gaussian kernel, repeated
    until the group is filled (a large group fills from its rim inwards); whatever is
    left (nothing valid nearby) gets the background level, 0 once normalised.
    """
    if not bad.any():
        return
    from astropy.convolution import Gaussian2DKernel, interpolate_replace_nans
    from scipy import ndimage

    kernel = Gaussian2DKernel(kernel_sigma)
    pad = kernel.shape[0]
    labels, _ = ndimage.label(bad)
    for box in ndimage.find_objects(labels):
        window = tuple(slice(max(0, b.start - pad), b.stop + pad) for b in box)
        sub = image[window].astype(np.float64)
        for _ in range(max_passes):
            if not np.isnan(sub).any():
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyUserWarning)
                filled = interpolate_replace_nans(sub, kernel, boundary="extend")
            if np.isnan(filled).sum() == np.isnan(sub).sum():
                break
            sub = filled
        sub[np.isnan(sub)] = 0.0
        image[window] = np.where(bad[window], sub, image[window])
    image[bad & np.isnan(image)] = 0.0
