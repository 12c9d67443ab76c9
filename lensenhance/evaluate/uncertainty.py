"""Calibration of per-pixel predictive distributions: are the error bars honest?

A predictor with an uncertainty gives every pixel a mean and a standard deviation (or a
set of samples, e.g. the draws of a `~lensenhance.predict.posterior.PosteriorPredictor`). Against
a known truth, these functions say whether that spread matches the actual error:

* how often the truth falls in the central intervals (`interval_coverage`,
  `sample_interval_coverage`) and over every level at once (`regression_ece`);
* the distribution of the probability integral transform, flat when calibrated
  (`pit_values`, `pit_histogram`, `sample_pit`), and of the standardised residual
  (`zscore_stats`);
* the ratio of the predicted spread to the actual error (`spread_skill_ratio`);
* a proper score that rewards sharpness and calibration together, the CRPS
  (`crps_gaussian`, `crps_ensemble`);
* without a truth, the consistency of a re-degraded model with the observed data and its
  noise (`chi2_consistency`);
* the factor on the std that makes the intervals cover as they should (`fit_std_scale`,
  the ``std_scale`` stored with a posterior model's weights), and the figures a
  benchmark prints (`calibration_summary`).

Every function takes arrays of any one shape (images, stacks of images) and an optional
boolean ``mask`` of that shape, True for the pixels to use (e.g. where there is light:
the sky alone would make almost any error bar look calibrated). Pixels where any input
is NaN are left out; an infinite value in a used pixel is an error, not a pixel to drop
quietly. Computations are in float64 whatever the inputs' dtype. Plain numpy and scipy.
"""

import math
import numbers

import numpy as np
from scipy import special

__all__ = ["interval_coverage", "sample_interval_coverage", "regression_ece", "pit_values",
           "pit_histogram", "sample_pit", "zscore_stats", "spread_skill_ratio",
           "crps_gaussian", "crps_ensemble", "chi2_consistency", "fit_std_scale",
           "calibration_summary"]

DEFAULT_LEVELS = (0.68, 0.95)

_SQRT_PI = math.sqrt(math.pi)


# -- validation ---------------------------------------------------------------------------

def _as_float(value, name):
    array = np.asarray(value)
    # Complex or object arrays would be cast (or fail) with a message naming no argument.
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _gather(named, mask, *, scalar_ok=(), positive=(), samples=None, axis=0,
            return_used=False):
    """The values of the pixels to use, as float64.

    Parameters
    ----------
    named : list of (str, array-like)
        Per-pixel inputs; the first one sets the shape every other must have.
    mask : array-like of bool or None
        True for the pixels to use.
    scalar_ok : tuple of str
        Names of inputs that may also be a scalar (one value for every pixel).
    positive : tuple of str
        Names of inputs that must be > 0 in every used pixel.
    samples : (str, array-like), optional
        Samples with one more axis than the first input, ``axis`` being the samples axis.
    return_used : bool
        Also return the boolean map of the pixels used.

    Returns
    -------
    values : dict
        Each name mapped to a 1-D array of the used pixels (samples: ``(m, n)``).
    used : numpy.ndarray of bool
        Only with ``return_used``.
    """
    ref_name, ref = named[0]
    ref = _as_float(ref, ref_name)
    shape = ref.shape
    arrays = {ref_name: ref}
    for name, value in named[1:]:
        array = _as_float(value, name)
        if name in scalar_ok and array.ndim == 0:
            array = np.broadcast_to(array, shape)
        elif array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape} but {ref_name} has shape "
                             f"{shape}")
        arrays[name] = array
    draws = None
    if samples is not None:
        sample_name, value = samples
        draws = _as_float(value, sample_name)
        if draws.ndim != len(shape) + 1:
            raise ValueError(f"{sample_name} must have one more axis than {ref_name} (the "
                             f"samples axis): got shape {draws.shape} for {ref_name} "
                             f"{shape}")
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) \
                or not -draws.ndim <= axis < draws.ndim:
            raise ValueError(f"axis must be an integer from {-draws.ndim} to "
                             f"{draws.ndim - 1} for {sample_name} of shape {draws.shape}, "
                             f"got {axis!r}")
        draws = np.moveaxis(draws, axis, 0)
        if draws.shape[1:] != shape:
            raise ValueError(f"{sample_name} has shape {draws.shape[1:]} without its samples "
                             f"axis {axis} but {ref_name} has shape {shape}")
        if draws.shape[0] == 0:
            raise ValueError(f"{sample_name} has no samples along axis {axis}")
    used = np.ones(shape, dtype=bool)
    if mask is not None:
        mask = np.asarray(mask)
        # An integer mask may be meant as indices; refuse rather than guess.
        if mask.dtype != bool:
            raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
        if mask.shape != shape:
            raise ValueError(f"mask has shape {mask.shape} but {ref_name} has shape {shape}")
        used &= mask
    n_selected = int(np.count_nonzero(used))
    for array in arrays.values():
        used &= ~np.isnan(array)
    if draws is not None:
        used &= ~np.isnan(draws).any(axis=0)
    n = int(np.count_nonzero(used))
    if n == 0:
        if n_selected == 0:
            why = "the mask selects none" if mask is not None else f"{ref_name} is empty"
        else:
            why = f"all {n_selected} selected pixel(s) have a NaN in some input"
        raise ValueError(f"no pixel left to use: {why}")
    values = {name: array[used] for name, array in arrays.items()}
    if draws is not None:
        values[sample_name] = draws[:, used]
    for name, array in values.items():
        n_inf = int(np.count_nonzero(np.isinf(array)))
        if n_inf:
            raise ValueError(f"{name} has {n_inf} infinite value(s) among the pixels used; "
                             "mask them or set them to NaN")
    for name in positive:
        n_bad = int(np.count_nonzero(values[name] <= 0))
        if n_bad:
            raise ValueError(f"{name} must be positive where used: {n_bad} of {n} pixel(s) "
                             f"have {name} <= 0")
    return (values, used) if return_used else values


def _levels(levels):
    """Interval levels as a tuple of floats, each strictly between 0 and 1."""
    values = np.atleast_1d(np.asarray(levels, dtype=object))
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"levels must be a level or a non-empty sequence of levels, got "
                         f"{levels!r}")
    out = []
    for level in values:
        if isinstance(level, bool) or not isinstance(level, numbers.Real):
            raise TypeError(f"levels must be real numbers, got {level!r}")
        if not 0 < level < 1:
            raise ValueError(f"levels must be strictly between 0 and 1, got {level!r}")
        out.append(float(level))
    return tuple(out)


def _int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return int(value)


def _z(level):
    """Half-width, in standard deviations, of the Gaussian central interval of ``level``."""
    return float(special.ndtri((1 + level) / 2))


# -- computations on the used pixels (1-D float64 arrays) -------------------------------

def _coverage(truth, mean, std, levels):
    distance = np.abs(truth - mean) / std
    return {level: float(np.mean(distance <= _z(level))) for level in levels}


def _ece(z, n_levels):
    levels = (np.arange(n_levels) + 0.5) / n_levels
    # PIT <= p is z <= Phi^-1(p): compare z-scores, which do not saturate at 0 or 1.
    observed = np.searchsorted(np.sort(z), special.ndtri(levels), side="right") / len(z)
    return {"ece": float(np.mean(np.abs(observed - levels))), "levels": levels,
            "observed": observed}


def _zstats(z):
    variance = float(np.var(z, ddof=1)) if len(z) > 1 else float("nan")
    return {"mean": float(np.mean(z)), "variance": variance, "n": len(z)}


def _spread_skill(truth, mean, std, n_samples):
    spread = math.sqrt(np.mean(std**2))
    rmse = math.sqrt(np.mean((truth - mean) ** 2))
    ratio = spread / rmse if rmse > 0 else math.inf
    if n_samples is not None:
        ratio *= math.sqrt((n_samples + 1) / n_samples)
    return float(ratio)


def _crps_gaussian(truth, mean, std):
    z = (truth - mean) / std
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return float(np.mean(std * (z * (2 * special.ndtr(z) - 1) + 2 * pdf - 1 / _SQRT_PI)))


# -- coverage -----------------------------------------------------------------------------

def interval_coverage(truth, mean, std, *, levels=DEFAULT_LEVELS, mask=None):
    """Fraction of pixels whose truth lies in the Gaussian central interval of each level.

    The interval of level ``p`` is ``mean +- z_p * std`` with ``z_p = Phi^-1((1 + p) / 2)``
    (1.0 sigma for 0.68, 1.96 for 0.95). A calibrated Gaussian prediction covers ``p`` of
    the pixels; less is over-confident, more under-confident.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation, same shape (or one value); must be > 0 where used.
    levels : float or sequence of float, optional
        Central interval levels, each strictly between 0 and 1.
    mask : array-like of bool, optional
        True for the pixels to use (same shape as ``truth``). Pixels with a NaN in any
        input are left out as well.

    Returns
    -------
    dict
        ``{level: fraction}``, plain floats. Its binomial standard error is
        ``sqrt(p (1 - p) / n)`` for ``n`` independent pixels; neighbouring pixels of an
        image are correlated, so the real error is larger.

    Examples
    --------
    A prediction whose standard deviation is the true one covers 68 % and 95 %:

    >>> import numpy as np
    >>> truth = np.random.default_rng(1).normal(0.0, 2.0, 100_000)
    >>> coverage = interval_coverage(truth, np.zeros_like(truth), 2.0)
    >>> {level: round(value, 2) for level, value in coverage.items()}
    {0.68: 0.68, 0.95: 0.95}
    """
    levels = _levels(levels)
    v = _gather([("truth", truth), ("mean", mean), ("std", std)], mask, scalar_ok=("std",),
                positive=("std",))
    return _coverage(v["truth"], v["mean"], v["std"], levels)


def sample_interval_coverage(truth, samples, *, levels=DEFAULT_LEVELS, mask=None, axis=0):
    """Fraction of pixels whose truth lies between the empirical quantiles of the samples.

    The interval of level ``p`` runs from the ``(1 - p) / 2`` to the ``(1 + p) / 2``
    quantile of each pixel's samples (`numpy.quantile`, linear interpolation), so no
    Gaussian shape is assumed.

    Parameters
    ----------
    truth : array-like
        True values.
    samples : array-like
        Draws of the prediction: ``truth``'s shape plus one samples axis, ``axis``.
    levels : float or sequence of float, optional
        Central interval levels, each strictly between 0 and 1.
    mask : array-like of bool, optional
        True for the pixels to use. Pixels where the truth or any sample is NaN are left
        out as well.
    axis : int, optional
        The samples axis of ``samples``.

    Returns
    -------
    dict
        ``{level: fraction}``, plain floats.

    Notes
    -----
    The quantiles of ``m`` samples give intervals a little too narrow: for samples and
    truth drawn from one distribution the expected coverage is about
    ``p (m - 1) / (m + 1)`` (0.667 rather than 0.68 for 100 samples), since the truth's
    rank among the ``m + 1`` values is uniform. Compare with that, or use many samples.
    """
    levels = _levels(levels)
    v = _gather([("truth", truth)], mask, samples=("samples", samples), axis=axis)
    quantiles = [q for level in levels for q in ((1 - level) / 2, (1 + level) / 2)]
    bounds = np.quantile(v["samples"], quantiles, axis=0)
    y = v["truth"]
    return {level: float(np.mean((bounds[2 * i] <= y) & (y <= bounds[2 * i + 1])))
            for i, level in enumerate(levels)}


def regression_ece(truth, mean, std, *, n_levels=10, mask=None):
    """Expected calibration error of a Gaussian prediction, over evenly spaced levels.

    For each level ``p_j = (j + 0.5) / n_levels`` the observed frequency of
    ``PIT <= p_j``, with ``PIT = Phi((truth - mean) / std)``, should be ``p_j``
    (Kuleshov, Fenner & Ermon 2018); the error is ``mean_j |observed_j - p_j|``. (Kuleshov
    et al. weight squared differences; the mean absolute difference reads as a fraction.)

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation; must be > 0 where used.
    n_levels : int, optional
        Number of levels.
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.

    Returns
    -------
    dict
        ``{"ece": float, "levels": ndarray, "observed": ndarray}``: 0 for a calibrated
        prediction (up to sampling noise, about ``0.4 / sqrt(n)``), at most 0.5. Observed
        frequencies above the levels in the lower half and below them in the upper half
        mean too wide a std; the reverse, too narrow.
    """
    n_levels = _int(n_levels, "n_levels", 1)
    v = _gather([("truth", truth), ("mean", mean), ("std", std)], mask, scalar_ok=("std",),
                positive=("std",))
    return _ece((v["truth"] - v["mean"]) / v["std"], n_levels)


# -- probability integral transform ------------------------------------------------------

def pit_values(truth, mean, std, *, mask=None):
    """Probability integral transform of the truth under a Gaussian prediction.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation; must be > 0 where used.
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.

    Returns
    -------
    numpy.ndarray
        ``Phi((truth - mean) / std)``, float64, of ``truth``'s shape (so that it can be
        shown as a map), NaN for the pixels not used. Uniform on [0, 1] when the
        prediction is calibrated: U-shaped for too small a std, peaked for too large a
        std, sloped for a biased mean.
    """
    v, used = _gather([("truth", truth), ("mean", mean), ("std", std)], mask,
                      scalar_ok=("std",), positive=("std",), return_used=True)
    out = np.full(used.shape, np.nan)
    out[used] = special.ndtr((v["truth"] - v["mean"]) / v["std"])
    return out


def pit_histogram(truth, mean, std, *, bins=10, mask=None):
    """Histogram of the PIT (`pit_values`) of the used pixels, as fractions.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation; must be > 0 where used.
    bins : int, optional
        Number of equal-width bins on [0, 1].
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.

    Returns
    -------
    fractions : numpy.ndarray, shape (bins,)
        Fraction of the used pixels in each bin (they sum to 1); ``1 / bins`` each when
        calibrated.
    bin_edges : numpy.ndarray, shape (bins + 1,)
        From 0 to 1.
    """
    bins = _int(bins, "bins", 1)
    v = _gather([("truth", truth), ("mean", mean), ("std", std)], mask, scalar_ok=("std",),
                positive=("std",))
    pit = special.ndtr((v["truth"] - v["mean"]) / v["std"])
    counts, edges = np.histogram(pit, bins=bins, range=(0.0, 1.0))
    return counts / len(pit), edges


def sample_pit(truth, samples, *, axis=0, mask=None):
    """Probability integral transform of the truth among a pixel's samples (its rank).

    With ``b`` of the ``m`` samples below the truth and ``t`` equal to it, the PIT is
    ``(b + t / 2 + 1 / 2) / (m + 1)``: the centre of the truth's rank cell among the
    ``m + 1`` values, ties counted half below (so an ensemble that collapses onto the
    truth gives 0.5). For samples and truth drawn from one distribution the rank is
    uniform on ``0 .. m``, so the PIT takes the values ``(k + 1/2) / (m + 1)`` with equal
    probability: a histogram whose number of bins divides ``m + 1`` is flat (the rank,
    or Talagrand, histogram). The plain fraction below, ``b / m``, puts both 0 and 1 in
    the outer bins and so is not flat.

    Parameters
    ----------
    truth : array-like
        True values.
    samples : array-like
        Draws of the prediction: ``truth``'s shape plus one samples axis, ``axis``.
    axis : int, optional
        The samples axis of ``samples``.
    mask : array-like of bool, optional
        True for the pixels to use; pixels where the truth or any sample is NaN are left
        out.

    Returns
    -------
    numpy.ndarray
        The PIT, float64, of ``truth``'s shape, in ``(0, 1)``; NaN for the pixels not used.
    """
    v, used = _gather([("truth", truth)], mask, samples=("samples", samples), axis=axis,
                      return_used=True)
    x, y = v["samples"], v["truth"]
    below = np.count_nonzero(x < y, axis=0)
    ties = np.count_nonzero(x == y, axis=0)
    out = np.full(used.shape, np.nan)
    out[used] = (below + 0.5 * ties + 0.5) / (len(x) + 1)
    return out


# -- moments ------------------------------------------------------------------------------

def zscore_stats(truth, mean, std, *, mask=None):
    """Mean and variance of the standardised residual ``z = (truth - mean) / std``.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation; must be > 0 where used.
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.

    Returns
    -------
    dict
        ``{"mean": float, "variance": float, "n": int}``: mean 0 and variance 1 when
        calibrated. A mean away from 0 is a bias (in units of the std); a variance of
        ``k**2`` says the std is ``k`` times too small. The variance is the unbiased
        sample variance (``ddof=1``; NaN for one pixel).
    """
    v = _gather([("truth", truth), ("mean", mean), ("std", std)], mask, scalar_ok=("std",),
                positive=("std",))
    return _zstats((v["truth"] - v["mean"]) / v["std"])


def spread_skill_ratio(truth, mean, std, *, mask=None, n_samples=None):
    """Ratio of the root-mean predicted variance to the RMSE of the mean.

    ``sqrt(mean(std**2)) / sqrt(mean((truth - mean)**2))``: 1 when the predicted spread
    matches the actual error on average, below 1 for over-confidence, above for
    under-confidence. Unlike the z-score variance it is dominated by the pixels with the
    largest errors, the bright ones.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation (here 0 is allowed: it is not divided by).
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.
    n_samples : int, optional
        Give it when ``mean`` and ``std`` are the mean and the (``ddof=1``) standard
        deviation of an ensemble of ``n_samples`` members. The ensemble mean is itself
        off by ``std / sqrt(n)``, so even a perfect ensemble has
        ``RMSE**2 = (n + 1) / n * spread**2``; the ratio is multiplied by
        ``sqrt((n + 1) / n)`` so that a perfect ensemble scores 1 (Fortin et al. 2014,
        J. Hydrometeorol. 15, 1708).

    Returns
    -------
    float
        The ratio; infinite when the mean equals the truth at every used pixel.
    """
    if n_samples is not None:
        n_samples = _int(n_samples, "n_samples", 2)
    v = _gather([("truth", truth), ("mean", mean), ("std", std)], mask, scalar_ok=("std",))
    if np.any(v["std"] < 0):
        raise ValueError(f"std must not be negative: {int(np.count_nonzero(v['std'] < 0))} "
                         f"of {len(v['std'])} pixel(s) have std < 0")
    return _spread_skill(v["truth"], v["mean"], v["std"], n_samples)


# -- proper scores ------------------------------------------------------------------------

def crps_gaussian(truth, mean, std, *, mask=None):
    """Mean continuous ranked probability score of a Gaussian prediction.

    Closed form (Gneiting & Raftery 2007, J. Am. Stat. Assoc. 102, 359), with
    ``z = (truth - mean) / std``:
    ``CRPS = std * (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi))``. It is in the units of
    the data, reduces to the absolute error as the std goes to 0, and is smallest in
    expectation for the true distribution: lower is better, for sharpness and
    calibration at once.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation; must be > 0 where used.
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.

    Returns
    -------
    float
        The CRPS averaged over the used pixels.
    """
    v = _gather([("truth", truth), ("mean", mean), ("std", std)], mask, scalar_ok=("std",),
                positive=("std",))
    return _crps_gaussian(v["truth"], v["mean"], v["std"])


def crps_ensemble(truth, samples, *, axis=0, mask=None, fair=False):
    """Mean continuous ranked probability score of an ensemble of samples.

    The energy form ``CRPS = E|X - y| - E|X - X'| / 2`` (Gneiting & Raftery 2007), with
    ``E|X - X'|`` computed from the sorted samples ``x_(1) <= ... <= x_(m)`` as
    ``sum_i (2 i - m - 1) x_(i)`` over the number of pairs: O(m log m) per pixel rather
    than O(m**2).

    Parameters
    ----------
    truth : array-like
        True values.
    samples : array-like
        Draws of the prediction: ``truth``'s shape plus one samples axis, ``axis``.
    axis : int, optional
        The samples axis of ``samples``.
    mask : array-like of bool, optional
        True for the pixels to use; pixels where the truth or any sample is NaN are left
        out.
    fair : bool, optional
        False (default): the standard form, ``E|X - X'|`` over all ``m**2`` ordered pairs;
        this is the exact CRPS of the empirical distribution of the samples, which is
        larger than that of the distribution they are drawn from by about
        ``E|X - X'| / (2 m)`` (``std / (m sqrt(pi))`` for a Gaussian). True: the fair
        form of Ferro (2014), over the ``m (m - 1)`` pairs of distinct samples, an
        unbiased estimate of the CRPS of the underlying distribution (needs ``m >= 2``);
        use it to compare ensembles of different sizes.

    Returns
    -------
    float
        The CRPS averaged over the used pixels. An ensemble of identical samples scores
        its absolute error.
    """
    v = _gather([("truth", truth)], mask, samples=("samples", samples), axis=axis)
    x, y = np.sort(v["samples"], axis=0), v["truth"]
    m = len(x)
    if fair and m < 2:
        raise ValueError(f"the fair CRPS needs at least 2 samples, got {m}")
    error = np.mean(np.abs(x - y), axis=0)
    weights = (2 * np.arange(1, m + 1) - m - 1).astype(np.float64)
    # sum over ordered pairs of |x_i - x_j| is 2 * sum_i (2 i - m - 1) x_(i)
    pair_sum = 2 * np.tensordot(weights, x, axes=(0, 0))
    spread = pair_sum / (m * (m - 1) if fair else m * m)
    return float(np.mean(error - 0.5 * spread))


# -- data consistency --------------------------------------------------------------------

def chi2_consistency(observed, model, sigma, *, mask=None, dof_correction=0):
    """Chi-square of a re-degraded model image against the observed data.

    With no truth to compare to, an enhanced image can still be checked against the
    input: degrade it back to the observation (PSF, pixel grid) and compare with the
    observed image in units of its noise. ``chi2 / dof`` near 1 says the model explains
    the data down to the noise; well above 1, it misses structure (or the noise is
    underestimated); well below 1, it fits the noise too.

    Parameters
    ----------
    observed : array-like
        The observed image(s).
    model : array-like
        The model re-degraded to the observation, same shape.
    sigma : array-like or float
        The observed image's noise standard deviation; must be > 0 where used.
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.
    dof_correction : int, optional
        Number of fitted parameters to take off the number of pixels.

    Returns
    -------
    dict
        ``{"chi2": float, "dof": int, "chi2_dof": float}`` with
        ``chi2 = sum(((observed - model) / sigma)**2)`` and
        ``dof = n_pixels - dof_correction``. For pure noise ``chi2_dof`` is 1 with a
        standard deviation of ``sqrt(2 / dof)`` (for independent pixels).
    """
    dof_correction = _int(dof_correction, "dof_correction", 0)
    v = _gather([("observed", observed), ("model", model), ("sigma", sigma)], mask,
                scalar_ok=("sigma",), positive=("sigma",))
    n = len(v["observed"])
    dof = n - dof_correction
    if dof < 1:
        raise ValueError(f"dof_correction ({dof_correction}) leaves no degree of freedom "
                         f"for {n} pixel(s)")
    chi2 = float(np.sum(((v["observed"] - v["model"]) / v["sigma"]) ** 2))
    return {"chi2": chi2, "dof": dof, "chi2_dof": chi2 / dof}


# -- recalibration and summary -----------------------------------------------------------

def fit_std_scale(truth, mean, std, *, level=0.68, mask=None, extra_variance=None):
    """Factor on the std that makes the central interval of ``level`` cover as it should.

    Split-conformal calibration (e.g. Angelopoulos & Bates 2023): with the scores
    ``s = |truth - mean| / (z_level * std)`` of ``n`` held-out pixels, the factor is
    their ``k``-th smallest value, ``k = ceil((n + 1) * level)``, the finite-sample
    conformal quantile. The interval ``mean +- c * z_level * std`` then covers ``k / n``
    (at least ``level``) of these pixels and, for a new pixel exchangeable with them, at
    least ``level`` in expectation. It corrects the width at one level only: check the
    others (`calibration_summary`) after scaling.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values of held-out data, of one shape.
    std : array-like or float
        Predicted standard deviation; must be > 0 where used.
    level : float or sequence of float, optional
        The interval level to match, strictly between 0 and 1. With several levels, the
        geometric mean of their factors: errors with heavier tails than a Gaussian's need
        a wider factor at 95 % than at 68 %, and no single width matches both, so this
        one sits between (68 % over-covers a little, 95 % under-covers a little).
    mask : array-like of bool, optional
        True for the pixels to use (e.g. where there is light); pixels with a NaN in any
        input are left out.
    extra_variance : array-like or float, optional
        Variance added to ``(c * std)**2`` that the factor does not scale: the noise of a
        truth that is itself an observation (a deep image). The factor is then the
        smallest ``c`` whose interval ``mean +- z * sqrt((c * std)**2 + extra)`` covers
        the same ``k`` pixels (found by bisection; the coverage grows with ``c``).

    Returns
    -------
    float
        ``c``: above 1 when the std is too small (over-confident), below 1 when too large.
    """
    levels = _levels(level)
    if len(levels) > 1:
        return float(np.exp(np.mean([
            np.log(fit_std_scale(truth, mean, std, level=one, mask=mask,
                                 extra_variance=extra_variance)) for one in levels])))
    (level,) = levels
    named = [("truth", truth), ("mean", mean), ("std", std)]
    if extra_variance is not None:
        named.append(("extra", np.broadcast_to(extra_variance, np.shape(truth))))
    v = _gather(named, mask, scalar_ok=("std",), positive=("std",))
    z = _z(level)
    n = v["truth"].size
    k = math.ceil((n + 1) * level)
    if k > n:
        raise ValueError(f"{n} pixel(s) are too few for a conformal quantile at level "
                         f"{level}: need at least {math.ceil(level / (1 - level))}")
    error = np.abs(v["truth"] - v["mean"])
    if extra_variance is None:
        return float(np.partition(error / (z * v["std"]), k - 1)[k - 1])
    low, high = 1e-6, 1e6
    for _ in range(80):  # bisection on a log scale: covered pixels grow with c
        middle = np.sqrt(low * high)
        covered = np.sum(error <= z * np.sqrt((middle * v["std"]) ** 2 + v["extra"]))
        low, high = (middle, high) if covered < k else (low, middle)
    return float(high)


def calibration_summary(truth, mean, std, *, mask=None, n_samples=None):
    """The calibration figures a benchmark prints, from one validated set of pixels.

    Parameters
    ----------
    truth, mean : array-like
        True and predicted values, of one shape.
    std : array-like or float
        Predicted standard deviation; must be > 0 where used.
    mask : array-like of bool, optional
        True for the pixels to use; pixels with a NaN in any input are left out.
    n_samples : int, optional
        Ensemble size when ``mean`` and ``std`` come from samples; corrects the
        spread-skill ratio only (see `spread_skill_ratio`).

    Returns
    -------
    dict
        Plain floats: ``coverage_68`` and ``coverage_95`` (`interval_coverage`), ``ece``
        (`regression_ece`, 10 levels), ``z_mean`` and ``z_var`` (`zscore_stats`),
        ``spread_skill`` (`spread_skill_ratio`), ``crps`` (`crps_gaussian`) and
        ``n_pixels`` (int).
    """
    if n_samples is not None:
        n_samples = _int(n_samples, "n_samples", 2)
    v = _gather([("truth", truth), ("mean", mean), ("std", std)], mask, scalar_ok=("std",),
                positive=("std",))
    y, mu, sd = v["truth"], v["mean"], v["std"]
    z = (y - mu) / sd
    coverage = _coverage(y, mu, sd, (0.68, 0.95))
    moments = _zstats(z)
    return {"coverage_68": coverage[0.68], "coverage_95": coverage[0.95],
            "ece": _ece(z, 10)["ece"], "z_mean": moments["mean"],
            "z_var": moments["variance"], "spread_skill": _spread_skill(y, mu, sd, n_samples),
            "crps": _crps_gaussian(y, mu, sd), "n_pixels": len(y)}
