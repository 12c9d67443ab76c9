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

__all__ = ["posterior_figures", "light_mask", "arc_mask", "fine_scale_power_ratio",
           "calibration_by_bin", "format_calibration_bins", "FINE_SCALE", "SNR_EDGES"]

#: Frequencies above this (cycles per pixel: half the Nyquist frequency) are "fine-scale".
FINE_SCALE = 0.25

#: Bins of the predicted per-pixel SNR, ``|mean| / std``.
SNR_EDGES = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, np.inf)


def light_mask(truths):
    """Pixels "where there is light": above the median of their own truth image."""
    truths = np.asarray(truths)
    medians = np.median(truths.reshape(len(truths), -1), axis=1)[:, None, None]
    return truths > medians


def arc_mask(truths, lens_light):
    """Lensed-arc pixels: light pixels (`light_mask`) where the source's light dominates.

    The source's light is the truth minus the lens galaxy's light model, so these are the
    pixels with ``truths - lens_light >= lens_light``, i.e. ``truths >= 2 * lens_light``
    (every light pixel where the lens light is zero).

    Parameters
    ----------
    truths : numpy.ndarray ``(n, sy, sx)``
        Noise-free images.
    lens_light : numpy.ndarray ``(n, sy, sx)``
        Their lens galaxy's light alone, in the same units and on the same grid
        (`lensenhance.simulate.render.lens_light_images`).

    Returns
    -------
    numpy.ndarray of bool ``(n, sy, sx)``
    """
    truths = np.asarray(truths)
    lens_light = np.asarray(lens_light)
    if lens_light.shape != truths.shape:
        raise ValueError(f"lens_light has shape {lens_light.shape}, truths {truths.shape}")
    return light_mask(truths) & (truths >= 2 * lens_light)


def fine_scale_power_ratio(images, truths):
    """Power above half the Nyquist frequency of ``images`` over that of ``truths``."""
    k, p_images = radial_power_spectrum(images)
    _, p_truths = radial_power_spectrum(truths)
    fine = k > FINE_SCALE
    return float(p_images[fine].sum() / p_truths[fine].sum())


def calibration_by_bin(truths, means, stds, *, classes=None, class_names=None,
                       backgrounds=None, noise=None, arcs=None):
    """Coverage and ECE per bin: where the error bars hold and where they do not.

    Bins: deciles of the truth's brightness among the pixels where there is light
    (`light_mask`), deciles of the posterior mean's brightness where it shows light (the
    bins an exact posterior holds: it covers 68 % given what it sees, and shrinkage
    moves coverage between bins of the truth), the predicted SNR ``|mean| / std``
    (`SNR_EDGES`, all pixels), given ``backgrounds`` (each image's background level,
    broadcastable to ``means``) the predicted SNR above it, ``|mean - background| /
    std`` (the signal the models see, and their SNR calibration's variable), given
    ``noise`` (the input's noise on the outputs' grid) the mean's SNR against it, ``|mean|
    / noise`` (a pixel's SNR as a survey reports it; the denoisers' calibration groups),
    given ``classes`` (one label per image) each class over its light pixels, and given
    ``arcs`` (a pixel mask, e.g. `arc_mask`) the lensed-arc pixels as one bin.

    Parameters
    ----------
    truths, means, stds : array-like ``(n, sy, sx)``
    classes : array-like of int ``(n,)``, optional
        A label per image; ``class_names`` name the labels.
    backgrounds : array-like, optional
        Each image's background level, broadcastable to ``means``.
    noise : array-like, optional
        The input's noise on the outputs' grid, broadcastable to ``means``
        (`lensenhance.benchmark._runs.input_noise`).
    arcs : array-like of bool ``(n, sy, sx)``, optional
        True on the lensed-arc pixels (`arc_mask`: light pixels where the lensed source
        is at least as bright as the lens galaxy).

    Returns
    -------
    dict
        ``brightness``, ``mean_brightness``, ``snr``, (with ``backgrounds``)
        ``snr_background``, (with ``noise``) ``snr_noise``, (with ``classes``)
        ``class`` and (with ``arcs``) ``arc``: lists of the rows of
        `~lensenhance.evaluate.calibration_bins.binned_calibration` (``arc``: one row,
        ``label`` ``"arc"``, NaN figures under its ``min_pixels``); ``span_68``: the
        lowest and highest 68 % coverage over the brightness deciles.
    """
    from .calibration_bins import binned_calibration

    truths, means, stds = (np.asarray(a, np.float64) for a in (truths, means, stds))
    light = light_mask(truths)
    out = {"brightness": binned_calibration(truths, means, stds, by=truths, mask=light),
           "mean_brightness": binned_calibration(truths, means, stds, by=means,
                                                 mask=light_mask(means)),
           "snr": binned_calibration(truths, means, stds, by=np.abs(means) / stds,
                                     edges=SNR_EDGES)}
    if backgrounds is not None:
        above = np.abs(means - np.asarray(backgrounds, np.float64)) / stds
        out["snr_background"] = binned_calibration(truths, means, stds, by=above,
                                                   edges=SNR_EDGES)
    if noise is not None:
        from ..predict.snr_factor import noise_snr

        out["snr_noise"] = binned_calibration(truths, means, stds,
                                              by=noise_snr(means, noise), edges=SNR_EDGES)
    if classes is not None:
        labels = np.broadcast_to(np.asarray(classes).reshape(-1, 1, 1), truths.shape)
        rows = binned_calibration(truths, means, stds, by=labels.astype(np.int64),
                                  mask=light)
        if class_names is not None:
            for row in rows:
                row["label"] = str(class_names[row["label"]])
        out["class"] = rows
    if arcs is not None:
        arcs = np.asarray(arcs, bool)
        if arcs.shape != truths.shape:
            raise ValueError(f"arcs has shape {arcs.shape}, truths {truths.shape}")
        rows = binned_calibration(truths, means, stds, by=np.zeros(truths.shape, np.int64),
                                  mask=arcs)
        row = rows[0] if rows else {"n_pixels": 0, "coverage_68": float("nan"),
                                    "coverage_95": float("nan"), "ece": float("nan")}
        out["arc"] = [{**row, "label": "arc"}]
    coverage = [r["coverage_68"] for r in out["brightness"] if np.isfinite(r["coverage_68"])]
    out["span_68"] = [float(min(coverage)), float(max(coverage))] if coverage else None
    return out


def format_calibration_bins(figures, *, indent="  "):
    """Text lines of the per-bin 68 % coverage and the TARP check in ``figures``.

    ``figures`` is a `posterior_figures` result; results without the bins give no lines.
    """
    bins = figures.get("calibration_bins")
    lines = []
    if bins:
        def cells(rows):
            return " ".join(f"{r['coverage_68']:.2f}" if np.isfinite(r["coverage_68"])
                            else "-" for r in rows)

        lines.append(f"{indent}68% coverage by truth-brightness decile (light pixels): "
                     f"{cells(bins['brightness'])}")
        if "mean_brightness" in bins:
            lines.append(f"{indent}68% coverage by decile of the mean's brightness (its "
                         f"light pixels): {cells(bins['mean_brightness'])}")
        lines.append(f"{indent}68% coverage by predicted SNR bin "
                     + ", ".join(f"[{r['low']:g}, {r['high']:g})" for r in bins["snr"])
                     + f": {cells(bins['snr'])}")
        if "snr_background" in bins:
            lines.append(f"{indent}68% coverage by predicted SNR above the input's "
                         f"background, same bins: {cells(bins['snr_background'])}")
        if "snr_noise" in bins:
            lines.append(f"{indent}68% coverage by the mean's SNR against the input's noise,"
                         f" same bins: {cells(bins['snr_noise'])} (pixels "
                         + " ".join(str(r["n_pixels"]) for r in bins["snr_noise"]) + ")")
        if "class" in bins:
            lines.append(f"{indent}68% coverage by class: " + ", ".join(
                f"{r['label']} {r['coverage_68']:.2f}" for r in bins["class"]))
        if "arc" in bins:
            arc = bins["arc"][0]
            lines.append(f"{indent}68% coverage on lensed-arc pixels (source >= lens light): "
                         f"{arc['coverage_68']:.2f} ({arc['n_pixels']} px)")
    labels = {"tarp": "TARP over whole images", "tarp_box": "TARP in the per-pixel box"}
    for key, label in labels.items():
        if key not in figures:
            continue
        tarp = figures[key]
        low, high = tarp["atc_interval"]
        where = {"prior": f"references: {tarp['n_references']} other images' truths",
                 "box": "each pixel scaled to the truths' range"}[tarp["references"]]
        lines.append(f"{indent}{label}: ATC {tarp['atc']:+.3f} [{low:+.3f}, {high:+.3f}] "
                     f"(0 when calibrated; n={tarp['n_cases']} images x "
                     f"{tarp['n_samples']} samples; {where})")
    return lines


def posterior_figures(truths, means, stds=None, samples=None, *, observed=None, sigmas=None,
                      scale=1, extra_variance=None, classes=None, class_names=None,
                      backgrounds=None, noise=None, arcs=None):
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
    classes : array-like of int ``(n,)``, optional
        A label per image (e.g. its substructure class), for the calibration per class;
        ``class_names`` name the labels.
    backgrounds : numpy.ndarray ``(n, 1, 1)``, optional
        Each input's background level in the outputs' units
        (`lensenhance.benchmark._runs.input_backgrounds`), for the calibration per SNR
        above it.
    noise : numpy.ndarray, optional
        The input's noise on the outputs' grid (`lensenhance.benchmark._runs.input_noise`),
        for the calibration per SNR of the mean against it.
    arcs : numpy.ndarray of bool ``(n, sy, sx)``, optional
        The lensed-arc pixels (`arc_mask`), for their calibration as one bin.

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
        out["calibration_bins"] = calibration_by_bin(truths, means, stds, classes=classes,
                                                     class_names=class_names,
                                                     backgrounds=backgrounds, noise=noise,
                                                     arcs=arcs)
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
        if len(truths) >= 2 and moved.shape[0] >= 2:
            from .calibration_bins import tarp_coverage

            # Each cutout's samples as one posterior over the whole image: against other
            # cutouts' truths in flux units, and in the paper's per-pixel box beside it.
            for key, references in (("tarp", "prior"), ("tarp_box", "box")):
                tarp = tarp_coverage(moved, truths, references=references)
                out[key] = {k: tarp[k] for k in ("atc", "atc_interval", "max_deviation",
                                                  "n_cases", "n_samples", "references",
                                                  "n_references")}
    out["fine_power_ratio_mean"] = fine_scale_power_ratio(means, truths)
    if observed is not None and sigmas is not None:
        from astropy.nddata import block_reduce

        redegraded = np.stack([block_reduce(m, scale, func=np.sum) if scale > 1 else m
                               for m in means])
        out["data_consistency"] = unc.chi2_consistency(np.asarray(observed, np.float64),
                                                       redegraded, np.asarray(sigmas,
                                                                              np.float64))
    return out
