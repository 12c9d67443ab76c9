"""A standard-deviation factor that depends on the predicted signal-to-noise ratio.

One factor (`~lensenhance.evaluate.uncertainty.fit_std_scale`) makes a posterior's 68 %
intervals cover 68 % of the truth on average, but the faint and the bright pixels can
still be off in opposite directions. Here the factor is a function of each pixel's
predicted SNR ``r = |mean| / std`` (the raw spread of the samples, before any factor):
the split-conformal factor of each bin of ``r`` on a held-out set, with ``log c``
interpolated linearly in ``log r`` between the bins' median ``r`` (constant beyond;
`lensenhance.predict.posterior.snr_std_factor` applies it).

The calibrated std ``c(|m| / s) * s`` is kept non-decreasing in the raw std ``s`` at every
``m`` (a wider spread never gives a narrower error bar): that holds when the slope of
``log c`` against ``log r`` is at most 1, which the fit enforces from the faint end up
(a bin whose factor would rise faster is lowered to the bound).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from .uncertainty import fit_std_scale

__all__ = ["fit_snr_calibration"]


def fit_snr_calibration(truth, mean, std, *, n_bins=8, level=0.68, mask=None,
                        min_pixels=500):
    """Fit the SNR-dependent factor on held-out pixels.

    Parameters
    ----------
    truth, mean, std : array-like
        One shape; ``std`` the raw spread of the samples (> 0).
    n_bins : int, optional
        Bins of equal pixel counts in ``r = |mean| / std``.
    level : float, optional
        The central interval each bin's factor matches.
    mask : array-like of bool, optional
        True for the pixels to fit on (default: all finite ones).
    min_pixels : int, optional
        Fewer pixels per bin are refused (a conformal quantile of a few pixels is noise).

    Returns
    -------
    dict
        ``snr`` (each bin's median ``r``), ``std_scale`` (its factor, after the bound),
        ``unbounded`` (before it), ``n_pixels`` per bin, ``level``; JSON-ready.
    """
    n_bins = check_int(n_bins, "n_bins", 1)
    truth, mean, std = (np.asarray(a, np.float64) for a in (truth, mean, std))
    used = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std) & (std > 0)
    if mask is not None:
        used &= np.asarray(mask, bool)
    truth, mean, std = truth[used], mean[used], std[used]
    if truth.size < n_bins * min_pixels:
        raise ValueError(f"{truth.size} pixels are too few for {n_bins} bins of at least "
                         f"{min_pixels}")
    snr = np.abs(mean) / std
    order = np.argsort(snr, kind="stable")
    bins = np.array_split(order, n_bins)
    centres = np.array([np.median(snr[b]) for b in bins])
    factors = np.array([fit_std_scale(truth[b], mean[b], std[b], level=level) for b in bins])
    bounded = factors.copy()
    for k in range(1, n_bins):
        # log-log slope at most 1: c(|m|/s) * s stays non-decreasing in s
        ceiling = bounded[k - 1] * centres[k] / max(centres[k - 1], 1e-12)
        bounded[k] = min(bounded[k], ceiling)
    return {"snr": centres.tolist(), "std_scale": bounded.tolist(),
            "unbounded": factors.tolist(), "n_pixels": [int(len(b)) for b in bins],
            "level": float(level), "rule": "split-conformal factor per bin of |mean| / std "
            "(raw), log-log interpolated, slope <= 1"}
