"""The domain a model was trained on, and how far an input lies from it.

A shipped enhancer's card holds a ``domain``: the pixel scale (arcsec) and PSF FWHM
(arcsec) of the images it takes as input, their size (pixels per side) and the range
of their noise, the median per-pixel sigma over the normalisation scale (the inverse of
the SNR of `lensenhance.predict.posterior.PosteriorPredictor.snr_warning`), with the
tolerances that `check_domain` applies. The Enhancer measures the same quantities on
each input and warns (`DomainWarning`, the output header's ``LEWARN`` cards and a
catalog run's ``warning`` column) where they differ by more than the card allows.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["DomainWarning", "DEFAULT_TOLERANCE", "PSF_KEYWORDS", "check_domain",
           "pixel_scale_of", "psf_fwhm_of"]

#: Allowed ratios (larger / smaller) when a card gives none.
DEFAULT_TOLERANCE = {"pixel_scale": 1.25, "psf_fwhm": 1.5, "noise": 1.5}

#: Header keywords holding the PSF FWHM in arcsec, most specific first.
PSF_KEYWORDS = ("PSF_FWHM", "PSFFWHM", "SEEING")


class DomainWarning(AstropyUserWarning):
    """An input lies outside the domain (pixel scale, PSF, noise) a model was trained on."""


def pixel_scale_of(wcs):
    """The pixel scale of a celestial WCS in arcsec (the mean of the two axes), or None."""
    if wcs is None or not getattr(wcs, "has_celestial", False):
        return None
    from astropy.wcs.utils import proj_plane_pixel_scales

    scales = proj_plane_pixel_scales(wcs.celestial)  # degrees for a celestial WCS
    value = float(np.mean(scales)) * 3600.0
    return value if math.isfinite(value) and value > 0 else None


def psf_fwhm_of(meta):
    """The PSF FWHM in arcsec from a header's `PSF_KEYWORDS`, or None."""
    if not meta:
        return None
    for key in PSF_KEYWORDS:
        value = meta.get(key)
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
                and math.isfinite(value) and value > 0:
            return float(value)
    return None


def _differs(value, reference, tolerance):
    return value / reference > tolerance or reference / value > tolerance


def check_domain(domain, *, pixel_scale=None, psf_fwhm=None, noise=None, shape=None):
    """Messages for each measured quantity that lies outside a model's domain.

    Parameters
    ----------
    domain : dict or None
        A card's ``domain`` (None: nothing is checked).
    pixel_scale, psf_fwhm : float, optional
        The input's, in arcsec (None: unknown, not checked).
    noise : float, optional
        The input's median sigma over its normalisation scale.
    shape : tuple of int, optional
        The input's shape: an image smaller than the model's receptive field is named.

    Returns
    -------
    list of str
        Short messages (they go into header cards), e.g.
        ``'pixel scale 0.2" differs from the model\\'s 0.05"'``.

    Examples
    --------
    >>> check_domain({"pixel_scale": 0.05}, pixel_scale=0.2)
    ['pixel scale 0.2" differs from the model\\'s 0.05"']
    """
    if not domain:
        return []
    if not isinstance(domain, dict):
        raise TypeError(f"domain must be a dict, got {type(domain).__name__}")
    tolerance = {**DEFAULT_TOLERANCE, **(domain.get("tolerance") or {})}
    messages = []
    for key, label, value in (("pixel_scale", "pixel scale", pixel_scale),
                              ("psf_fwhm", "PSF FWHM", psf_fwhm)):
        reference = domain.get(key)
        if value is not None and reference and _differs(value, reference, tolerance[key]):
            messages.append(f'{label} {value:.3g}" differs from the model\'s {reference:.3g}"')
    noise_range = domain.get("noise_range")
    if noise is not None and noise_range and noise > 0:
        low, high = noise_range
        if noise < low / tolerance["noise"] or noise > high * tolerance["noise"]:
            messages.append(f"noise {noise:.3g} outside the model's {low:.3g}-{high:.3g} "
                            "(sigma/scale)")
    size = domain.get("image_size")
    if shape is not None and size and min(shape) < size / 4:
        messages.append(f"image {shape[0]}x{shape[1]} much smaller than the model's "
                        f"{size}x{size}")
    return messages
