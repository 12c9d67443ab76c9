"""The ``denoise`` benchmark, and the posterior figures shared with ``benchmark sr``.

Simulated: a fixed-seed held-out set of Model II (Euclid VIS-like) shallow observations
over the denoisers' range of exposure times (`lensenhance.training.posterior.snr_pairs`),
each with its exact sigma map, against the noise-free sky. Real (``real=DIR``): the
``val`` split of the HSC Wide -> Deep/UltraDeep pairs, given no sigma (the models estimate
the Wide noise), against the deep image, whose own sky noise is estimated and added in
quadrature to the models' standard deviation when the intervals are scored.

Every method runs through `lensenhance.Enhancer`: the diffusion models (posterior mean,
standard deviation and samples), the deterministic RAUNet, and the classical denoisers of
`lensenhance.benchmark.classical`, each at the strength that is best on a separate tuning
set. PSNR and SSIM are per image against the truth with the truth's range, given as mean
and standard error; the calibration figures pool the pixels "where there is light" (above
each truth image's median); the fine-scale power compares single samples' power above
half the Nyquist frequency with the truth's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..evaluate.metrics import paired_differences as _paired
from ..evaluate.scoring import arc_mask, format_calibration_bins, light_mask, posterior_figures
from ..evaluate.uncertainty import fit_std_scale
from ._runs import input_backgrounds, input_noise, run_enhancer, split_steps

__all__ = ["benchmark_denoise", "fit_calibration",
           "calibration_set",
           "CALIBRATION_SEED", "TUNING_SEED", "format_denoise_table"]

#: Seed of the held-out calibration set (never used for training or the benchmark).
CALIBRATION_SEED = 20261123
#: Seed of the set on which the classical denoisers' strengths are tuned.
TUNING_SEED = 20261124


def _coverage(truths, means, stds, extra_variance, scale, mask, z):
    total = np.sqrt((scale * stds) ** 2 + extra_variance)
    return float(np.mean((np.abs(truths - means) <= z * total)[mask]))


def fit_calibration(predictor_path, images, sigmas, truths, *, extra_variance=None,
                    level=0.68, n_samples=16, seed=CALIBRATION_SEED, description="",
                    steps=None, snr_bins=False, snr_groups="background"):
    """The factor on a posterior model's standard deviation that makes its intervals cover.

    Runs the model (with ``std_scale`` 1) on a held-out calibration set and finds, by
    bisection, the factor ``c`` for which ``|truth - mean| <= z * sqrt((c * std)**2 +
    extra)`` holds for ``level`` of the pixels where there is light (``extra``: the
    variance of a truth that is itself an observation; 0 for the noise-free sky).

    Parameters
    ----------
    predictor_path : path-like
        Weights of a posterior model.
    images, sigmas, truths : numpy.ndarray
        The calibration set (``sigmas`` None: estimated, as for an image without one).
    steps : int, optional
        Sampler steps (default: the model's); the factor holds for these.
    snr_bins : bool, optional
        Also fit a factor that depends on each pixel's signal: its SNR above the data's
        zero in groups (``snr_groups``)
        (`lensenhance.evaluate.snr_calibration.fit_snr_calibration`, on every pixel),
        returned as ``snr_bins`` with its coverage.
    snr_groups : {'background', 'noise', 'both'}, optional
        The SNR factor's groups: of each pixel's level between zero and the input's
        background, of its mean's SNR against the input's noise (the given sigma, or
        the sky noise the Enhancer estimates), or of both.

    Returns
    -------
    dict
        ``std_scale``, ``level``, ``n`` (images), ``n_pixels``, ``n_samples``, ``seed``,
        the coverage at 68 % and 95 % before and after, and the set's description.
    """
    from scipy.stats import norm

    from ..enhance.enhancer import Enhancer
    from ..predict.loading import load_predictor
    from ..predict.snr_factor import CONTEXTS, snr_std_factor

    if snr_groups not in CONTEXTS:  # before the model runs on the whole set
        raise ValueError(f"snr_groups must be one of {CONTEXTS}, got {snr_groups!r}")
    predictor = load_predictor(predictor_path, n_samples=n_samples, std_scale=1.0,
                               steps=steps, snr_calibration={})
    result = run_enhancer(Enhancer(predictor, device="cpu"), images, sigmas, seed=seed)
    truths = np.asarray(truths, np.float64)
    means, stds = result["mean"].astype(np.float64), result["std"].astype(np.float64)
    extra = np.zeros((len(truths), 1, 1)) if extra_variance is None else \
        np.asarray(extra_variance, np.float64).reshape(-1, 1, 1)
    mask = light_mask(truths)
    # one calibration rule for every model: the evaluation layer's conformal factor
    factor = fit_std_scale(truths, means, stds, level=level, mask=mask,
                           extra_variance=extra)

    def cover(c):
        return {str(lv): _coverage(truths, means, stds, extra, c, mask, norm.ppf((1 + lv) / 2))
                for lv in (0.68, 0.95)}

    result = {"std_scale": factor, "level": level, "n": int(len(truths)),
            "n_pixels": int(mask.sum()), "n_samples": int(n_samples),
            "steps": int(predictor.steps), "seed": int(seed),
            "mask": "truth > its median", "set": description,
            "coverage_before": cover(1.0), "coverage_after": cover(factor)}
    if snr_bins:
        from ..evaluate.snr_calibration import fit_snr_calibration

        backgrounds = input_backgrounds(images, predictor.scale)
        noise = (None if snr_groups == "background"
                 else input_noise(images, sigmas, predictor.scale))
        table = fit_snr_calibration(truths, means, stds, background=backgrounds, noise=noise,
                                    context=snr_groups, level=level)
        scaled = snr_std_factor(means - backgrounds, stds, table, -backgrounds, noise=noise)
        table["coverage_after"] = {
            str(lv): _coverage(truths, means, stds * scaled, extra, 1.0, mask,
                               norm.ppf((1 + lv) / 2)) for lv in (0.68, 0.95)}
        result["snr_bins"] = table
    return result


def calibration_set(kind, *, n=64, hsc_dir=None, workers=1):
    """The held-out calibration set of a posterior model (never trained or benchmarked on).

    Returns
    -------
    dict
        ``images``, ``sigmas`` (None for HSC: estimated), ``truths``, ``extra_variance``
        (None: the truth is scored as it is), ``description``.
    """

    if hsc_dir is not None:
        from ..training.posterior import hsc_pairs

        wide, deep, _ = hsc_pairs(hsc_dir, "calibration", n=n)
        return {"images": wide, "sigmas": None, "truths": deep, "extra_variance": None,
                "description": f"{len(wide)} HSC train pairs held back from fine-tuning "
                               "(the last in catalog order), no sigma given; truth: the "
                               "deep image (the posterior is of the deep image)"}
    if kind == "denoise":
        from ..training.posterior import snr_pairs

        data = snr_pairs(n, seed=CALIBRATION_SEED, workers=workers, progress=False)
        return {"images": data["low"], "sigmas": data["low_sigma"], "truths": data["clean"],
                "extra_variance": None,
                "description": f"{n} simulated model_ii shallow observations, seed "
                               f"{CALIBRATION_SEED}, exact sigma; truth: noise-free sky"}
    from ..training.data import simulated_pairs

    ds = simulated_pairs(n, preset="model_i", scale=2, seed=CALIBRATION_SEED, workers=workers,
                         progress=False)
    return {"images": ds["lr"].values.astype(np.float32),
            "sigmas": ds["lr_sigma"].values.astype(np.float32),
            "truths": ds["hr"].values.astype(np.float32), "extra_variance": None,
            "description": f"{n} simulated model_i x2 pairs, seed {CALIBRATION_SEED}, exact "
                           "sigma; truth: noise-free HR"}


def _enhancer(spec, *, n_samples=None, steps=None):
    """An Enhancer from a shipped name or a weights file (``NAME@K``: at ``K`` steps);
    sampling options if it samples."""
    from ..enhance.enhancer import Enhancer
    from ..predict.loading import is_probabilistic

    spec, spec_steps = split_steps(spec)
    if not is_probabilistic(spec):
        if spec_steps is not None:
            raise ValueError(f"{spec!r}: steps apply to diffusion (posterior) models only")
        n_samples = steps = None
    return Enhancer.open(spec, device="cpu", n_samples=n_samples,
                         steps=spec_steps if spec_steps is not None else steps)


def _classical_rows(noisy, sigmas, truths, tune, *, progress=False):
    from .classical import CLASSICAL_DENOISERS, denoise_classical, tune_classical

    rows = {}
    for method in CLASSICAL_DENOISERS:
        tuned = tune_classical(method, *tune)
        start = time.perf_counter()
        means = np.stack([denoise_classical(method, image, sigma, strength=tuned["strength"])
                          for image, sigma in zip(noisy, sigmas)])
        seconds = (time.perf_counter() - start) / len(noisy)
        rows[method] = {"figures": posterior_figures(truths, means), "tuning": tuned,
                        "seconds_per_image": seconds}
    return rows


def benchmark_denoise(*, n=100, models=("diffusion-denoise", "raunet-denoise"), n_samples=16,
                      steps=None, n_tune=24, real=None, plot_dir=None, n_plots=4, workers=1,
                      seed=None, progress=False):
    """Every denoiser on one held-out set: accuracy, calibration, fine-scale power, speed.

    Parameters
    ----------
    n : int
        Test images (simulated), or at most this many HSC ``val`` pairs with ``real``.
    models : sequence of str
        Shipped names or weights files.
    n_samples, steps : int, optional
        Posterior samples and sampler steps of the diffusion models.
    n_tune : int
        Images on which the classical denoisers' strengths are tuned (a set apart:
        ``TUNING_SEED``, or the HSC ``train`` split).
    real : path-like, optional
        The HSC pairs folder (``catalog.ecsv``); scores on its ``val`` split.
    plot_dir : path-like, optional
        Write a PNG panel (input, mean, std, truth, residual, z) for the first
        ``n_plots`` images of each model that gives a std.

    Returns
    -------
    dict
        ``rows`` (method -> figures), the set's description and the command settings.
    """
    from ..training.posterior import snr_pairs
    from .sr import BENCHMARK_SEED

    seed = BENCHMARK_SEED if seed is None else int(seed)
    if real is None:
        data = snr_pairs(n, seed=seed, workers=workers, progress=progress)
        tune_data = snr_pairs(n_tune, seed=TUNING_SEED, workers=workers, progress=False)
        noisy, sigmas, truths = data["low"], data["low_sigma"], data["clean"]
        given_sigmas = sigmas
        tune = (tune_data["low"], tune_data["low_sigma"], tune_data["clean"])
        extra = None
        classes, class_names = data["label"], ("no_sub", "cdm", "axion")  # snr_pairs' order
        arcs = _arcs(truths, data, class_names)
        description = (f"{n} simulated model_ii shallow observations, exposure 10^U"
                       f"{tuple(data['attrs']['exposure_log10'])} s per exposure, seed {seed}"
                       ", exact sigma given; truth: the noise-free sky")
    else:
        noisy, truths, tune = _hsc_arrays(real, n, n_tune)
        from ..predict.posterior import estimate_sigma
        from ..training.posterior import noise_correlation

        sigmas = np.stack([np.full(im.shape, estimate_sigma(im), np.float32) for im in noisy])
        given_sigmas = None
        classes = class_names = arcs = None  # real cutouts: no class, no lens light model
        # The deep image is itself an observation, and its noise is largely shared with
        # the Wide image's (rho): the models' posterior is of the deep image, scored as
        # it is; the quadrature variant is reported beside it.
        extra = None
        correlation = noise_correlation(noisy, truths)
        deep_variance = np.array([estimate_sigma(t) ** 2 for t in truths])
        description = (f"{len(noisy)} HSC Wide -> Deep/UltraDeep 'val' pairs from {real}, "
                       "no sigma given (estimated from the Wide image); truth: the deep "
                       "image (Wide/Deep noise correlation rho = "
                       f"{correlation['rho']:.2f})")
    rows = {}
    backgrounds = input_backgrounds(noisy, 1)
    noise = input_noise(noisy, given_sigmas, 1)
    for spec in models:
        enhancer = _enhancer(spec, n_samples=n_samples, steps=steps)
        gives_samples = enhancer.predictor.n_samples > 0
        result = run_enhancer(enhancer, noisy, given_sigmas, samples=gives_samples,
                              seed=seed)
        figures = posterior_figures(truths, result["mean"], result["std"], result["samples"],
                                    observed=noisy, sigmas=sigmas, extra_variance=extra,
                                    backgrounds=backgrounds, noise=noise, classes=classes,
                                    class_names=class_names, arcs=arcs)
        if real is not None and result["std"] is not None:
            # As if the deep image's noise were independent of the input's.
            figures["calibration_light_deep_noise_added"] = posterior_figures(
                truths, result["mean"], result["std"],
                extra_variance=deep_variance)["calibration_light"]
        rows[str(spec)] = {"figures": figures, "seconds_per_image": result["seconds_per_image"],
                           "n_samples": enhancer.predictor.n_samples,
                           "steps": enhancer.predictor.steps}
        if plot_dir is not None and result["std"] is not None:
            _plots(plot_dir, str(spec), noisy, result, truths, n_plots)
    rows.update(_classical_rows(noisy, sigmas, truths, tune, progress=progress))
    rows["input"] = {"figures": posterior_figures(truths, noisy), "seconds_per_image": 0.0}
    return {"benchmark": "denoise", "n": int(len(noisy)), "set": description, "seed": seed,
            "n_tune": int(len(tune[0])), "rows": rows, "differences": _psnr_differences(rows),
            "noise_correlation": None if real is None else correlation}


def _arcs(truths, data, class_names):
    """The lensed-arc pixels (`lensenhance.evaluate.scoring.arc_mask`) of an `snr_pairs` set.

    Its lens light is re-rendered from each image's seed and class, with the preset as
    `snr_pairs` simulated them (the named one, its exposure time replaced).
    """
    from ..simulate import PRESETS
    from ..simulate.render import lens_light_images
    from ..training.posterior import snr_pairs_overrides

    attrs = data["attrs"]
    preset = PRESETS[attrs["preset"]].replace(**snr_pairs_overrides(attrs["exposure_log10"]))
    lens_light = lens_light_images(preset, [class_names[k] for k in data["label"]],
                                   data["seed"], np.shape(truths)[-1])
    return arc_mask(truths, lens_light)


def _psnr_differences(rows):
    """PSNR differences between the rows on the same images, with standard errors.

    See `lensenhance.evaluate.metrics.paired_differences`.
    """
    return _paired({name: row["figures"]["psnr_per_image"] for name, row in rows.items()
                    if "psnr_per_image" in row["figures"]})


def _hsc_arrays(directory, n, n_tune):
    from ..predict.posterior import estimate_sigma
    from ..training.posterior import hsc_pairs

    wide, deep, _ = hsc_pairs(directory, "val", n=n)
    tune_wide, tune_deep, _ = hsc_pairs(directory, "train", n=n_tune)
    tune_sigma = np.stack([np.full(im.shape, estimate_sigma(im), np.float32)
                           for im in tune_wide])
    return wide, deep, (tune_wide, tune_sigma, tune_deep)


def _plots(plot_dir, name, noisy, result, truths, n_plots):
    from ..evaluate.plots import plot_posterior_panel

    folder = Path(plot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    label = Path(name).name.removesuffix(".safetensors")
    for i in range(min(n_plots, len(noisy))):
        plot_posterior_panel(folder / f"{label}-{i:03d}.png", observed=noisy[i],
                             mean=result["mean"][i], std=result["std"][i], truth=truths[i],
                             title=f"{label}, image {i}")


def format_denoise_table(result):
    """The plain-text table that ``lensenhance benchmark denoise`` prints."""
    header = (f"{'method':<28}{'PSNR':>16}{'SSIM':>16}{'cov68':>7}{'cov95':>7}{'ECE':>7}"
              f"{'z var':>7}{'fine P':>8}{'s/img':>8}")
    lines = [f"{result['set']}", header, "-" * len(header)]
    for method, row in result["rows"].items():
        f = row["figures"]
        cal = f.get("calibration_light", {})
        fine = f.get("fine_power_ratio_single_sample", f.get("fine_power_ratio_mean"))

        def fmt(key, width=7, spec=".3f", cal=cal):
            value = cal.get(key)
            return f"{value:>{width}{spec}}" if value is not None else f"{'-':>{width}}"

        lines.append(
            f"{Path(method).name.removesuffix('.safetensors'):<28}"
            f"{f['psnr']['mean']:>9.2f} ±{f['psnr']['se']:<5.2f}"
            f"{f['ssim']['mean']:>9.4f} ±{f['ssim']['se']:<5.3f}"
            f"{fmt('coverage_68')}{fmt('coverage_95')}{fmt('ece')}{fmt('z_var', spec='.2f')}"
            f"{fine:>8.2f}{row['seconds_per_image']:>8.2f}")
    lines.append("cov68/cov95/ECE/z var: pixels above the median of their truth image; "
                 "fine P: power above half Nyquist, one sample (or the mean) / truth")
    for method, row in result["rows"].items():
        bins = format_calibration_bins(row["figures"])
        if bins:
            lines += [f"{Path(method).name.removesuffix('.safetensors')}:", *bins]
    first = next(iter(result["rows"]))
    for pair, stats in result.get("differences", {}).items():
        if pair.startswith(f"{first} - "):
            verdict = "significant" if stats["significant"] else "not significant"
            lines.append(f"PSNR {pair}: {stats['mean']:+.2f} +- {stats['se']:.2f} dB "
                         f"(paired, n={stats['n']}, {verdict})")
    return "\n".join(lines)
