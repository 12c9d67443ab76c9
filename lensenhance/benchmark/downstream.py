"""``benchmark downstream``: does super-resolution help the science done on the images?

Two tasks, each by a network trained on HR images only and then given, unchanged, the HR
image, the bicubic interpolation of the observed LR image, each super-resolution model's
output, and the diffusion posterior mean:

* **substructure classification** (no_sub / cdm / axion) by the shipped
  ``lens-classifier-deeplense-i`` on held-out ``deeplense_model_i`` pairs: one-vs-rest ROC
  AUC per class, their mean, and the accuracy;
* **Einstein-radius regression** by the shipped ``thetae-resnet`` on held-out ``model_i``
  pairs (the DeepLense presets fix theta_E): mean absolute error.

For every input the share of the LR -> HR gap it closes, ``(m - m_bicubic) / (m_HR -
m_bicubic)``, comes with a 95 % interval from a paired bootstrap over the images (the
same resampled images for every input).
"""

from __future__ import annotations

import os
import time

import numpy as np

from . import write_json

__all__ = ["benchmark_downstream", "gap_closed", "DOWNSTREAM_SEED"]

#: Seed of the held-out sets (no training command uses it).
DOWNSTREAM_SEED = 20261205


def _macro_auc(p, labels, index=None):
    from ..classify import roc_auc

    if index is not None:
        p, labels = p[index], labels[index]
    if len(np.unique(labels)) < p.shape[1]:  # a resample without some class
        return float("nan")
    return float(np.mean([roc_auc(p[:, j], labels == j) for j in range(p.shape[1])]))


def gap_closed(values, *, low="bicubic", high="HR"):
    """The share of the gap between ``values[low]`` and ``values[high]`` each entry closes."""
    gap = values[high] - values[low]
    return {name: float((v - values[low]) / gap) if gap else float("nan")
            for name, v in values.items()}


def _bootstrap(metric, inputs, n_images, *, n_boot, seed):
    """Paired bootstrap of ``metric(name, index)`` and of the gap closed, per input."""
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in inputs}
    shares = {name: [] for name in inputs}
    for _ in range(n_boot):
        index = rng.integers(0, n_images, n_images)
        values = {name: metric(name, index) for name in inputs}
        for name, share in gap_closed(values).items():
            draws[name].append(values[name])
            shares[name].append(share)
    ci = {name: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
          for name, v in draws.items()}
    share_ci = {name: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
                for name, v in shares.items()}
    return ci, share_ci


def _enhanced_inputs(ds, models, *, n_samples, steps, device, seed):
    """HR, bicubic LR and every model's output for a simulated pairs dataset."""
    from ..enhance.enhancer import Enhancer
    from ..pretrained import model_card

    hr = ds["hr"].values.astype(np.float32)
    lr = ds["lr"].values.astype(np.float32)
    out = {"HR": hr}
    seconds = {}
    start = time.perf_counter()
    out["bicubic"] = np.asarray(Enhancer.interpolation("bicubic", scale=2).enhance(lr))
    seconds["bicubic"] = (time.perf_counter() - start) / len(lr)
    for name in models:
        start = time.perf_counter()
        if model_card(name).get("task") == "posterior":
            from ._runs import run_enhancer

            enhancer = Enhancer.from_pretrained(name, device=device, n_samples=n_samples,
                                                **({"steps": steps} if steps else {}))
            result = run_enhancer(enhancer, lr, ds["lr_sigma"].values.astype(np.float32),
                                  seed=seed)
            out[f"{name} (mean of {n_samples})"] = result["mean"]
            seconds[f"{name} (mean of {n_samples})"] = result["seconds_per_image"]
            continue
        out[name] = np.asarray(Enhancer.from_pretrained(name, device=device).enhance(lr))
        seconds[name] = (time.perf_counter() - start) / len(lr)
    return out, seconds


def benchmark_downstream(*, n=300, n_theta=300, models=None, classifier=
                         "lens-classifier-deeplense-i", regressor="thetae-resnet",
                         n_samples=4, steps=None, posterior=True, n_boot=1000,
                         seed=DOWNSTREAM_SEED, workers=1, device=None, json_path=None,
                         command=None, progress=False, verbose=True):
    """Run the downstream benchmark (see the module docstring).

    Parameters
    ----------
    n : int, optional
        Held-out ``deeplense_model_i`` pairs for the classification (classes in equal
        parts).
    n_theta : int, optional
        Held-out ``model_i`` pairs for the theta_E regression (0: skip it); the
        residual networks only (a diffusion posterior mean costs seconds per image).
    models : list of str, optional
        Super-resolution models; default every shipped x2 model for ``model_i`` (and
        ``diffusion-sr-x2`` when ``posterior``).
    classifier : str or LensClassifier, optional
        A shipped classifier's name, a weights file, or a classifier.
    n_samples, steps : int, optional
        Posterior samples (and sampler steps) of the diffusion model's mean.
    n_boot : int, optional
        Bootstrap resamples.
    json_path : path-like, optional
        Write the result there.

    Returns
    -------
    dict
        ``classification`` and ``theta_e``: per input the figures, their 95 % intervals,
        the share of the gap closed and its interval, seconds per image; the set-up.
    """
    from ..classify import LensClassifier, roc_auc
    from ..pretrained import list_pretrained, load_pretrained, model_card, sr_models_for
    from ..simulate import LensSimulator
    from ..training.data import normalize_pairs
    from ..training.regression import predict_regressor

    if models is None:
        models = list(sr_models_for(scale=2, preset="model_i"))
        if posterior and "diffusion-sr-x2" in list_pretrained():
            models.append("diffusion-sr-x2")
    started = time.perf_counter()
    result = {"benchmark": "downstream", "seed": seed, "n_boot": n_boot, "models": models,
              "classifier": classifier, "regressor": regressor, "command": command}

    sim = LensSimulator.from_preset("deeplense_model_i", substructure="all")
    ds = sim.simulate_pairs(n, scale=2, seed=seed, workers=workers, progress=progress)
    labels = np.array([("no_sub", "cdm", "axion").index(str(c))
                       for c in ds["substructure"].values])
    inputs, seconds = _enhanced_inputs(ds, models, n_samples=n_samples, steps=steps,
                                       device=device, seed=seed)
    if isinstance(classifier, LensClassifier):
        clf, result["classifier"] = classifier, classifier.name
    elif os.path.isfile(str(classifier)):
        clf = LensClassifier.from_file(classifier)
    else:
        clf = LensClassifier.from_pretrained(classifier)
    probs = {name: clf.predict_proba(images) for name, images in inputs.items()}
    aucs = {name: _macro_auc(p, labels) for name, p in probs.items()}
    ci, share_ci = _bootstrap(lambda name, index: _macro_auc(probs[name], labels, index),
                              inputs, n, n_boot=n_boot, seed=seed)
    rows = {}
    for name, p in probs.items():
        per_class = {c: roc_auc(p[:, j], labels == j) for j, c in enumerate(clf.classes)}
        rows[name] = {"auc_mean": aucs[name], "auc_ci95": ci[name], "auc": per_class,
                      "accuracy": float(np.mean(p.argmax(axis=1) == labels)),
                      "gap_closed": gap_closed(aucs)[name], "gap_closed_ci95": share_ci[name],
                      "seconds_per_image": seconds.get(name)}
    result["classification"] = {"preset": "deeplense_model_i", "n": n, "rows": rows}

    if n_theta:
        sim = LensSimulator.from_preset("model_i", substructure="all")
        ds = sim.simulate_pairs(n_theta, scale=2, seed=seed, workers=workers,
                                progress=progress)
        theta = ds["theta_E"].values.astype(np.float64)
        lr = ds["lr"].values.astype(np.float32)
        # the residual networks only: a posterior mean per image costs seconds
        residual = [m for m in models if model_card(m).get("task") != "posterior"]
        inputs, seconds = _enhanced_inputs(ds, residual, n_samples=n_samples, steps=steps,
                                           device=device, seed=seed)
        net = load_pretrained(regressor)
        stats = {key: float(net.metadata[key]) for key in ("target_mean", "target_std")}
        errors = {}
        for name, images in inputs.items():
            # normalised as the regressor's training images: with the LR image's fit
            _, x = normalize_pairs(lr, images, scale=2)
            errors[name] = np.abs(predict_regressor(net, x, stats) - theta)
        mae = {name: float(e.mean()) for name, e in errors.items()}
        ci, share_ci = _bootstrap(lambda name, index: float(errors[name][index].mean()),
                                  inputs, n_theta, n_boot=n_boot, seed=seed)
        result["theta_e"] = {"preset": "model_i", "n": n_theta, "rows": {
            name: {"mae": mae[name], "mae_ci95": ci[name],
                   "gap_closed": gap_closed(mae)[name], "gap_closed_ci95": share_ci[name],
                   "seconds_per_image": seconds.get(name)} for name in inputs}}
    result["wall_time_s"] = time.perf_counter() - started
    result["table"] = format_downstream_table(result)
    if verbose:
        print(result["table"])
    if json_path is not None:
        write_json(result, json_path)
    return result


def format_downstream_table(result):
    """The result as a plain-text table (README and docs)."""
    lines = []
    c = result["classification"]
    lines.append(f"Substructure classification ({result['classifier']}, trained on HR), "
                 f"{c['n']} held-out {c['preset']} pairs; 95 % paired-bootstrap intervals")
    lines.append(f"{'input':<34}{'mean AUC':>22}{'accuracy':>10}{'gap closed':>26}")
    for name, row in c["rows"].items():
        lo, hi = row["auc_ci95"]
        glo, ghi = row["gap_closed_ci95"]
        lines.append(f"{name:<34}{row['auc_mean']:>8.3f} [{lo:.3f}, {hi:.3f}]"
                     f"{row['accuracy']:>10.3f}{100 * row['gap_closed']:>9.0f} % "
                     f"[{100 * glo:.0f}, {100 * ghi:.0f}] %")
    if "theta_e" in result:
        t = result["theta_e"]
        lines.append("")
        lines.append(f"Einstein-radius regression ({result['regressor']}, trained on HR), "
                     f"{t['n']} held-out {t['preset']} pairs")
        lines.append(f"{'input':<34}{'MAE [arcsec]':>26}{'gap closed':>26}")
        for name, row in t["rows"].items():
            lo, hi = row["mae_ci95"]
            glo, ghi = row["gap_closed_ci95"]
            lines.append(f"{name:<34}{row['mae']:>10.4f} [{lo:.4f}, {hi:.4f}]"
                         f"{100 * row['gap_closed']:>9.0f} % [{100 * glo:.0f}, "
                         f"{100 * ghi:.0f}] %")
    return "\n".join(lines)
