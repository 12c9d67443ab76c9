"""Invertible normalisation of images for the models.

Models see ``(data - offset) / scale``; the enhancer records the `Normalization` in the
output's meta and undoes it, so the result keeps the input's unit.

Definition used by `fit_normalization` (methods ``"sigma_clip"`` and ``"background2d"``):

* ``offset``: the sky background, the sigma-clipped median of the good pixels
  (``"sigma_clip"``), or the median of the photutils `~photutils.background.Background2D`
  mesh (``"background2d"``, better for large images with a varying background).
* ``scale``: the 99.5th percentile of ``data - offset`` over the good pixels, so that the
  bright parts of a typical lensing cutout (lens light and arcs, which cover more than
  0.5 % of it) come out of order 1 whatever the noise level, and noiseless simulations
  work as well as noisy images. When that percentile is not positive (an image that
  is sky only, or constant), the robust sky noise (sigma-clipped standard deviation)
  is used; and when that is zero too, a floor of float32 epsilon times the 99th
  percentile of the absolute values (their maximum if that is 0, or 1 for an all-zero
  image), so that nothing divides by zero and a lone hot pixel does not set it.

Good pixels are finite and not masked; NaN and masked pixels are ignored when fitting.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import NDData
from astropy.stats import sigma_clipped_stats

from .._validation import check_int

__all__ = ["Normalization", "AsinhScaling", "fit_normalization", "fit_image_normalization",
           "normalize_target", "METHODS", "OUTLIER_THRESHOLD", "OUTLIER_MARGIN"]

#: Values further than this from the background, in units of the normalisation's scale,
#: are outliers: left out of the fit; beyond the range the networks were trained on (the
#: Enhancer interpolates them, keeping their flux).
OUTLIER_THRESHOLD = 50.0
#: Pixels around each outlier that the fit leaves out too (a star's wings).
OUTLIER_MARGIN = 2
#: A source is point-like when its pixels above half its peak cover at most this many
#: times the PSF's half-maximum disc (pixelisation and noise widen a star's).
_POINT_AREA = 2.0
#: ... and the rest of the image holds a source when its scale is this many sky sigma.
_REST_SIGNAL = 30.0
#: The fit uses a regular sub-grid of at most about this many pixels.
FIT_PIXELS = 1 << 22

METHODS = ("sigma_clip", "background2d", "fixed")

# Header-safe (<= 8 characters) meta keys and their FITS comments.
_META_KEYS = {
    "offset": ("LENORMOF", "lensenhance normalisation offset (data unit)"),
    "scale": ("LENORMSC", "lensenhance normalisation scale (data unit)"),
    "method": ("LENORMMT", "lensenhance normalisation method"),
}


@dataclass(frozen=True)
class Normalization:
    """An affine map ``(data - offset) / scale`` and its inverse.

    Parameters
    ----------
    offset : float
        Subtracted first (the sky background), in the data unit.
    scale : float
        Positive divisor, in the data unit.
    method : str
        How offset and scale were found; one of `METHODS`.
    """

    offset: float
    scale: float
    method: str = "fixed"

    def __post_init__(self):
        # Coerce numpy scalars so that repr, meta and equality stay plain floats.
        object.__setattr__(self, "offset", float(self.offset))
        object.__setattr__(self, "scale", float(self.scale))
        if not math.isfinite(self.offset):
            raise ValueError(f"Normalization: offset must be finite, got {self.offset}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Normalization: scale must be finite and > 0, got {self.scale}")
        if self.method not in METHODS:
            raise ValueError(f"Normalization: method must be one of {METHODS}, "
                             f"got {self.method!r}")

    def __repr__(self):
        return f"Normalization(offset={self.offset:.6g}, scale={self.scale:.6g}, " \
               f"method={self.method!r})"

    def apply(self, array):
        """Return ``(array - offset) / scale`` (float32 stays float32; NaN stays NaN)."""
        return (np.asanyarray(array) - self.offset) / self.scale

    def invert(self, array):
        """Return ``array * scale + offset``, undoing `apply`."""
        return np.asanyarray(array) * self.scale + self.offset

    def invert_std(self, std):
        """Return a standard deviation in normalised units in data units (``std * scale``)."""
        return np.asanyarray(std) * self.scale

    def to_meta(self, meta):
        """Record the normalisation in ``meta`` (a dict or FITS header); return ``meta``."""
        for field, (key, comment) in _META_KEYS.items():
            value = getattr(self, field)
            meta[key] = (value, comment) if isinstance(meta, fits.Header) else value
        return meta

    @classmethod
    def from_meta(cls, meta):
        """Read a normalisation written by `to_meta`.

        Raises
        ------
        KeyError
            A key is missing (naming it).
        """
        values = {}
        for field, (key, _) in _META_KEYS.items():
            if key not in meta:
                raise KeyError(f"Normalization.from_meta: no {key!r} in meta")
            values[field] = meta[key]
        return cls(**values)


def _as_array_and_mask(data, mask):
    if isinstance(data, NDData):
        if mask is None:
            mask = data.mask
        elif data.mask is not None:
            mask = np.logical_or(mask, data.mask)
        data = data.data
    if isinstance(data, u.Quantity):
        data = data.value
    data = np.asarray(data, dtype=np.float64)
    good = np.isfinite(data)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            raise ValueError(f"fit_normalization: mask shape {mask.shape} differs from the "
                             f"data shape {data.shape}")
        good &= ~mask
    if not good.any():
        raise ValueError("fit_normalization: no finite, unmasked pixel to fit")
    return data, good


def _background2d(data, good, box_size):
    from photutils.background import Background2D

    if data.ndim != 2:
        raise ValueError(f"fit_normalization: method='background2d' needs a 2-D image, got "
                         f"shape {data.shape}")
    box = (min(box_size, data.shape[0]), min(box_size, data.shape[1]))
    bkg = Background2D(data, box, mask=~good)
    return float(bkg.background_median), float(bkg.background_rms_median)


def fit_normalization(data, *, mask=None, method="sigma_clip", box_size=64, offset=None,
                      scale=None, percentile=99.5, sigma=3.0):
    """Fit a robust, invertible normalisation of an image.

    Parameters
    ----------
    data : array-like, Quantity or NDData
        The image (the mask of an NDData is used; a Quantity's values are used, so
        offset and scale are in its unit).
    mask : array-like of bool, optional
        True for pixels to ignore, in addition to non-finite ones.
    method : {"sigma_clip", "background2d", "fixed"}
        How to find the offset (see the module docstring). ``"fixed"`` takes
        ``offset`` and ``scale`` as given.
    box_size : int, optional
        Box size of `~photutils.background.Background2D` (clipped to the image).
    offset, scale : float, optional
        Use these instead of the fitted values (both required for ``"fixed"``).
    percentile : float, optional
        Percentile of ``data - offset`` that defines the scale.
    sigma : float, optional
        Clipping threshold of the sigma-clipped statistics.

    Returns
    -------
    norm : `Normalization`

    Raises
    ------
    ValueError
        Unknown method, ``"fixed"`` without offset and scale, or no good pixel.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.random.default_rng(0).normal(10.0, 1.0, (64, 64))
    >>> image[30:34, 30:34] += 100.0                  # a source on a sky of 10
    >>> norm = fit_normalization(image)
    >>> round(norm.offset, 1)
    10.0
    >>> np.allclose(norm.invert(norm.apply(image)), image)
    True
    """
    if method not in METHODS:
        raise ValueError(f"fit_normalization: method must be one of {METHODS}, got {method!r}")
    if method == "fixed":
        if offset is None or scale is None:
            raise ValueError("fit_normalization: method='fixed' needs both offset= and scale=")
        return Normalization(offset, scale, method)
    check_int(box_size, "fit_normalization: box_size", integral_floats=True)
    if not 0 < percentile <= 100:
        raise ValueError(f"fit_normalization: percentile must be in (0, 100], got {percentile}")

    data, good = _as_array_and_mask(data, mask)
    if method == "background2d":
        fitted_offset, noise = _background2d(data, good, int(box_size))
    else:
        _, fitted_offset, noise = sigma_clipped_stats(data, mask=~good, sigma=sigma)
    offset = float(fitted_offset) if offset is None else float(offset)
    if scale is None:
        values = data[good] - offset
        scale = float(np.percentile(values, percentile))
        if not scale > 0:
            scale = float(noise)
        # The magnitude of the typical bright pixel, not of the largest one: a single hot
        # pixel (1e30) must not set the floor of an otherwise flat image.
        magnitudes = np.abs(data[good])
        largest = float(np.percentile(magnitudes, 99.0)) or float(np.max(magnitudes))
        floor = np.finfo(np.float32).eps * largest if largest > 0 else 1.0
        if not scale > floor:
            scale = floor
    return Normalization(offset, scale, method)


def fit_image_normalization(data, bad=None, *, method="sigma_clip",
                            outlier_threshold=OUTLIER_THRESHOLD, margin=OUTLIER_MARGIN,
                            psf_fwhm=None):
    """The normalisation of one whole image, as every model sees its input.

    The one rule shared by inference (`lensenhance.Enhancer`) and every training set
    (`normalize_target` for the targets): `fit_normalization` on a regular sub-grid of
    at most `FIT_PIXELS` pixels, at a magnitude near 1 (so that the clipped statistics
    of values beyond float32 cannot overflow), with

    * the bad pixels filled from their neighbourhood first
      (`lensenhance.predict.pixels.fill_bad_pixels`): a few NaNs beside a peak must not
      move the percentile that sets the scale, and with it every output pixel;
    * refitted up to twice without the pixels further than ``outlier_threshold`` scales
      from the background and ``margin`` pixels around them: a 1e30 hot pixel would
      otherwise set the scale's floor, and a star's wings the scale of the lens beside it;
    * with ``psf_fwhm`` given, refitted up to three times without the brightest sources
      that are point sources (its pixels above half its peak cover no more than
      `_POINT_AREA` times the PSF's) whose peak would be beyond ``outlier_threshold``
      in the scale of the rest of the image, and that rest holds a source of its own
      (its scale at least `_REST_SIGNAL` sky sigma): a star covering more than 0.5 % of
      a cutout would otherwise set the scale itself, and the lens beside it reach the
      network far fainter than any training image, while a compact galaxy alone on the
      sky (seeing-limited surveys have many) sets it as in training. Only for images of
      at most `FIT_PIXELS` pixels (larger ones fit on a sub-grid, where no star covers
      0.5 %).

    Parameters
    ----------
    data : array-like, 2-D
        The image (NaN and inf allowed where ``bad``).
    bad : numpy.ndarray of bool, optional
        Pixels to leave out.
    method : str, optional
        See `fit_normalization`.
    outlier_threshold : float or None, optional
        None: no refit.
    margin : int, optional
        Pixels (of the full image) left out around each outlier.
    psf_fwhm : float or None, optional
        The PSF's FWHM in pixels; None: stars are not sought.

    Returns
    -------
    Normalization
    """
    from scipy import ndimage

    from .pixels import fill_bad_pixels
    from .scratch import subgrid

    data = np.asarray(data)
    bad = ~np.isfinite(data) if bad is None else np.asarray(bad, bool)
    step = max(1, math.ceil(math.sqrt(data.size / FIT_PIXELS)))
    sample = np.asarray(subgrid(data, step), dtype=np.float64)
    sample_bad = subgrid(bad, step).copy()
    if sample_bad.all():
        raise ValueError("no finite, unmasked pixel to fit a normalisation to")
    exponent = math.frexp(float(np.median(np.abs(sample[~sample_bad]))) or 1.0)[1]
    sample = np.ldexp(sample, -exponent)  # a power of two: exact
    if sample_bad.any() and sample.ndim == 2:
        sample[sample_bad] = np.nan
        fill_bad_pixels(sample, sample_bad)
        sample_bad[:] = False
    grow = math.ceil(margin / step) if margin else 0
    for _ in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in the clipping
            norm = fit_normalization(sample, mask=sample_bad, method=method)
        if outlier_threshold is None:
            break
        with np.errstate(over="ignore", invalid="ignore"):
            new = ~sample_bad & (np.abs(norm.apply(sample)) > outlier_threshold)
        if not new.any():
            break
        if grow and new.ndim == 2:
            new = ndimage.binary_dilation(new, np.ones((3, 3), bool), iterations=grow)
        if (sample_bad | new).all():
            break
        sample_bad |= new
    if psf_fwhm is not None and outlier_threshold is not None and step == 1 \
            and sample.ndim == 2:
        norm = _without_dominant_stars(sample, sample_bad, norm, method=method,
                                       threshold=outlier_threshold, margin=margin,
                                       psf_fwhm=psf_fwhm)
    return type(norm)(math.ldexp(norm.offset, exponent), math.ldexp(norm.scale, exponent),
                      norm.method)


def _without_dominant_stars(sample, bad, norm, *, method, threshold, margin, psf_fwhm):
    """The fit without up to three point sources beyond the range of the rest.

    The brightest sources are looked at in turn (eight at most); what is sharper than the
    PSF is skipped (cosmic rays have their own test), the first extended one ends the
    search.
    """
    from scipy import ndimage

    from .pixels import source_footprint

    bad = bad.copy()
    searched = np.zeros(bad.shape, bool)  # the outliers' pixels are a star's core too
    psf_area = math.pi * (psf_fwhm / 2) ** 2
    stars = 0
    # the sky's noise from neighbouring pixels' differences: a star's smooth wings
    # covering the image would inflate a plain (clipped) standard deviation
    steps = np.diff(sample, axis=1)[~(bad[:, 1:] | bad[:, :-1])]
    noise = float(np.median(np.abs(steps - np.median(steps)))) * 1.4826 / math.sqrt(2)
    for _ in range(8):
        z = norm.apply(sample)
        sky = noise / norm.scale
        peak = np.unravel_index(np.argmax(np.where(searched, -np.inf, z)), z.shape)
        seed = np.zeros(z.shape, bool)
        seed[peak] = True
        source = source_footprint(z, seed, floor=3 * sky)
        core = int((source & (z > z[peak] / 2)).sum())
        if core < min(psf_area / 2, 4):
            searched |= source  # sharper than the PSF: a cosmic ray, left to its test
            continue
        if core > _POINT_AREA * psf_area + 4:
            break  # extended: a galaxy, the lens itself; it sets the scale as in training
        left_out = ndimage.binary_dilation(source, np.ones((3, 3), bool), iterations=margin) \
            if margin else source
        if (bad | left_out).all():
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rest = fit_normalization(sample, mask=bad | left_out, method=method)
        if rest.apply(sample[peak]) <= threshold:
            break  # within the range of the rest: it is part of the scene
        if rest.scale < _REST_SIGNAL * noise:
            break  # the rest is sky: the source is the scene (a compact galaxy, say)
        bad |= left_out
        searched |= left_out
        norm = rest
        stars += 1
        if stars == 3:
            break
    return norm


def normalize_target(target, norm, split):
    """A training target in the normalised units of its input's `Normalization`.

    Parameters
    ----------
    target : array-like
        What the model should output, in the input's unit per output pixel.
    norm : Normalization
        The input image's normalisation (`fit_image_normalization`).
    split : float
        `lensenhance.predict.pixels.flux_split_factor` of the input's unit and the scale: the
        Enhancer divides its output by it when it undoes the normalisation.
    """
    return ((np.asarray(target, np.float64) / split - norm.offset) / norm.scale).astype(
        np.float32)


@dataclass(frozen=True)
class AsinhScaling:
    """The fixed stretch a generator is trained in: ``2 * asinh(x / a) / asinh(m / a) - 1``.

    Lensing images span four decades of flux per pixel (faint arcs beside a bright lens
    galaxy); an asinh stretch (astropy's `~astropy.visualization.AsinhStretch`, unclipped)
    puts arcs and lens light on comparable footing for the network and is exactly
    invertible, so generated images come back in the training data's unit.

    Parameters
    ----------
    softening : float
        ``a``: below it the stretch is linear (data unit).
    maximum : float
        ``m``: the flux mapped to +1 (data unit); larger values exceed 1.
    """

    softening: float
    maximum: float

    def __post_init__(self):
        if not (self.softening > 0 and self.maximum > 0):
            raise ValueError(f"softening and maximum must be positive, got {self.softening}, "
                             f"{self.maximum}")

    def _stretch(self):
        from astropy.visualization import AsinhStretch

        return AsinhStretch(a=self.softening / self.maximum)

    def apply(self, array):
        """Data unit -> the network's range (about -1 to 1)."""
        x = np.asarray(array, dtype=np.float64) / self.maximum
        return (2 * self._stretch()(x, clip=False) - 1).astype(np.float32)

    def invert(self, array):
        """The network's range -> data unit."""
        y = (np.asarray(array, dtype=np.float64) + 1) / 2
        return (self._stretch().inverse(y, clip=False) * self.maximum).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": "asinh", "softening": self.softening, "maximum": self.maximum}

    @classmethod
    def from_dict(cls, values: dict) -> AsinhScaling:
        values = dict(values)
        kind = values.pop("kind", "asinh")
        if kind != "asinh":
            raise ValueError(f"not an asinh scaling: {kind!r}")
        return cls(**values)
