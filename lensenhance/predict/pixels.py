"""What happens to pixel values when an image is enhanced: bad pixels and split flux.

`detect_cosmic_rays` finds the pixels inconsistent with the PSF (cosmic rays, hot
pixels). `fill_bad_pixels` gives the network a value at every bad pixel (NaN, masked,
cosmic rays) from its neighbourhood, and `fill_uncertainty` says how wrong that value may
be; the output masks them again. `flux_conserving_upsample` interpolates what is beyond a
model's range, keeping each pixel's flux. `flux_split_factor` says how values change
when each pixel is split into ``scale**2`` pixels, from the image's unit.
`source_footprint` finds the whole source around pixels beyond a model's range (a star's
wings down to the sky), which the network must not see.
"""

import re
import warnings

import numpy as np
from astropy import units as u
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["fill_bad_pixels", "fill_uncertainty", "flux_split_factor", "detect_cosmic_rays",
           "cosmic_ray_noise_floor", "flux_conserving_upsample", "source_footprint"]


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


def fill_uncertainty(filled, bad, sigma=None, *, size=3, factor=1.0):
    """How wrong each filled value may be: the spread of the good values beside it.

    A fill (`fill_bad_pixels`) is a smooth average of the neighbourhood, and a pixel
    beside a peak may hold nearly the peak's value or nearly the valley's; the range of
    its good neighbours (``size x size``) bounds that. Given to the network as the filled
    pixels' sigma, the Monte-Carlo draws (or a posterior's sampler) widen the output's
    standard deviation wherever the fill matters; the Enhancer also runs the network with
    the fills moved by it, up and down, and widens the std to cover the change.

    Parameters
    ----------
    filled : numpy.ndarray
        The image after `fill_bad_pixels`.
    bad : numpy.ndarray of bool
        The filled pixels.
    sigma : numpy.ndarray, optional
        The noise of the good pixels, added in quadrature (its largest over the good
        neighbours).
    factor : float, optional
        Multiplies the spread.

    Returns
    -------
    numpy.ndarray, float32
        The filled pixels' sigma (0 elsewhere).
    """
    from .scratch import group_boxes, release_mapped_pages, scratch_array

    out = scratch_array(filled.shape, np.float32)
    groups = group_boxes(bad)
    if not groups:
        return out
    # Group by group (each filter reaches size // 2 pixels), so a large image needs no
    # whole-image temporaries; a group with no good neighbour at all gets the largest
    # spread around any filled pixel, known once every group is done.
    reach = size // 2
    spreads = []
    for box, region in groups:
        window, inside = _grown(box, reach, filled.shape)
        spread, noise = _fill_spread(filled[window], bad[window],
                                     None if sigma is None else sigma[window], size)
        spreads.append((window, inside, region, spread[inside][region],
                        noise[inside][region]))
        release_mapped_pages(filled, bad, sigma)
    known = [s[np.isfinite(s)] for *_, s, _ in spreads]
    widest = max((float(k.max()) for k in known if k.size), default=1.0)
    for window, inside, region, spread, noise in spreads:
        spread = np.where(np.isfinite(spread), spread, widest)
        sub = out[window][inside]
        sub[region] = np.hypot(factor * spread, noise)
        release_mapped_pages(out)
    return out


def _grown(box, pad, shape):
    """``box`` grown by ``pad`` (clipped), and ``box`` inside it."""
    window = tuple(slice(max(0, b.start - pad), min(n, b.stop + pad)) for b, n in zip(box, shape))
    inside = tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, window))
    return window, inside


def _fill_spread(filled, bad, sigma, size):
    """The range of the good values and the largest good sigma, ``size`` x ``size``."""
    from scipy import ndimage

    footprint = np.ones((size, size), bool)
    high = ndimage.maximum_filter(np.where(bad, -np.inf, filled), footprint=footprint)
    low = ndimage.minimum_filter(np.where(bad, np.inf, filled), footprint=footprint)
    with np.errstate(invalid="ignore"):
        spread = np.where(np.isfinite(high) & np.isfinite(low), high - low, np.nan)
    noise = np.zeros(filled.shape)
    if sigma is not None:
        noise = ndimage.maximum_filter(np.where(bad, 0.0, sigma), footprint=footprint)
    return spread, noise


def fill_bad_pixels(image, bad, *, kernel_sigma=1.0, max_passes=50):
    """Fill the bad pixels of ``image`` (NaN there) from their neighbourhood, in place.

    Each connected group of bad pixels is filled inside a small window around it by
    `astropy.convolution.interpolate_replace_nans` with a Gaussian kernel, repeated
    until the group is filled (a large group fills from its rim inwards); whatever is
    left (nothing valid nearby) gets the background level, 0 once normalised.
    """
    from astropy.convolution import Gaussian2DKernel, interpolate_replace_nans

    from .scratch import group_boxes, release_mapped_pages

    kernel = Gaussian2DKernel(kernel_sigma)
    pad = kernel.shape[0]
    for number, (box, _) in enumerate(group_boxes(bad)):
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
        if number % 256 == 255:
            release_mapped_pages(image, bad)
    release_mapped_pages(image, bad)


def source_footprint(image, seeds, *, floor, smooth=1.0, max_pad=512, absolute=False,
                     out=None):
    """The sources that hold ``seeds``, down to ``floor``, deblended from their neighbours.

    A watershed of the smoothed image (as photutils deblends sources) from the seeds'
    groups and from every other local peak above ``floor``: a pixel belongs to the seeds'
    source when, going uphill, it reaches the seeds before any other peak. The footprint
    of a bright star is then its core and wings down to the sky, and it stops at the
    saddle between the star and a galaxy beside it, leaving the galaxy's light alone.

    Parameters
    ----------
    image : numpy.ndarray, 2-D
        Finite values, background 0 (a normalised, filled image).
    seeds : numpy.ndarray of bool
        Where to start (pixels beyond the model's range).
    floor : float
        The sky's level, e.g. 3 times its standard deviation.
    smooth : float, optional
        Gaussian sigma (pixels) of the smoothing that keeps noise from making peaks.
    max_pad : int, optional
        The farthest a footprint reaches from its seeds' bounding box.
    absolute : bool, optional
        Use ``|image|`` (a source below the background counts as one above it).
    out : numpy.ndarray of bool, optional
        A zeroed array to write the footprint into (a large image's scratch array).

    Returns
    -------
    numpy.ndarray of bool
        Includes ``seeds``.
    """
    from .scratch import group_boxes, release_mapped_pages

    footprint = np.zeros(seeds.shape, bool) if out is None else out
    for box, _ in group_boxes(seeds, connectivity=2):
        pad = 16
        while True:
            window = tuple(slice(max(0, b.start - pad), min(n, b.stop + pad))
                           for b, n in zip(box, image.shape))
            values = np.abs(image[window]) if absolute else image[window]
            region = _watershed_basin(values, np.asarray(seeds[window], bool), floor, smooth)
            edges = [region[0].any() and window[0].start > 0,
                     region[-1].any() and window[0].stop < image.shape[0],
                     region[:, 0].any() and window[1].start > 0,
                     region[:, -1].any() and window[1].stop < image.shape[1]]
            if not any(edges) or pad >= max_pad:
                break
            pad *= 2  # the source reaches the window's edge: look further
        footprint[window] |= region
        release_mapped_pages(image, seeds, footprint)
    return footprint


def _watershed_basin(values, seeds, floor, smooth):
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    smoothed = ndimage.gaussian_filter(np.where(np.isfinite(values), values, 0.0), smooth)
    above = (smoothed > floor) | seeds
    markers = (seeds & above).astype(np.int32)  # 1: the seeds' source
    peaks = peak_local_max(smoothed, min_distance=2, threshold_abs=floor,
                           labels=above.astype(np.int32), exclude_border=False)
    peaks = peaks[~seeds[tuple(peaks.T)]] if len(peaks) else peaks
    markers[tuple(peaks.T)] = np.arange(2, len(peaks) + 2)
    basins = watershed(-smoothed, markers, mask=above)
    return (basins == 1) | seeds


def detect_cosmic_rays(image, variance, *, bad=None, psf_fwhm=None, sigclip=4.5, objlim=5.0,
                       model_error=0.1, sharpness_limit=5.0, noise_floor=None):
    """Pixels inconsistent with the PSF: cosmic rays and hot pixels, not bright stars.

    Candidates come from L.A.Cosmic (van Dokkum 2001, PASP 113, 1420), the Laplacian
    edge detection of `astroscrappy.detect_cosmics`, whose fine-structure contrast
    (``objlim``) protects well-sampled stars. A PSF sampled by fewer than about two
    pixels makes a star (and a galaxy's core) as sharp as a cosmic ray, so when the PSF
    is known only the candidates sharper than the PSF allows (a pixel-integrated Gaussian
    of FWHM ``psf_fwhm``: see `_sharper_than_psf`), by more than ``sharpness_limit``
    times their noise, are cosmic rays.

    Parameters
    ----------
    image : numpy.ndarray, 2-D
        The image with its sky subtracted (the Enhancer gives it normalised).
    variance : numpy.ndarray or float
        Its noise variance, in the image's unit squared.
    bad : numpy.ndarray of bool, optional
        Pixels to ignore (NaN, masked).
    psf_fwhm : float, optional
        The PSF's FWHM in pixels; None: no PSF test (L.A.Cosmic alone).
    sigclip, objlim : float, optional
        L.A.Cosmic's Laplacian-to-noise limit and fine-structure contrast.
    model_error : float, optional
        Fractional error of the PSF model, added to the noise in the PSF test (real PSFs
        are not exactly Gaussian).
    sharpness_limit : float, optional
        How many sigma sharper than the PSF a candidate must be to be a cosmic ray.
    noise_floor : float, optional
        The variance the image is scaled by for astroscrappy (default: the median
        variance of the good pixels, `cosmic_ray_noise_floor`); a block of a larger
        image is given the whole image's, so that blocks find what the whole would.

    Returns
    -------
    numpy.ndarray of bool
        True at cosmic-ray (hot) pixels.
    """
    astroscrappy = _astroscrappy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"detect_cosmic_rays: needs a 2-D image, got shape {image.shape}")
    bad = np.zeros(image.shape, bool) if bad is None else np.asarray(bad, bool)
    variance = np.broadcast_to(np.asarray(variance, np.float32), image.shape)
    good = _good_for_rays(image, variance, bad)
    if not good.any():
        return np.zeros(image.shape, bool)
    floor = float(np.median(variance[good])) if noise_floor is None else float(noise_floor)
    # In units of the median noise: astroscrappy has absolute floors, so the same image
    # at 1e-4 times the scale would otherwise keep its cosmic rays.
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.asarray(image, np.float64) / np.sqrt(floor)
    # astroscrappy wants finite values everywhere; very large ones must not overflow
    data = np.where(good, np.clip(scaled, -1e30, 1e30), 0.0).astype(np.float32)
    var = np.where(good, variance / floor, 1.0).astype(np.float32)
    # no gain/read-noise model: the variance is given; no saturation level is known
    mask, _ = astroscrappy.detect_cosmics(
        data, inmask=~good, invar=var, sigclip=sigclip, objlim=objlim, gain=1.0,
        readnoise=0.0, satlevel=np.inf, niter=4, fsmode="median", cleantype="meanmask")
    mask &= good
    if psf_fwhm is None or not mask.any():
        return mask
    return _sharper_than_psf(data, var, good, mask, float(psf_fwhm), model_error,
                             sharpness_limit)


def _astroscrappy():
    """`astroscrappy`, with its saturated-star mask made without a leak.

    astroscrappy 1.3's ``update_mask`` (run by every ``detect_cosmics`` call) grows the
    saturation mask with ``dilate5(mask, 2)``, whose C code allocates an image-sized
    buffer for the second pass and never frees it: one byte per pixel per call, 1.2 MB
    for each 1088^2 block of a large image and 0.5 GB over a 100,000-cutout catalog run.
    The same function with two single passes (the same result, no buffer) is put in its
    place, once.
    """
    import astroscrappy
    from astroscrappy import astroscrappy as module

    if getattr(module, "update_mask", None) is not None and not getattr(
            module.update_mask, "_lensenhance", False):
        from astroscrappy.utils.image_utils import dilate3, dilate5
        from astroscrappy.utils.median_utils import medfilt5, sepmedfilt7

        def update_mask(data, mask, satlevel, sepmed):
            saturated = data >= satlevel
            smooth = sepmedfilt7(data) if sepmed else medfilt5(data)
            saturated = np.logical_and(saturated, smooth > satlevel / 10.0)
            grown = dilate3(mask)
            mask[:, :] = np.logical_or(dilate5(dilate5(saturated, 1), 1), grown)

        update_mask._lensenhance = True
        module.update_mask = update_mask
    return astroscrappy


def cosmic_ray_noise_floor(image, variance, bad=None):
    """The median variance of the pixels `detect_cosmic_rays` looks at (None: none)."""
    image = np.asarray(image, dtype=np.float32)
    bad = np.zeros(image.shape, bool) if bad is None else np.asarray(bad, bool)
    variance = np.broadcast_to(np.asarray(variance, np.float32), image.shape)
    good = _good_for_rays(image, variance, bad)
    return float(np.median(variance[good])) if good.any() else None


def _good_for_rays(image, variance, bad):
    return ~bad & np.isfinite(image) & np.isfinite(variance) & (variance > 0)


def _psf_peak_ratio(psf_fwhm):
    """The largest ratio of a pixel to the mean of its two neighbours along one axis that
    a point source of a pixel-integrated Gaussian PSF can give (when it is centred)."""
    from scipy.special import erf

    sigma = psf_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    edges = np.array([-1.5, -0.5, 0.5, 1.5]) / (sigma * np.sqrt(2.0))
    side, centre, _ = np.diff(erf(edges)) / 2.0
    return float(centre / max(side, 1e-300))


def _sharper_than_psf(data, var, good, mask, psf_fwhm, model_error, limit):
    """The candidates of ``mask`` that are sharper than the PSF allows.

    Any non-negative scene seen through the PSF has, at every pixel and along each axis,
    ``value <= R * mean(two neighbours)`` (R: `_psf_peak_ratio`, the centred point source;
    the pixel-integrated Gaussian is separable, so one axis's ratio does not depend on the
    offset along the other). A cosmic ray or hot pixel breaks it along at least one axis
    (a track along the other); stars, however bright, and galaxies do not.
    """
    from scipy import ndimage

    ratio = _psf_peak_ratio(psf_fwhm)
    value = np.where(good, data, 0.0).astype(np.float64)
    noise = np.where(good, var, 0.0).astype(np.float64)
    sharp = np.zeros(data.shape, bool)
    for axis in (0, 1):
        neighbours = np.zeros_like(value)
        neighbour_var = np.zeros_like(value)
        for shift in (-1, 1):
            neighbours += ndimage.shift(value, [shift if a == axis else 0 for a in (0, 1)],
                                        order=0, mode="nearest")
            neighbour_var += ndimage.shift(noise, [shift if a == axis else 0 for a in (0, 1)],
                                           order=0, mode="nearest")
        # an axis with a bad neighbour says nothing (its value is not known)
        known = np.ones(value.shape, bool)
        for shift in (-1, 1):
            known &= ndimage.shift(good, [shift if a == axis else 0 for a in (0, 1)],
                                   order=0, mode="nearest")
        excess = value - ratio * neighbours / 2.0
        sigma = np.sqrt(noise + ratio**2 * neighbour_var / 4.0 + (model_error * value) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            sharp |= known & (excess > limit * sigma)
    # The sharp candidates only, not their whole group: a ray that lands on a star's wing
    # must not take the star with it. A ray's spill-over beside it is sharp across the
    # other axis; a hot pixel's neighbours are normal.
    return sharp & mask


def flux_conserving_upsample(image, scale, *, factor=None):
    """Bicubic interpolation onto a ``scale`` times finer grid that keeps each pixel's flux.

    The bicubic surface (`scipy.ndimage.zoom`, order 3, pixel centres aligned) gives the
    shape inside each input pixel; its ``scale x scale`` sub-pixels are then rescaled
    (negative lobes clipped) so that they hold exactly the input pixel's value times
    ``factor * scale**2`` in all (flux per pixel: ``factor = 1 / scale**2``, the sum is kept;
    surface brightness: ``factor = 1``, the mean is kept).

    Parameters
    ----------
    image : numpy.ndarray, 2-D, finite
    scale : int
    factor : float, optional
        `flux_split_factor` of the image's unit; default ``1 / scale**2``.

    Returns
    -------
    numpy.ndarray, float64, ``scale`` times larger on each axis
    """
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float64)
    factor = 1.0 / scale**2 if factor is None else float(factor)
    if scale == 1:
        return image * factor
    up = ndimage.zoom(image, scale, order=3, mode="nearest", grid_mode=True)
    h, w = image.shape
    blocks = up.reshape(h, scale, w, scale)
    sign = np.where(image < 0, -1.0, 1.0)[:, None, :, None]
    weights = np.clip(blocks * sign, 0.0, None)
    total = weights.sum(axis=(1, 3), keepdims=True)
    uniform = np.full_like(weights, 1.0 / scale**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, weights / total, uniform)
    out = share * (image * factor * scale**2)[:, None, :, None]
    return out.reshape(h * scale, w * scale)
