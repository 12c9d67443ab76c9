"""The prepare step of `lensenhance.Enhancer`: an image made ready for the predictor.

`prepare_image` flags the bad pixels, fits one normalisation for the whole image,
normalises, finds cosmic rays, fills what the network must not see and checks the input
against the model's domain (see the `lensenhance.enhance.enhancer` module docstring for
the rules). Every pass runs block by block over working arrays that a large image keeps
on disk (`lensenhance.predict.scratch`), so the memory it takes does not grow with the
image; an image of at most one block (1024^2) is handled in one piece.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning

from ..predict.domain import DomainWarning, check_domain, pixel_scale_of, psf_fwhm_of
from ..predict.normalization import FIT_PIXELS, OUTLIER_MARGIN, fit_image_normalization
from ..predict.pixels import (
    cosmic_ray_noise_floor,
    detect_cosmic_rays,
    fill_bad_pixels,
    fill_uncertainty,
    source_footprint,
)
from ..predict.scratch import (
    group_boxes,
    iter_blocks,
    release_heap,
    release_mapped_pages,
    scratch_array,
    subgrid,
)

__all__ = ["Prepared", "prepare_image"]

# Normalised values are clipped here (a 1e30 hot pixel stays finite in float32).
_BIG = 1e30
# Input pixels around a source beyond the model's range that the output interpolates too
# (the network saw their neighbours filled), and that the fit leaves out.
RANGE_MARGIN = OUTLIER_MARGIN
# Such a source's footprint ends where it falls below this many sky sigma.
_SKY_LEVEL = 3.0
# L.A.Cosmic's reach (its 7x7 filters on a 2x grid, grown over 4 iterations) is well
# within this: a block of a large image finds the cosmic rays the whole image would.
_COSMIC_HALO = 32


@dataclass
class Prepared:
    """One image, ready for the predictor."""

    ccd: CCDData
    name: str
    image: np.ndarray  # normalised, filled, float32
    sigma: np.ndarray | None  # normalised standard deviation, 0 at bad pixels
    bad: np.ndarray  # bool: NaN, masked, negative sigma, cosmic rays
    norm: object
    n_cosmic: int
    sigma_estimate: float | None = None  # data unit, when the sigma was estimated
    warnings: list = None  # short messages for LEWARN cards
    n_bright: int = 0  # pixels beyond the model's range
    n_interpolated: int = 0  # pixels where the output interpolates the input
    n_bad: int = 0  # bad pixels (``bad.sum()``, counted as they were found)
    boxes: list = None  # what _interpolation_boxes gives
    fill_sigma: np.ndarray | None = None  # normalised uncertainty of the filled values


def prepare_image(ccd, name, *, predictor, psf_fwhm, normalization, outlier_threshold,
                  cosmic_rays):
    """``ccd`` normalised and filled for ``predictor``, with what the finish step needs.

    Parameters
    ----------
    ccd : astropy.nddata.CCDData
        The input (its arrays may be memory maps; they are only read).
    name : str
        Names the image in errors and warnings.
    predictor : lensenhance.predict.predictors.Predictor
    psf_fwhm : float or None
        The PSF's FWHM in arcsec (None: the header's, else the model's domain's).
    normalization, outlier_threshold, cosmic_rays
        As for `lensenhance.Enhancer`.

    Returns
    -------
    Prepared

    Raises
    ------
    ValueError
        When no pixel can be enhanced, or a needed noise is zero or cannot be estimated.
    """
    from ..predict.posterior import estimate_sigma

    data = ccd.data
    shape = data.shape
    uncertainty = None
    if isinstance(ccd.uncertainty, StdDevUncertainty):
        uncertainty = ccd.uncertainty.array  # represent_as would hide a negative sigma
    elif ccd.uncertainty is not None:
        uncertainty = ccd.uncertainty.represent_as(StdDevUncertainty).array
    inputs = (data, ccd.mask, uncertainty)
    bad = scratch_array(shape, bool)
    any_good, n_bad = False, 0
    for _, block, _ in iter_blocks(shape):
        flagged = ~np.isfinite(data[block])
        if ccd.mask is not None:
            flagged |= np.asarray(ccd.mask[block], dtype=bool)
        if uncertainty is not None:
            sig = uncertainty[block]
            flagged |= ~(np.isfinite(sig) & (sig >= 0))
        bad[block] = flagged
        any_good = any_good or not flagged.all()
        n_bad += int(flagged.sum())
        release_mapped_pages(bad, *inputs)
    if not any_good:
        raise ValueError(_no_good_pixel(name, data, ccd.mask, uncertainty))
    # The training sets' rule, on the pixels they would see (cosmic rays are found
    # below, on the normalised image; the fit leaves such outliers out itself).
    pixel_scale = pixel_scale_of(ccd.wcs)
    psf_fwhm = psf_fwhm if psf_fwhm is not None else psf_fwhm_of(ccd.meta)
    domain = predictor.domain or {}
    psf_pixels = _psf_pixels(psf_fwhm, pixel_scale, domain)
    norm = fit_image_normalization(data, bad, method=normalization,
                                   outlier_threshold=outlier_threshold,
                                   margin=RANGE_MARGIN, psf_fwhm=psf_pixels)
    release_mapped_pages(bad, *inputs)
    # the noise checks look at a sub-grid of the same size as the fit's
    step = max(1, math.ceil(math.sqrt(data.size / FIT_PIXELS)))

    def grid(array):  # the sub-grid, read in bounded memory
        return subgrid(array, step)

    image = scratch_array(shape, np.float32)
    sigma = None if uncertainty is None else scratch_array(shape, np.float32)
    for _, block, _ in iter_blocks(shape):
        flagged = bad[block]
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.clip(norm.apply(np.asarray(data[block], dtype=np.float64)),
                             -_BIG, _BIG)  # before any cast
        image[block] = np.where(flagged, np.nan, values)
        if sigma is not None:
            sigma[block] = np.where(flagged, 0.0,
                                    np.asarray(uncertainty[block], np.float64) / norm.scale)
        release_mapped_pages(image, sigma, bad, *inputs)
    if sigma is not None and predictor.needs_sigma and not _any_positive(sigma, bad):
        raise ValueError(f"{name}: the uncertainty is zero at every good pixel; give "
                         "the image's real noise, or none to have it estimated")
    # One sky noise for every pixel, from the normalised image's good pixels: the
    # network's sigma when it needs one, and the noise of the checks below.
    sky = estimate_sigma(grid(image), mask=grid(bad))
    release_heap()
    n_cosmic = 0
    if cosmic_rays and sky > 0:
        n_cosmic = _remove_cosmic_rays(image, sigma, bad, sky, psf_pixels or 1.0, grid)
    fill_bad_pixels(image, bad)
    # Values beyond the model's range are data. The network does not see their
    # source at all, down to the sky (a star's wings or a disc filled at the range's
    # edge would move its output for many pixels around): it gets the source's
    # surroundings there, and the output takes a flux-conserving interpolation of the
    # input over the source and a margin.
    bright = scratch_array(shape, bool)
    n_bright = 0
    if outlier_threshold is not None:
        for _, block, _ in iter_blocks(shape):
            with np.errstate(invalid="ignore"):
                found = ~bad[block] & (np.abs(image[block]) > outlier_threshold)
            bright[block] = found
            n_bright += int(found.sum())
            release_mapped_pages(bright, bad, image)
    boxes, n_interpolated = [], 0
    if n_bright:
        hidden = source_footprint(image, bright, floor=_SKY_LEVEL * max(float(sky), 0.0),
                                  absolute=True, out=scratch_array(shape, bool))
        for _, block, _ in iter_blocks(shape):
            hidden[block] &= ~bad[block]
            release_mapped_pages(hidden, bad)
        interpolated = _grown_mask(hidden, bad, RANGE_MARGIN)
        # before the fill below: the input's values over the source
        boxes = _interpolation_boxes(interpolated, bad, image, norm, uncertainty, sky)
        n_interpolated = sum(int(region.sum()) for _, region, _, _ in boxes)
        del interpolated
        _blank(image, hidden, np.nan)
        fill_bad_pixels(image, hidden)
        if sigma is not None:
            _blank(sigma, hidden, np.nan)
            fill_bad_pixels(sigma, hidden)  # the noise of the values the network gets
    estimate = None
    if sigma is None and predictor.needs_sigma:
        if not sky > 0:
            raise ValueError(f"{name}: cannot estimate the noise (the sky is constant); "
                             "give the image an uncertainty")
        sigma = scratch_array(shape, np.float32, fill=sky)
        estimate = sky * norm.scale
    fill_sigma = None
    if sigma is not None and n_bad + n_cosmic:
        # A filled value is uncertain by about its neighbours' spread: with that sigma
        # the draws (or the sampler) widen the output std where the fill matters.
        fill_sigma = fill_uncertainty(image, bad, sigma)
        for _, block, _ in iter_blocks(shape):
            sigma[block] = np.where(bad[block], fill_sigma[block], sigma[block])
            release_mapped_pages(sigma, bad, fill_sigma)
    messages = []
    good = ~(grid(bad) | grid(bright))
    check = getattr(predictor, "snr_warning", None)
    if sigma is not None and check is not None:
        warning = check(grid(sigma), good)
        if warning:
            warnings.warn(f"{name}: {warning} (1 / median sigma, normalised); the "
                          "output and its uncertainty may not be calibrated",
                          AstropyUserWarning, stacklevel=4)
            messages.append(warning)
    noise = float(np.median(grid(sigma)[good])) if sigma is not None and good.any() else sky
    release_mapped_pages(sigma, bad, bright)
    release_heap()
    found = check_domain(domain, pixel_scale=pixel_scale, psf_fwhm=psf_fwhm,
                         noise=noise if noise > 0 else None, shape=shape)
    if n_bright:
        found.append(f"{n_bright} px beyond the model's range (|z|>{outlier_threshold:g})"
                     ": interpolated, flux kept")
    for message in found:
        warnings.warn(f"{name}: {message}", DomainWarning, stacklevel=4)
    messages += found
    return Prepared(ccd, name, image, sigma, bad, norm, n_cosmic, sigma_estimate=estimate,
                    warnings=messages, n_bright=n_bright, n_interpolated=n_interpolated,
                    n_bad=n_bad + n_cosmic, boxes=boxes, fill_sigma=fill_sigma)


def _any_positive(sigma, bad):
    """Whether any good pixel has a positive sigma (block by block)."""
    for _, block, _ in iter_blocks(sigma.shape):
        if (sigma[block][~bad[block]] > 0).any():
            return True
    return False


def _blank(array, where, value):
    """``array[where] = value``, block by block."""
    for _, block, _ in iter_blocks(array.shape):
        sub = array[block]
        sub[where[block]] = value
        release_mapped_pages(array, where)


def _remove_cosmic_rays(image, sigma, bad, sky, psf_pixels, grid):
    """Flag the cosmic rays (`detect_cosmic_rays`, block by block): bad, NaN, sigma 0.

    The variance is at least the sky's: an uncertainty below the pixels' own scatter
    would make every noise peak sharper than the PSF.
    """
    def variance(values):
        return (np.maximum(values.astype(np.float64) ** 2, sky**2)
                if values is not None else sky**2)

    floor = cosmic_ray_noise_floor(grid(image), variance(None if sigma is None else grid(sigma)),
                                   grid(bad))
    if floor is None:
        return 0
    rays = scratch_array(image.shape, bool)
    for outer, block, inner in iter_blocks(image.shape, halo=_COSMIC_HALO):
        noise = variance(None if sigma is None else sigma[outer])
        rays[block] = detect_cosmic_rays(image[outer], noise, bad=bad[outer],
                                         psf_fwhm=psf_pixels, noise_floor=floor)[inner]
        release_mapped_pages(rays, image, sigma, bad)
    # applied once every block is done: a block's halo sees the input, as the whole would
    count = 0
    for _, block, _ in iter_blocks(image.shape):
        found = rays[block]
        count += int(found.sum())
        bad[block] |= found
        image[block] = np.where(found, np.nan, image[block])
        if sigma is not None:
            sigma[block] = np.where(found, 0.0, sigma[block])
        release_mapped_pages(rays, image, sigma, bad)
    return count


def _grown_mask(mask, bad, margin):
    """``mask`` grown by ``margin`` pixels (3x3 steps), less ``bad``, block by block."""
    from scipy import ndimage

    grown = scratch_array(mask.shape, bool)
    for outer, block, inner in iter_blocks(mask.shape, halo=margin):
        sub = np.asarray(mask[outer], bool)
        if sub.any():
            dilated = ndimage.binary_dilation(sub, np.ones((3, 3), bool), iterations=margin)
            grown[block] = dilated[inner] & ~bad[block]
        release_mapped_pages(grown, mask, bad)
    return grown


def _psf_pixels(psf_fwhm, pixel_scale, domain):
    """The PSF FWHM in input pixels, or None when unknown.

    The input's (arcsec over the WCS's pixel scale), else the model's domain's. Unknown,
    the cosmic-ray test takes one pixel (only what is sharper than any sampled PSF is a
    cosmic ray) and the normalisation seeks no star.
    """
    psf_fwhm = psf_fwhm or domain.get("psf_fwhm")
    pixel_scale = pixel_scale or domain.get("pixel_scale")
    if psf_fwhm and pixel_scale:
        return psf_fwhm / pixel_scale
    return None


def _interpolation_boxes(interpolated, bad, image, norm, uncertainty, sky):
    """What the output interpolates: per group of pixels, its window and input values.

    ``[(window, region, values, sigma)]``: the window (slices, input pixels, padded by 2
    for the bicubic), the pixels of the group in it, the input values in the data unit
    (``image``, normalised, with the network's fill at bad pixels) and their sigma (the
    uncertainty, else the sky's).
    """
    boxes = []
    for box, group in group_boxes(interpolated, connectivity=2):
        window = tuple(slice(max(0, b.start - 2), min(n, b.stop + 2))
                       for b, n in zip(box, image.shape))
        region = np.zeros(tuple(w.stop - w.start for w in window), bool)
        region[tuple(slice(b.start - w.start, b.stop - w.start)
                     for b, w in zip(box, window))] = group
        values = norm.invert(np.asarray(image[window], np.float64))
        if uncertainty is not None:
            sigma = np.where(bad[window], np.nan, np.asarray(uncertainty[window], np.float64))
        else:
            sigma = np.full(values.shape, norm.invert_std(sky))
        boxes.append((window, region, values, sigma))
    return boxes


def _no_good_pixel(name, data, mask, uncertainty):
    """Why no pixel of an image can be enhanced: every cause, with its pixel count."""
    data = np.asarray(data)
    causes = []
    if uncertainty is not None:
        sigma = np.asarray(uncertainty)
        with np.errstate(invalid="ignore"):
            negative = int((sigma < 0).sum())
        if negative:
            causes.append(f"the uncertainty is negative at {negative} of {sigma.size} "
                          "pixels (a standard deviation is >= 0: pass the standard "
                          "deviation, not a signed error)")
        if not np.isfinite(sigma).all():
            causes.append(f"the uncertainty is NaN or infinite at "
                          f"{int((~np.isfinite(sigma)).sum())} pixels")
    if not np.isfinite(data).all():
        causes.append(f"{int((~np.isfinite(data)).sum())} pixels are NaN or infinite")
    if mask is not None and np.asarray(mask, dtype=bool).any():
        causes.append(f"{int(np.asarray(mask, dtype=bool).sum())} pixels are masked")
    return f"{name}: no pixel to enhance: " + "; ".join(causes or ["every pixel is bad"])
