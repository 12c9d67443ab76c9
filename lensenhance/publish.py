"""Turn a finished training run into shipped weights with a model card.

``python -m lensenhance.publish training_runs/rcan-x2 rcan-x2`` copies the run's EMA
weights into ``lensenhance/pretrained/weights/`` (format v2), evaluates them on the held-out
``sr`` benchmark set and writes the model card in the schema of its task
(`lensenhance.pretrained.validate_card`): task, architecture, data preset, the exact
training command, steps, wall time, machine, figures with their n and the command that
measured them, and the SHA-256 of the weights file.

`publish_sr_weights` and `publish_feature_network` fill in the figures themselves;
`publish_weights` is the generic path for any task (generate, classify, denoise), with the
figures passed in ``card_extra``.
"""

import json
import shutil
import sys
from pathlib import Path

from . import _device
from ._atomic import atomic_write_bytes
from .nn.weights import load_weights, migrate_weights, read_weights_metadata
from .predict.snr_factor import CONTEXTS
from .pretrained import TASKS, WEIGHTS_DIR, file_sha256, validate_card

__all__ = ["publish_sr_weights", "publish_feature_network", "publish_weights",
           "publish_classifier", "publish_generator", "publish_denoiser", "publish_posterior",
           "add_benchmark_figures"]

LICENSE = "BSD-3-Clause"

DEGRADATION = {
    "model_i": ("the HR image is the sky convolved with a Gaussian PSF (FWHM 0.087\") on "
                "the 0.05\"/px grid; LR = HR summed over s x s blocks plus Poisson source "
                "noise and Gaussian background noise (exposure 10^U(3, 3.5) s)"),
}


def _json_value(value):
    # Metadata outside lensenhance.nn.weights.JSON_METADATA_KEYS is still a JSON string.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _stage(run_dir, name, *, overwrite):
    """Copy a run's weights next to their place in the package, as format v2.

    Returns ``(staged, target, history, metadata)``; the caller moves ``staged`` onto
    ``target`` once the card is good (or removes it).
    """
    run_dir = Path(run_dir)
    source = run_dir / "weights.safetensors"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: the run has no exported weights yet")
    history_path = run_dir / "history.json"
    if not history_path.is_file():
        raise FileNotFoundError(f"{history_path}: the run has no history")
    target = WEIGHTS_DIR / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (use overwrite=True)")
    history = json.loads(history_path.read_text())
    staged = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, staged)
    try:
        migrate_weights(staged)  # runs from before format v2; a no-op for v2 files
        metadata = read_weights_metadata(staged)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged, target, history, metadata


def _install(run_dir, name, *, overwrite):
    """Copy a run's weights into the package as format v2; return (target, history, meta)."""
    staged, target, history, metadata = _stage(run_dir, name, overwrite=overwrite)
    staged.replace(target)
    return target, history, metadata


def _card(name, target, history, metadata, *, task, **fields):
    """The common keys of a card (`lensenhance.pretrained.COMMON_CARD_KEYS`) plus ``fields``.

    ``target`` is the weights file (or its staged copy: the same bytes).
    """
    config = metadata["config"]
    steps = history.get("step", metadata.get("step"))
    card = {
        "name": name,
        "task": task,
        "architecture": config["architecture"],
        "parameters": sum(p.numel() for p in load_weights(target).parameters()),
        "preset": metadata.get("data_preset", "model_i"),
        "command": metadata.get("command"),
        "steps": int(_json_value(steps)) if steps is not None else None,
        "wall_time_s": round(float(history["wall_time_s"]), 1),
        "machine": metadata.get("machine") or _device.machine_description(),
        "sha256": file_sha256(target),
        "license": LICENSE,
    }
    card.update(fields)
    return card


def _write_card(name, card, *, validate=True):
    if validate:
        validate_card(card)
    atomic_write_bytes(WEIGHTS_DIR / f"{name}.json",
                       (json.dumps(card, indent=2) + "\n").encode())
    return card


def _task_fields(task, metadata):
    """The task's own card keys that the weights metadata already knows."""
    if task in ("sr", "denoise"):
        preset = metadata.get("data_preset", "model_i")
        scale = metadata.get("scale", metadata["config"].get("scale", 1))
        return {"scale": int(_json_value(scale)),
                "degradation": DEGRADATION.get(preset, f"simulated {preset} pairs")}
    if task == "generate":
        fields = {key: _json_value(metadata[key])
                  for key in ("image_size", "pixel_scale", "unit", "classes", "schedule",
                              "data_num_pix", "binned")
                  if key in metadata}
        if "scaling" in metadata:
            fields["scaling"] = metadata["scaling"]
        return fields
    if task == "classify" and "classes" in metadata:
        return {"classes": _json_value(metadata["classes"])}
    return {}


def publish_weights(run_dir, name, *, task, card_extra=None, overwrite=False):
    """Copy any run's weights into the package and write its model card.

    Parameters
    ----------
    run_dir : path-like
        A training run folder (``weights.safetensors``, ``history.json``).
    name : str
        The registry name, e.g. ``"ddpm-lens64"``.
    task : {'sr', 'denoise', 'generate', 'classify', 'features'}
        The model's task; it must match the weights file's.
    card_extra : dict, optional
        Card keys to add or replace, at least ``metrics`` (a dict with ``n`` and the
        ``command`` that measured the figures) and whatever the task's schema needs and
        the weights metadata does not hold (`lensenhance.pretrained.CARD_KEYS`).
    overwrite : bool, optional
        Replace an already published model of this name.

    Returns
    -------
    dict
        The model card (validated against its task's schema before anything is written
        to the package's card).

    Raises
    ------
    ValueError
        If the card breaks its task's schema or the task does not match the weights;
        nothing in the package changes then.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    card_path = WEIGHTS_DIR / f"{name}.json"
    if card_path.exists() and not overwrite:
        raise FileExistsError(f"{card_path} exists (use overwrite=True)")
    staged, target, history, metadata = _stage(run_dir, name, overwrite=overwrite)
    try:
        if metadata.get("task") != task:
            raise ValueError(f"{run_dir}: the weights are for task {metadata.get('task')!r}, "
                             f"not {task!r}")
        fields = {**_task_fields(task, metadata), **(card_extra or {}), "task": task}
        card = _card(name, staged, history, metadata, **fields)
        validate_card(card)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    staged.replace(target)
    return _write_card(name, card)


def publish_sr_weights(run_dir, name, *, n_eval=300, overwrite=False, progress=False):
    """Copy a run's weights into the package and write its model card.

    Parameters
    ----------
    run_dir : path-like
        A ``lensenhance train sr --out`` folder (``weights.safetensors``,
        ``history.json``).
    name : str
        The registry name, e.g. ``"rcan-x2"``.
    n_eval : int
        Held-out benchmark images for the card's figures.

    Returns
    -------
    dict
        The model card.
    """
    from .benchmark.sr import benchmark_sr

    target, history, metadata = _install(run_dir, name, overwrite=overwrite)
    preset = metadata.get("data_preset", "model_i")
    train_args = metadata.get("train_args") or {}
    # Models for images on a preset's own grid without noise (a generator's output).
    setup = {key: bool(_json_value(metadata.get(key, False)))
             for key in ("lr_on_preset_grid", "noise_free_lr")}
    fields = _task_fields("sr", metadata)
    if setup["noise_free_lr"]:
        fields["degradation"] = (
            f"noise-free: the HR image is the {preset} sky convolved with its PSF on a grid "
            + ("s times finer than the preset's" if setup["lr_on_preset_grid"] else
               "at the preset's pixel scale") + "; LR = HR summed over s x s blocks")
    card = _card(name, target, history, metadata, task="sr", **fields, **setup,
                 size=train_args.get("preset", "small"),
                 val_psnr_normalised=history["val"][-1]["psnr"] if history.get("val")
                 else None)
    # The benchmark finds the model through its card, so a card without figures goes first.
    _write_card(name, card, validate=False)

    flags = "".join(f" --{key.replace('_', '-')}" for key, value in setup.items() if value)
    flags += f" --preset {preset}" if preset != "model_i" else ""
    command = (f"lensenhance benchmark sr -n {n_eval} --scale {card['scale']} --model {name} "
               f"--no-self-ensemble --no-regression{flags}")
    result = benchmark_sr(n=n_eval, scale=card["scale"], preset=preset, models=[name],
                          self_ensemble=False, regression=False, progress=progress,
                          command=command, **setup)
    card["metrics"] = _sr_metrics(name, result)
    return _write_card(name, card)


def _differences_of(name, result):
    """The benchmark's paired differences ("a - b") that involve ``name``."""
    return {pair: stats for pair, stats in result.get("differences", {}).items()
            if name in pair.split(" - ")}


def _sr_metrics(name, result):
    """A residual SR model's card figures from a ``benchmark sr`` result."""
    row, bicubic = result["rows"][name], result["rows"]["bicubic"]
    overall = row["metrics"]["all"]
    return {
        "n": result["n"], "seed": result["seed"], "command": result["command"],
        **{key: overall[key] for key in ("mse", "psnr", "ssim")},
        **{f"{key}_sem": overall[f"{key}_sem"] for key in ("mse", "psnr", "ssim")},
        "bicubic_psnr": bicubic["metrics"]["all"]["psnr"],
        "per_class_psnr": {k: v["psnr"] for k, v in row["metrics"].items() if k != "all"},
        "psnr_differences": _differences_of(name, result),
        "seconds_per_image": row["seconds_per_image"],
    }


def publish_feature_network(run_dir, name, *, overwrite=False):
    """Copy a ``lensenhance train features`` run into the package with its model card."""
    target, history, metadata = _install(run_dir, name, overwrite=overwrite)
    command = metadata.get("command")
    card = _card(name, target, history, metadata, task="features", scale=1,
                 degradation="none: trained on noise-free simulated HR images, normalised as "
                             "the SR training targets",
                 epochs=int(history["epochs"]),
                 # train_regressor's default batch of 32 images
                 steps=int(history["epochs"]) * -(-int(history["n_train"]) // 32),
                 metrics={"theta_e_mae_arcsec": history["val_mae"], "n": history["n_val"],
                          # the training run measures it on its held-out images at the end
                          "command": command,
                          "note": "held-out simulated HR images (last n of the run's set), "
                                  "measured by the training command"})
    return _write_card(name, card)


def publish_classifier(run_dir, name, *, n_test=0, test_seed=2026, overwrite=False):
    """Copy a ``lensenhance train classifier`` run into the package with its model card.

    With ``n_test``, the card's metrics are measured on ``n_test`` images of seeds the
    run never saw (``test_seed``; classes in equal parts): accuracy, per-class
    one-vs-rest ROC AUC with bootstrap intervals, the confusion matrix
    (`lensenhance.classify.evaluate_classifier`). Otherwise they are those the training
    command measured on its held-out images.
    """
    target, history, metadata = _install(run_dir, name, overwrite=overwrite)
    command = metadata.get("command")
    batches = -(-int(history["n_train"]) // int(history["batch_size"]))
    metrics = {"n": history["n_val"], "accuracy": history["val_accuracy"],
               "confusion": history["val_confusion"],
               "mae": history.get("val_mae", {}), "command": command,
               "note": "held-out simulated images of the run's own set (classes "
                       "in equal parts), measured by the training command"}
    if n_test:
        from .classify import LensClassifier, evaluate_classifier
        from .training.data import generation_images

        preset = metadata.get("data_preset")
        images, labels, _ = generation_images(int(n_test), preset=preset, seed=test_seed,
                                              truth=False)
        figures = evaluate_classifier(LensClassifier.from_file(target), images, labels)
        metrics = {**figures, "val": metrics, "test_seed": test_seed,
                   "command": f"python -m lensenhance.publish {run_dir} {name} --n-test "
                              f"{int(n_test)} --test-seed {test_seed}",
                   "note": f"{int(n_test)} noise-free {preset} images of seed {test_seed}, "
                           "which the training never saw (classes in equal parts); "
                           "95 % bootstrap intervals"}
    card = _card(name, target, history, metadata, task="classify",
                 **_task_fields("classify", metadata),
                 epochs=len(history["epochs"]), steps=len(history["epochs"]) * batches,
                 targets=history.get("targets", []), metrics=metrics,
                 training_command=command)
    return _write_card(name, card)


def publish_generator(run_dir, name, *, benchmark_json=None, overwrite=False):
    """Copy a ``lensenhance train ddpm`` run into the package with its model card.

    Without ``benchmark_json`` the card is written without figures (not validated), so
    that ``lensenhance benchmark generate --model NAME`` can find the model; run it with
    ``--json`` and publish again with that file to write the figures.
    """
    target, history, metadata = _install(run_dir, name, overwrite=True if benchmark_json
                                         else overwrite)
    train_args = _json_value(metadata.get("train_args")) or {}
    card = _card(name, target, history, metadata, task="generate",
                 **_task_fields("generate", metadata),
                 planned_steps=train_args.get("steps"),
                 finished=bool(history.get("finished")),
                 training_images=train_args.get("n_train"),
                 degradation="none: noise-free simulated images")
    if benchmark_json is None:
        return _write_card(name, card, validate=False)
    result = json.loads(Path(benchmark_json).read_text())
    if result.get("weights_sha256") not in (None, card["sha256"]):
        raise ValueError(f"{benchmark_json} measured other weights than {target}")
    rows = {f"{r['sampler']}-{r['steps']}": {k: v for k, v in r.items()
                                             if k not in ("sampler", "steps")}
            for r in result["rows"]}
    headline = rows.get("ddim-50") or next(iter(rows.values()))
    card["metrics"] = {
        "n": headline["n"], "command": result.get("command"),
        "sampler": "ddim-50" if "ddim-50" in rows else next(iter(rows)),
        **{key: headline[key] for key in ("fd", "fd_se", "fd_floor", "fd_ratio", "kid",
                                          "kid_se", "kid_floor", "seconds_per_image",
                                          "conditional_fidelity") if key in headline},
        "rows": rows, "train_on_real": result.get("train_on_real"),
        "real_accuracy_per_class": result.get("real_accuracy_per_class"),
        "memorisation_real": result.get("memorisation_real"),
        "verdict": result.get("verdict"), "targets": result.get("targets"),
        "classifier": result.get("classifier"), "machine": result.get("machine"),
    }
    if result.get("enhancer"):  # measured through its chain, on the finer grid
        card["metrics"].update(enhancer=result["enhancer"],
                               reference_grid=result.get("reference_grid"),
                               chain_floor=result.get("chain_floor"))
    return _write_card(name, card)


DENOISE_DEGRADATION = {
    "model_ii": ("simulated Model II (Euclid VIS-like) shallow observations, exposure "
                 "10^U(1.5, 3.5) s per exposure x 4, Poisson + sky + read noise; truth: the "
                 "noise-free PSF-convolved sky; half the images with their exact sigma map, "
                 "half with the constant sky noise estimated from the image"),
    "hsc_wide_dud": ("real HSC-SSP Wide cutouts (input, sigma estimated from the image) "
                     "against the same galaxies at Deep/UltraDeep depth (a noisy truth); "
                     "train split of ../shared/data/hsc_wide_dud"),
}


def publish_denoiser(run_dir, name, *, overwrite=False):
    """Copy a ``lensenhance train denoiser`` run into the package with its card.

    The card has the training run's validation figure only and is not validated until
    `add_benchmark_figures` writes the ``lensenhance benchmark denoise --json`` figures.
    """
    target, history, metadata = _install(run_dir, name, overwrite=overwrite)
    preset = metadata.get("data_preset", "model_ii")
    card = _card(name, target, history, metadata, task="denoise", scale=1,
                 degradation=DENOISE_DEGRADATION.get(preset, f"{preset} pairs"),
                 snr_range=_json_value(metadata.get("snr_range")),
                 val=_json_value(metadata.get("val")))
    return _write_card(name, card, validate=False)


def publish_posterior(run_dir, name, *, base, calibrate=None, snr_bins=False,
                      snr_groups="background", level=0.68, overwrite=False):
    """Copy a ``lensenhance train posterior`` run into the package with its card.

    Parameters
    ----------
    run_dir : path-like
    name : str
        Registry name, e.g. ``"diffusion-denoise"``.
    base : str
        The shipped name of the deterministic model it was trained around; its
        weights must be the very file the run used (SHA-256 checked).
    calibrate : dict, optional
        Arguments of `lensenhance.benchmark.denoise.calibration_set` (``kind``, ``n``,
        ``hsc_dir``): the standard deviation's factor is fitted on that held-out set
        (`lensenhance.benchmark.denoise.fit_calibration`) and stored in the weights
        metadata and the card. Without it the std is the raw spread of the samples.
    snr_bins : bool, optional
        Fit (with ``calibrate``) a factor that depends on each pixel's predicted SNR as
        well; the model then uses it instead of the single factor.
    snr_groups : {'background', 'noise', 'both'}, optional
        That factor's groups (`lensenhance.benchmark.denoise.fit_calibration`).
    level : float or sequence of float, optional
        The interval level(s) the factor matches (several: between their factors, for
        errors with heavy tails; `lensenhance.evaluate.uncertainty.fit_std_scale`).

    Returns
    -------
    dict
        The card (without figures until `add_benchmark_figures`).
    """
    from .nn.weights import update_weights_metadata
    from .pretrained import model_card

    base_card = model_card(base)
    staged, target, history, metadata = _stage(run_dir, name, overwrite=overwrite)
    try:
        if metadata.get("task") != "posterior":
            raise ValueError(f"{run_dir}: not a posterior model ({metadata.get('task')!r})")
        if metadata.get("base_sha256") != base_card["sha256"]:
            raise ValueError(f"{run_dir} was trained around other weights than {base!r}")
        # (truth_noise_ratio: written by runs of an earlier version, never used)
        update_weights_metadata(staged, {"base_model": base}, remove=("truth_noise_ratio",))
        calibration = {"std_scale": 1.0, "note": "not calibrated"}
        if calibrate is not None:
            calibration = _fit_calibration(staged, metadata, calibrate, snr_bins,
                                           snr_groups, level)
        update_weights_metadata(staged, {"calibration": calibration})
        metadata = read_weights_metadata(staged)
        preset = metadata.get("data_preset", "model_ii")
        scale = int(_json_value(metadata.get("scale", 1)))
        degradation = (DENOISE_DEGRADATION.get(preset, f"{preset} pairs") if scale == 1
                       else DEGRADATION.get(preset, f"{preset} x{scale} pairs"))
        card = _card(name, staged, history, metadata, task="posterior", scale=scale,
                     degradation=degradation, base_model=base,
                     schedule=_json_value(metadata["schedule"]), calibration=calibration,
                     snr_range=_json_value(metadata.get("snr_range")),
                     val=_json_value(metadata.get("val")),
                     **_distilled_fields(metadata))
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    staged.replace(target)
    return _write_card(name, card, validate=False)


def _fit_calibration(weights, metadata, calibrate, snr_bins, snr_groups, level):
    """A posterior model's calibration on a held-out set (one per step count if distilled,
    the default's at the top)."""
    from .benchmark.denoise import calibration_set, fit_calibration

    data = calibration_set(**calibrate)
    distilled = _json_value(metadata.get("distilled"))
    step_counts = [None] if not distilled else sorted(map(int, distilled["grids"]))
    fitted = {steps: fit_calibration(weights, data["images"], data["sigmas"], data["truths"],
                                     extra_variance=data["extra_variance"],
                                     description=data["description"], steps=steps,
                                     snr_bins=snr_bins, snr_groups=snr_groups,
                                     level=level)
              for steps in step_counts}
    if not distilled:
        return fitted[None]
    from .diffusion.distill import DEFAULT_STEPS

    return {**fitted[DEFAULT_STEPS], "by_steps": {str(k): v for k, v in fitted.items()}}


def recalibrate_posterior(name, *, calibrate, snr_bins=False, snr_groups="background",
                          level=0.68, command=None):
    """Refit a shipped posterior model's calibration in place: weights metadata and card.

    The network is untouched; its card's benchmark figures predate the new calibration
    until `add_benchmark_figures` writes a rerun's.

    Parameters
    ----------
    name : str
        A shipped posterior model.
    calibrate, snr_bins, snr_groups, level
        See `publish_posterior`.
    command : str, optional
        The command line that ran this, recorded in the card.
    """
    from .nn.weights import update_weights_metadata
    from .pretrained import model_card

    card = dict(model_card(name))
    if card.get("task") != "posterior":
        raise ValueError(f"{name!r} is not a posterior model")
    target = WEIGHTS_DIR / f"{name}.safetensors"
    staged = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(target, staged)
    try:
        calibration = _fit_calibration(staged, read_weights_metadata(staged), calibrate,
                                       snr_bins, snr_groups, level)
        update_weights_metadata(staged, {"calibration": calibration})
        card.update(calibration=calibration, sha256=file_sha256(staged))
        if command:
            card["calibration_command"] = command
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    staged.replace(target)
    return _write_card(name, card, validate=False)


def _distilled_fields(metadata):
    """A distilled model's card entry: its teacher, grids and the method's literature."""
    if not metadata.get("distilled"):
        return {}
    from .diffusion.distill import METHOD

    return {"distilled": {**_json_value(metadata["distilled"]), "method": METHOD}}


def add_benchmark_figures(name, benchmark_json):
    """Write a benchmark's figures for a published model into its card (validated).

    Parameters
    ----------
    name : str
    benchmark_json : path-like
        ``lensenhance benchmark denoise --json`` or ``benchmark sr --json`` output with a
        row for ``name`` (a residual SR model's card gets the figures of
        `publish_sr_weights`, with standard errors and paired differences).
    """
    from .pretrained import model_card

    card = model_card(name)
    result = json.loads(Path(benchmark_json).read_text())
    rows = result["rows"]
    if name not in rows:
        raise ValueError(f"{benchmark_json} has no row for {name} (rows: {', '.join(rows)})")
    row = rows[name]
    if card.get("task") == "sr":  # a residual network's row of benchmark sr
        card["metrics"] = _sr_metrics(name, result)
        return _write_card(name, card)
    if "metrics" in row:  # benchmark sr, a diffusion model's row
        figures = {"metrics": row["metrics"], **row.get("posterior", {})}
        compared = {key: {"psnr": r["metrics"]["all"]["psnr"]} for key, r in rows.items()
                    if key != name}
    else:
        figures = dict(row["figures"])
        compared = {key: {"psnr": r["figures"]["psnr"], "ssim": r["figures"]["ssim"]}
                    for key, r in rows.items() if key != name}
    figures.pop("psnr_per_image", None)  # in the benchmark's JSON; a card keeps the summary
    figures["psnr_differences"] = _differences_of(name, result)
    card["metrics"] = {"n": result["n"], "command": result.get("command"),
                       "set": result.get("set") or _sr_set(result), **figures,
                       "seconds_per_image": row["seconds_per_image"],
                       "n_samples": row.get("n_samples"), "steps": row.get("steps"),
                       "compared": compared}
    return _write_card(name, card)


def _sr_set(result):
    """What a ``benchmark sr`` JSON measured on, in the words of the denoise benchmark's."""
    if not all(key in result for key in ("n", "preset", "scale", "seed")):
        return None
    lr = ("noise-free LR" if result.get("noise_free_lr")
          else "noisy LR, its exact sigma given")
    return (f"{result['n']} simulated {result['preset']} x{result['scale']} pairs, seed "
            f"{result['seed']}, {lr}; truth: noise-free HR")


def _level_list(text):
    levels = tuple(float(part) for part in text.split(","))
    return levels[0] if len(levels) == 1 else levels


def main(argv=None):
    """``python -m lensenhance.publish RUN_DIR NAME [options]``: a maintainer tool."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lensenhance.publish")
    parser.add_argument("run_dir")
    parser.add_argument("name")
    parser.add_argument("extra", nargs="?", help="SR: held-out images; generator: the "
                        "benchmark JSON")
    parser.add_argument("--base", help="posterior: the shipped deterministic model")
    parser.add_argument("--calibrate", choices=["denoise", "sr"],
                        help="posterior: fit the std's factor on this kind's held-out set")
    parser.add_argument("--hsc", help="posterior: calibrate on the HSC hold-out instead")
    parser.add_argument("--n-cal", type=int, default=64)
    parser.add_argument("--snr-bins", action="store_true",
                        help="posterior: also fit a factor that depends on the predicted SNR")
    parser.add_argument("--snr-groups", choices=CONTEXTS,
                        default="background",
                        help="posterior: that factor's groups, by level between zero and the "
                             "background, by the mean's SNR against the input's noise, or "
                             "by both")
    parser.add_argument("--levels", default="0.68", type=_level_list,
                        help="posterior: the interval level(s) the factor matches, comma "
                             "separated (several: between their factors, for heavy tails)")
    parser.add_argument("--figures", help="a benchmark JSON to write into the card")
    parser.add_argument("--recalibrate", action="store_true",
                        help="posterior: refit the shipped NAME's calibration (RUN_DIR: -)")
    parser.add_argument("--n-test", type=int, default=0,
                        help="classifier: images of unseen seeds for the card's metrics")
    parser.add_argument("--test-seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.figures:  # into a published model's card; the run folder is not read
        print(json.dumps(add_benchmark_figures(args.name, args.figures), indent=2))
        return
    if args.recalibrate:
        calibrate = {"kind": args.calibrate or "denoise", "n": args.n_cal,
                     "hsc_dir": args.hsc}
        command = "python -m lensenhance.publish " + " ".join(
            argv if argv is not None else sys.argv[1:])
        print(json.dumps(recalibrate_posterior(args.name, calibrate=calibrate,
                                               snr_bins=args.snr_bins,
                                               snr_groups=args.snr_groups, level=args.levels,
                                               command=command),
                         indent=2))
        return
    task = read_weights_metadata(Path(args.run_dir) / "weights.safetensors").get("task")
    if task == "features":
        card = publish_feature_network(args.run_dir, args.name, overwrite=True)
    elif task in (None, "sr"):
        card = publish_sr_weights(args.run_dir, args.name,
                                  n_eval=int(args.extra) if args.extra else 300,
                                  overwrite=True, progress=True)
    elif task == "classify":
        card = publish_classifier(args.run_dir, args.name, n_test=args.n_test,
                                  test_seed=args.test_seed, overwrite=True)
    elif task == "generate":
        card = publish_generator(args.run_dir, args.name, overwrite=True,
                                 benchmark_json=args.extra)
    elif task in ("denoise", "posterior"):
        if task == "denoise":
            card = publish_denoiser(args.run_dir, args.name, overwrite=True)
        else:
            calibrate = None
            if args.calibrate or args.hsc:
                calibrate = {"kind": args.calibrate or "denoise", "n": args.n_cal,
                             "hsc_dir": args.hsc}
            card = publish_posterior(args.run_dir, args.name, base=args.base,
                                     calibrate=calibrate, snr_bins=args.snr_bins,
                                     snr_groups=args.snr_groups, level=args.levels,
                                     overwrite=True)
    else:
        sys.exit(f"cannot publish a {task!r} model")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    main()
