"""Scores of predictions against truths: accuracy, calibration, sharpness, consistency.

One place for the figures every posterior model is judged by, shared by the benchmarks
(``sr``, ``denoise``), the maintainer's publishing of model cards and the tests: PSNR and
SSIM per image (`lensenhance.evaluate.metrics`), the calibration of the standard deviation where
there is light (`lensenhance.evaluate.uncertainty`), the fine-scale power of single samples and the
chi-square of the mean re-degraded against the input.
"""

from __future__ import annotations

import numpy as np

from .metrics import image_metrics, mean_and_se, radial_power_spectrum

__all__ = ["posterior_figures", "light_mask", "fine_scale_power_ratio", "FINE_SCALE"]

#: Frequencies above this (cycles per pixel: half the Nyquist frequency) are "fine-scale".
FINE_SCALE = 0.25


def light_mask(truths):
    """Pixels "where there is light": above the median of their own truth image."""
    truths = np.asarray(truths)
    medians = np.median(truths.reshape(len(truths), -1), axis=1)[:, None, None]
    return truths > medians


def fine_scale_power_ratio(images, truths):
    """Power above half the Nyquist frequency of ``images`` over that of ``truths``."""
    k, p_images = radial_power_spectrum(images)
    _, p_truths = radial_power_spectrum(truths)
    fine = k > FINE_SCALE
    return float(p_images[fine].sum() / p_truths[fine].sum())


def posterior_figures(truths, means, stds=None, samples=None, *, observed=None, sigmas=None,
                      scale=1, extra_variance=None):
    """Accuracy and calibration figures of predictions against truths.

    Parameters
    ----------
    truths, means : numpy.ndarray ``(n, sy, sx)``
    stds : numpy.ndarray, optional
        Per-pixel standard deviations (calibration figures need them).
    samples : numpy.ndarray ``(n, S, sy, sx)``, optional
        Posterior samples (sample coverage, CRPS, fine-scale power).
    observed, sigmas : numpy.ndarray ``(n, y, x)``, optional
        The input and its sigma, for the data consistency: chi^2/dof of the mean
        re-degraded (summed over ``scale`` x ``scale`` blocks) against the input.
    extra_variance : numpy.ndarray ``(n,)`` or broadcastable, optional
        Variance added to ``stds**2`` (and to the samples' spread) before scoring:
        the noise of a truth that is itself an observation.

    Returns
    -------
    dict
    """
    from . import uncertainty as unc

    truths = np.asarray(truths, np.float64)
    means = np.asarray(means, np.float64)
    per_image = [image_metrics(m, t) for m, t in zip(means, truths)]
    out = {"n": int(len(truths)),
           "psnr": mean_and_se([r["psnr"] for r in per_image]),
           "ssim": mean_and_se([r["ssim"] for r in per_image]),
           "psnr_per_image": [float(r["psnr"]) for r in per_image]}
    mask = light_mask(truths)
    if stds is not None:
        stds = np.asarray(stds, np.float64)
        if extra_variance is not None:
            stds = np.sqrt(stds**2 + np.asarray(extra_variance).reshape(-1, 1, 1))
        n_samples = None if samples is None else np.shape(samples)[1]
        out["calibration_light"] = unc.calibration_summary(truths, means, stds, mask=mask,
                                                           n_samples=n_samples)
        out["calibration_all"] = unc.calibration_summary(truths, means, stds,
                                                         n_samples=n_samples)
    if samples is not None:
        draws = np.asarray(samples, np.float64)
        if extra_variance is not None:
            rng = np.random.default_rng(0)
            draws = draws + rng.standard_normal(draws.shape) * np.sqrt(
                np.asarray(extra_variance)).reshape(-1, 1, 1, 1)
        moved = np.moveaxis(draws, 1, 0)  # (S, n, y, x)
        out["sample_coverage_light"] = {str(k): v for k, v in unc.sample_interval_coverage(
            truths, moved, axis=0, mask=mask).items()}
        out["crps_light"] = float(unc.crps_ensemble(truths, moved, axis=0, mask=mask))
        out["fine_power_ratio_single_sample"] = fine_scale_power_ratio(draws[:, 0], truths)
    out["fine_power_ratio_mean"] = fine_scale_power_ratio(means, truths)
    if observed is not None and sigmas is not None:
        from astropy.nddata import block_reduce

        redegraded = np.stack([block_reduce(m, scale, func=np.sum) if scale > 1 else m
                               for m in means])
        out["data_consistency"] = unc.chi2_consistency(np.asarray(observed, np.float64),
                                                       redegraded, np.asarray(sigmas,
                                                                              np.float64))
    return out
