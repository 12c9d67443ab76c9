"""Calibration where it matters: per bin of brightness, class or SNR, and over whole images.

`lensenhance.evaluate.uncertainty` says whether error bars are honest *on average* over
the pixels it is given. One std factor can be right on average and wrong on the faint
arcs that carry the science; these functions split the check:

* `binned_calibration`: 68 % / 95 % coverage and ECE in bins of any per-pixel quantity
  (the truth's brightness, the SNR) or per group label (the class of each cutout);
* `tarp_coverage`: the joint check of Lemos et al. (2023, "Sampling-Based Accuracy
  Testing of Posterior Estimators for General Inference", ICML, arXiv:2302.03026): each
  cutout's samples are a posterior over the whole image, and the expected coverage of
  balls around reference points (other cutouts' truths, or the paper's random points in
  the per-pixel box) is the diagonal for a calibrated posterior; the area between them
  (ATC) is near 0, with a bootstrap interval.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid

from .._validation import check_int
from .uncertainty import interval_coverage, regression_ece

__all__ = ["binned_calibration", "decile_edges", "tarp_coverage"]


def decile_edges(values, mask=None, *, n_bins=10):
    """Edges of ``n_bins`` bins of (nearly) equal counts of the finite ``values[mask]``."""
    n_bins = check_int(n_bins, "n_bins", 1)
    values = np.asarray(values, dtype=np.float64)
    used = np.isfinite(values) if mask is None else np.isfinite(values) & np.asarray(mask)
    if not used.any():
        raise ValueError("no finite value to bin")
    return np.quantile(values[used], np.linspace(0, 1, n_bins + 1))


def binned_calibration(truth, mean, std, *, by, edges=None, mask=None, min_pixels=50):
    """Coverage at 68 % and 95 % and the ECE of a Gaussian prediction, per bin of ``by``.

    Parameters
    ----------
    truth, mean, std : array-like
        As for `~lensenhance.evaluate.uncertainty.interval_coverage` (one shape).
    by : array-like
        The per-pixel quantity to bin on (same shape as ``truth``: the truth's
        brightness, the SNR, or a label broadcast over each cutout's pixels).
    edges : array-like, optional
        Bin edges (the last bin includes its upper edge). Default: the unique values of
        ``by`` are the bins when it holds integers (labels), deciles otherwise.
    mask : array-like of bool, optional
        True for the pixels to use.
    min_pixels : int, optional
        Bins with fewer pixels report NaN figures (and their count).

    Returns
    -------
    list of dict
        One per bin: ``low``, ``high`` (or ``label``), ``n_pixels``, ``coverage_68``,
        ``coverage_95``, ``ece``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    by = np.broadcast_to(np.asarray(by), truth.shape)
    base = np.ones(truth.shape, bool) if mask is None else np.asarray(mask, bool)
    min_pixels = check_int(min_pixels, "min_pixels", 1)
    if edges is None and np.issubdtype(by.dtype, np.integer):
        groups = [({"label": int(label)}, base & (by == label))
                  for label in np.unique(by[base])]
    else:
        edges = decile_edges(by, base) if edges is None else np.asarray(edges, np.float64)
        groups = []
        for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
            upper = by <= high if k == len(edges) - 2 else by < high
            groups.append(({"low": float(low), "high": float(high)},
                           base & (by >= low) & upper))
    rows = []
    for key, selected in groups:
        count = int(selected.sum())
        row = {**key, "n_pixels": count, "coverage_68": float("nan"),
               "coverage_95": float("nan"), "ece": float("nan")}
        if count >= min_pixels:
            coverage = interval_coverage(truth, mean, std, levels=(0.68, 0.95),
                                         mask=selected)
            row.update(coverage_68=coverage[0.68], coverage_95=coverage[0.95],
                       ece=regression_ece(truth, mean, std, mask=selected)["ece"])
        rows.append(row)
    return rows


def tarp_coverage(samples, truth, *, references="prior", n_references=16, n_levels=101,
                  n_bootstrap=100, seed=0):
    """TARP expected coverage of posterior samples of whole images (or parameter vectors).

    For each case ``i`` and reference point ``r``, ``f`` is the share of its samples
    nearer to ``r`` than its truth is. The expected coverage of the credibility level
    ``alpha`` is the share of ``f < alpha``; for a calibrated posterior it equals
    ``alpha`` at every level, for any references drawn independently of the case's truth
    (Lemos et al. 2023, their theorem 3).

    Parameters
    ----------
    samples : array-like, shape (n_samples, n_cases, ...)
        Posterior draws; every axis after the second is flattened into the dimension.
    truth : array-like, shape (n_cases, ...)
    references : {"prior", "box"}, optional
        ``"prior"``: each case is checked against the truths of ``n_references`` other
        cases (draws from the prior, independent of its own truth), with distances in the
        data's own unit: every pixel of an image counts in its flux. ``"box"``: the
        paper's set-up for parameters of unlike units (the ``tarp`` package with
        ``norm=True``): each dimension scaled to the truths' range, one reference per case
        uniform in that box. For images the box weights each pixel by one over the
        spread of the truths there, so the faint sky, where noise-free truths hardly vary,
        outweighs the lens, and truths lie in their own box while samples need not:
        where a posterior is wider than the truths' spread the check saturates (every
        ``f`` 0, ATC +0.125).
    n_references : int, optional
        Other cases per case with ``"prior"`` (at most ``n_cases - 1``); the coverage is
        the mean over every (case, reference) pair, which only lowers its noise.
    n_levels : int, optional
        Credibility levels from 0 to 1.
    n_bootstrap : int, optional
        Resamples of the cases for the interval of the ATC.
    seed : int, optional
        Seed of the references and the bootstrap.

    Returns
    -------
    dict
        ``alpha`` and ``ecp`` (arrays), ``atc`` (the integral of ``ecp - alpha`` over
        ``alpha`` in [0.5, 1]: 0 when calibrated, negative for over-confident samples,
        positive for under-confident ones), ``atc_interval`` (the bootstrap 2.5 and 97.5
        percentiles), ``max_deviation`` (the largest ``|ecp - alpha|``), ``n_cases``,
        ``n_samples``, ``references``, ``n_references``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if samples.ndim < 2 or samples.shape[1:] != truth.shape:
        raise ValueError(f"samples must be (n_samples, *truth.shape) = (n, {truth.shape}), "
                         f"got {samples.shape}")
    n_samples, n_cases = samples.shape[:2]
    if n_cases < 2 or n_samples < 2:
        raise ValueError("TARP needs at least 2 cases and 2 samples of each")
    samples = samples.reshape(n_samples, n_cases, -1)
    truth = truth.reshape(n_cases, -1)
    if not (np.all(np.isfinite(samples)) and np.all(np.isfinite(truth))):
        raise ValueError("samples and truth must be finite")
    rng = np.random.default_rng(seed)
    if references == "prior":
        k = min(check_int(n_references, "n_references", 1), n_cases - 1)
        # case i against the truths of cases i + shift (mod n): never its own
        shifts = rng.choice(np.arange(1, n_cases), size=k, replace=False)
        chosen = [truth[(np.arange(n_cases) + shift) % n_cases] for shift in shifts]
    elif references == "box":
        low, span = truth.min(0), np.ptp(truth, axis=0)
        span = np.where(span > 0, span, 1.0)
        samples, truth = (samples - low) / span, (truth - low) / span
        chosen = [rng.uniform(0.0, 1.0, size=truth.shape)]
    else:
        raise ValueError(f"references must be 'prior' or 'box', got {references!r}")
    # |s - r|^2 < |t - r|^2 is |s|^2 - 2 s.r < |t|^2 - 2 t.r: no sample-sized temporaries
    s_norm = np.einsum("sck,sck->sc", samples, samples)
    t_norm = np.einsum("ck,ck->c", truth, truth)
    f = np.stack([(s_norm - 2 * np.einsum("sck,ck->sc", samples, r)
                   < t_norm - 2 * np.einsum("ck,ck->c", truth, r)).mean(0)
                  for r in chosen], axis=1)  # (n_cases, n_references)
    alpha = np.linspace(0.0, 1.0, check_int(n_levels, "n_levels", 3))

    def expected_coverage(values):
        return (values.reshape(-1)[None, :] < alpha[:, None]).mean(1)

    upper = alpha >= 0.5

    def area(ecp):
        return float(trapezoid(ecp[upper] - alpha[upper], alpha[upper]))

    ecp = expected_coverage(f)
    boots = [area(expected_coverage(f[rng.integers(0, n_cases, n_cases)]))
             for _ in range(check_int(n_bootstrap, "n_bootstrap", 1))]
    return {"alpha": alpha, "ecp": ecp, "atc": area(ecp),
            "atc_interval": [float(np.percentile(boots, 2.5)),
                             float(np.percentile(boots, 97.5))],
            "max_deviation": float(np.abs(ecp - alpha).max()), "n_cases": int(n_cases),
            "n_samples": int(n_samples), "references": references,
            "n_references": len(chosen)}
