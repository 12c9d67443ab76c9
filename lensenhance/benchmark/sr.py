"""The ``sr`` benchmark: DeepLense Model-I-like x2 super-resolution, every method, one table.

A fixed-seed held-out set (its seed is never used for training data) is simulated; every
method enhances the same observed LR images through `lensenhance.Enhancer`, so that every
row shares one normalisation; MSE, PSNR and SSIM are computed against the noise-free HR
image in its own flux units with ``data_range`` = the HR image's range (see
`lensenhance.evaluate.metrics`). The oracle row interpolates the *noise-free* LR image (a perfect
denoiser followed by bicubic interpolation), so that super-resolution is told apart from
denoising. The downstream task regresses the Einstein radius with a small ResNet trained
and tested on HR images, on bicubic-interpolated LR and on super-resolved LR.
"""

import time

import numpy as np

from ..evaluate.metrics import batch_metrics, paired_differences, summarize_metrics
from ..evaluate.scoring import format_calibration_bins
from ..simulate.render import bin_image
from . import write_json
from ._runs import input_backgrounds, input_noise, split_steps

__all__ = ["benchmark_sr", "theta_e_regression", "theta_e_regression_seeds",
           "format_sr_table", "BENCHMARK_SEED"]

#: Seed of the held-out benchmark set; training commands use other seeds.
BENCHMARK_SEED = 20261121


def _timed_enhance(enhancer, lr):
    start = time.perf_counter()
    out = enhancer.enhance(lr)
    return out, (time.perf_counter() - start) / len(lr)


def _scored(pred, hr, classes, **row):
    """A table row: metrics overall and per class, and the per-image PSNR for pairing."""
    per_image = batch_metrics(pred, hr)
    metrics = {"all": summarize_metrics(per_image)}
    for name in sorted(set(classes)):
        selected = {key: values[classes == name] for key, values in per_image.items()}
        metrics[name] = summarize_metrics(selected)
    return {"metrics": metrics, "psnr_per_image": [float(v) for v in per_image["psnr"]],
            **row}


def _arcs(ds, hr, preset, scale, lr_on_preset_grid):
    """The lensed-arc pixels (`lensenhance.evaluate.scoring.arc_mask`) of the HR truths.

    Their lens light is re-rendered from each image's seed and class, with the preset as
    `lensenhance.training.data.simulated_pairs` simulated them.
    """
    from ..evaluate.scoring import arc_mask
    from ..simulate import PRESETS
    from ..simulate.render import lens_light_images
    from ..training.data import pairs_overrides

    simulated = PRESETS[preset].replace(**pairs_overrides(preset, scale, lr_on_preset_grid))
    lens_light = lens_light_images(simulated, np.asarray(ds["substructure"].values).astype(str),
                                   ds["seed"].values, hr.shape[-1])
    return arc_mask(hr, lens_light)


def theta_e_regression_seeds(images, theta_e, *, seeds=(0, 1, 2), **kwargs):
    """`theta_e_regression` repeated over seeds (split and initialisation), with the spread.

    Returns
    -------
    dict
        ``mse`` and ``mae``: mean, standard deviation over the seeds and the per-seed
        values; ``seeds``, ``n_train``, ``n_test``.
    """
    runs = [theta_e_regression(images, theta_e, seed=seed, **kwargs) for seed in seeds]
    out = {"seeds": list(seeds), "n_train": runs[0]["n_train"], "n_test": runs[0]["n_test"]}
    for key in ("mse", "mae"):
        values = np.array([run[key] for run in runs])
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        out[f"{key}_per_seed"] = values.tolist()
    return out


def theta_e_regression(images, theta_e, *, train_fraction=0.7, epochs=20, batch_size=32,
                       seed=0, device=None):
    """Train a small ResNet to regress theta_E on ``images`` and test it on a held-out part.

    Every input kind (HR, interpolated LR, super-resolved LR) gets the same split, seed,
    network and schedule, so that only the images differ.

    Returns
    -------
    dict
        ``mse`` and ``mae`` on the test part (arcsec^2, arcsec), and ``n_train``, ``n_test``.
    """
    from ..training import predict_regressor, train_regressor

    images = np.asarray(images, dtype=np.float32)
    # Each image scaled to its own robust peak: the ring's shape, not its brightness.
    peak = np.percentile(images.reshape(len(images), -1), 99.5, axis=1)[:, None, None]
    images = images / np.maximum(peak, 1e-12)
    target = np.asarray(theta_e, dtype=np.float32)
    order = np.random.default_rng(seed).permutation(len(images))
    n_train = int(round(train_fraction * len(images)))
    train, test = order[:n_train], order[n_train:]
    net, stats = train_regressor(images[train], target[train], epochs=epochs,
                                 batch_size=batch_size, seed=seed, device=device)
    error = predict_regressor(net, images[test], stats) - target[test]
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))),
            "n_train": int(n_train), "n_test": int(len(test))}


def format_sr_table(rows, classes, differences=None):
    """The plain-text table that ``lensenhance benchmark sr`` prints.

    PSNR and SSIM carry the standard error of their mean over the images; ``differences``
    (`lensenhance.evaluate.metrics.paired_differences` against one reference) follow the table.
    """
    header = f"{'method':<36}{'MSE':>11}{'PSNR':>15}{'SSIM':>17}" + "".join(
        f"{'PSNR ' + c:>14}" for c in classes) + f"{'ms/img':>9}"
    lines = [header, "-" * len(header)]
    for method, row in rows.items():
        overall = row["metrics"]["all"]
        line = (f"{method:<36}{overall['mse']:>11.3e}"
                f"{overall['psnr']:>8.2f} ±{overall['psnr_sem']:>5.2f}"
                f"{overall['ssim']:>9.4f} ±{overall['ssim_sem']:>6.4f}")
        line += "".join(f"{row['metrics'][c]['psnr']:>14.2f}" for c in classes)
        seconds = row.get("seconds_per_image")
        line += f"{seconds * 1e3:>9.1f}" if seconds is not None else f"{'-':>9}"
        lines.append(line)
    for pair, stats in (differences or {}).items():
        verdict = "significant" if stats["significant"] else "not significant"
        lines.append(f"PSNR {pair}: {stats['mean']:+.2f} ± {stats['se']:.2f} dB (paired, "
                     f"n={stats['n']}, {verdict})")
    for method, row in rows.items():
        if "mc_uncertainty" in row:
            cal = row["mc_uncertainty"]
            lines.append(
                f"{method}: uncertainty propagated by {cal['n_draws']} Monte-Carlo draws of "
                f"the LR noise; where there is light: 68% coverage {cal['coverage_68']:.3f}, "
                f"95% {cal['coverage_95']:.3f}, ECE {cal['ece']:.3f}")
        if "posterior" in row:
            cal = row["posterior"]["calibration_light"]
            lines.append(
                f"{method}: {row['n_samples']} samples x {row['steps']} steps; where there is "
                f"light: 68% coverage {cal['coverage_68']:.3f}, 95% {cal['coverage_95']:.3f}, "
                f"ECE {cal['ece']:.3f}, z variance {cal['z_var']:.2f}; fine-scale power of "
                f"one sample / truth "
                f"{row['posterior']['fine_power_ratio_single_sample']:.2f}")
            lines += format_calibration_bins(row["posterior"])
    return "\n".join(lines)


def benchmark_sr(*, n=1000, scale=2, preset="model_i", models=None, self_ensemble=True,
                 regression=True, regression_epochs=20, regression_seeds=3,
                 seed=BENCHMARK_SEED, workers=1,
                 json_path=None, progress=True, device=None, lr_on_preset_grid=False,
                 noise_free_lr=False, n_samples=16, command=None):
    """Run the ``sr`` benchmark and return (and print) its table.

    Parameters
    ----------
    n : int
        Held-out images, the classes no_sub/cdm/axion in equal parts.
    models : list of str, optional
        Pretrained model names; default every shipped SR model of this ``scale``. A
        posterior model may be named ``"name@k"`` to run it at ``k`` sampler steps (a
        distilled one is then also compared with its teacher, if that runs too). A
        diffusion (``posterior``) model is given each LR image's exact sigma; its row adds
        ``posterior``: calibration where there is light and per bin (brightness, SNR,
        class, lensed-arc pixels), CRPS, fine-scale power of single samples and the data
        consistency (`lensenhance.benchmark.denoise`).
    n_samples : int, optional
        Posterior samples per image of the diffusion models.
    command : str, optional
        The command line that ran it, recorded in the result.
    self_ensemble : bool
        Also evaluate each model with the D4 self-ensemble.
    regression : bool
        Run the downstream theta_E regression (HR vs bicubic LR vs the reference model's
        SR; the reference is `best_by_validation`'s, not the best on these images).
    regression_seeds : int, optional
        Repeats of the regression (seeds 0, 1, ...: split and initialisation).
    json_path : path-like, optional
        Where to write the full results as JSON.
    lr_on_preset_grid, noise_free_lr : bool, optional
        The pairs of `lensenhance.training.data.load_pairs` with these options (the set-up of
        a model for a generator's noise-free images); the default models are then those
        whose card was trained so.

    Returns
    -------
    dict
        ``rows`` (per method: metrics overall and per class with standard errors, the
        per-image PSNR, seconds per image), ``differences`` (paired PSNR differences
        against ``reference``), ``regression``, ``table`` and the set-up.
    """
    from ..enhance.enhancer import Enhancer
    from ..pretrained import best_by_validation, model_card, sr_models_for
    from ..training.data import simulated_pairs

    ds = simulated_pairs(n, preset=preset, scale=scale, seed=seed, workers=workers,
                         progress=progress, lr_on_preset_grid=lr_on_preset_grid)
    hr = ds["hr"].values.astype(np.float32)
    lr = bin_image(hr, scale) if noise_free_lr else ds["lr"].values.astype(np.float32)
    classes = np.asarray(ds["substructure"].values).astype(str)
    class_names = [c for c in ("no_sub", "cdm", "axion") if c in set(classes)]

    if models is None:
        models = sr_models_for(scale=scale, preset=preset, lr_on_preset_grid=lr_on_preset_grid,
                               noise_free_lr=noise_free_lr)
    # Noise-free images hold no cosmic rays, and their sharp features (a PSF narrower
    # than a pixel) must not be masked as such (as for a generator's images).
    options = {"device": device, **({"cosmic_rays": False} if noise_free_lr else {})}
    methods = {mode: Enhancer.interpolation(mode, scale=scale, **options)
               for mode in ("bilinear", "bicubic")}
    posteriors, teachers = {}, {}
    for name in models:
        model, steps = split_steps(name)
        card = model_card(model)
        if card.get("task") == "posterior":
            posteriors[name] = Enhancer.from_pretrained(model, n_samples=n_samples,
                                                        steps=steps, **options)
            teachers[name] = (card.get("distilled") or {}).get("teacher")
            continue
        if steps is not None:
            raise ValueError(f"{name!r}: steps apply to diffusion (posterior) models only")
        base = methods[name] = Enhancer.from_pretrained(name, **options)
        if self_ensemble:  # the same loaded network, averaged over the 8 rotations/flips
            methods[f"{name} +SE"] = Enhancer(base.model, scale=base.scale, name=f"{name} +SE",
                                              cosmic_rays=base.cosmic_rays,
                                              self_ensemble=True, device=base.device)

    rows, outputs = {}, {}
    oracle_lr = bin_image(hr, scale)
    out, _ = _timed_enhance(methods["bicubic"], oracle_lr)
    rows["bicubic of noise-free LR (oracle)"] = _scored(out, hr, classes,
                                                        seconds_per_image=None)
    for method, enhancer in methods.items():
        out, seconds = _timed_enhance(enhancer, lr)
        outputs[method] = out
        rows[method] = _scored(out, hr, classes, seconds_per_image=seconds)

    if posteriors:
        from ..evaluate.scoring import posterior_figures
        from ._runs import run_enhancer

        lr_sigma = ds["lr_sigma"].values.astype(np.float32)
        for name in models:
            if name in methods:
                # The residual networks' own uncertainty (Monte-Carlo propagation of the
                # LR sigma), scored beside the diffusion models' on the same images.
                out = run_enhancer(methods[name], lr, lr_sigma, seed=seed)
                rows[name]["mc_uncertainty"] = {
                    "n_draws": methods[name].predictor.n_draws,
                    **posterior_figures(hr, out["mean"], out["std"])["calibration_light"]}
    class_names = sorted(set(classes))
    class_index = np.array([class_names.index(c) for c in classes])
    arcs = _arcs(ds, hr, preset, scale, lr_on_preset_grid) if posteriors else None
    backgrounds = input_backgrounds(lr, scale) if posteriors else None
    noise = input_noise(lr, lr_sigma, scale) if posteriors else None
    for name, enhancer in posteriors.items():
        # Given the exact sigma of each LR image; mean, std and samples per image.
        out = run_enhancer(enhancer, lr, lr_sigma, samples=True, seed=seed)
        outputs[name] = out["mean"]
        rows[name] = _scored(out["mean"], hr, classes,
                             seconds_per_image=out["seconds_per_image"],
                             n_samples=enhancer.predictor.n_samples,
                             steps=enhancer.predictor.steps,
                             posterior=posterior_figures(
                                 hr, out["mean"], out["std"], out["samples"], observed=lr,
                                 sigmas=lr_sigma, scale=scale, classes=class_index,
                                 class_names=class_names, arcs=arcs,
                                 backgrounds=backgrounds, noise=noise))

    # Every row against one reference, chosen without the benchmark's images.
    reference = best_by_validation([m for m in models if m in methods])
    pairs = [] if reference is None else [(m, reference) for m in rows if m != reference]
    # and what the self-ensemble adds to each network
    pairs += [(m, m.removesuffix(" +SE")) for m in rows if m.endswith(" +SE")
              and m.removesuffix(" +SE") != reference]
    # and each distilled model against its teacher, when both ran
    pairs += [(m, teacher) for m, teacher in teachers.items() if teacher in rows]
    differences = {pair: stats for a, b in pairs for pair, stats in paired_differences(
        {a: rows[a]["psnr_per_image"], b: rows[b]["psnr_per_image"]}).items()}
    result = {"preset": preset, "scale": scale, "n": n, "seed": seed,
              "lr_on_preset_grid": lr_on_preset_grid, "noise_free_lr": noise_free_lr,
              "data_range": "per image: max(HR) - min(HR)", "rows": rows,
              "reference": reference, "reference_rule": "best validation PSNR in its card "
              "(the training run's own held-out images)", "differences": differences,
              "command": command}
    table = format_sr_table(rows, class_names, differences)
    print(f"sr benchmark: {preset} x{scale}, {n} held-out images (seed {seed}); metrics "
          "against the noise-free HR image, data_range = HR range")
    print(table)

    if regression:
        inputs = {"HR": hr, "bicubic LR": outputs["bicubic"]}
        if reference is not None:  # the reference: not chosen on these images
            inputs[f"SR LR ({reference})"] = outputs[reference]
        theta_e = np.asarray(ds["theta_E"].values, dtype=np.float32)
        seeds = tuple(range(int(regression_seeds)))
        result["regression"] = {
            kind: theta_e_regression_seeds(images, theta_e, seeds=seeds,
                                           epochs=regression_epochs, device=device)
            for kind, images in inputs.items()}
        lines = [f"theta_E regression (small ResNet, the same splits and schedule for each "
                 f"input; mean ± standard deviation over {len(seeds)} seeds of the split "
                 f"and initialisation)",
                 f"{'input':<36}{'MSE [arcsec^2]':>24}{'MAE [arcsec]':>22}"]
        for kind, f in result["regression"].items():
            lines.append(f"{kind:<36}{f['mse']:>13.3e} ± {f['mse_std']:.1e}"
                         f"{f['mae']:>13.4f} ± {f['mae_std']:.4f}")
        print("\n" + "\n".join(lines))
        table += "\n" + "\n".join(lines)
    result["table"] = table
    if json_path is not None:
        write_json(result, json_path)
    return result
