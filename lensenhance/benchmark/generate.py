"""The ``generate`` benchmark: how close generated lensing images are to simulated ones.

For each sampler setting (DDPM-1000, DDIM-50, DPM-Solver-20 by default) the generator
draws ``n`` images, the classes in equal parts, and they are compared with ``n`` held-out
simulated images of the training preset (a seed no training run uses):

* Frechet distance (FD, with a bootstrap standard error) and kernel distance (KID, with
  its standard error) in the penultimate features of the substructure classifier trained
  on the same preset, next to the *real-vs-real floor*: the same distances between two
  independent simulated sets of the same size (FD is biased upwards at small n, so a row
  is only judged against the floor at its own n); the same per class;
* conditional fidelity: the classifier's accuracy on the generated images of each class
  (their conditioning class as the truth), over its accuracy on held-out simulated ones;
* the Jensen-Shannon distance of the pixel histograms and the mean absolute log10
  difference of the radial power spectra (both in the generator's asinh stretch);
* train-on-generated / test-on-real (TSTR): a fresh classifier trained on the generated
  images and tested on a third simulated set, over the same classifier trained on
  simulated images with the same budget (TRTR);
* memorisation: each image's nearest training image (in the classifier's features) and
  the PSNR to it, for the generated images and for held-out simulated ones; a generator
  that copies its training set gives generated images much closer to it than new real
  images are;
* seconds per image.

`TARGETS` holds the issue's targets; `format_generate_table` marks each met or not, and
`format_generate_markdown` wraps that table for the README.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import write_json

__all__ = ["benchmark_generate", "format_generate_table", "format_generate_markdown",
           "GENERATE_SEED", "DEFAULT_SAMPLERS", "TARGETS", "default_classifier"]

#: Seed of the held-out simulated sets; no training command uses it.
GENERATE_SEED = 20261122

#: (sampler, steps) rows of the benchmark.
DEFAULT_SAMPLERS = (("ddpm", 1000), ("ddim", 50), ("dpm", 20))

#: The targets of the generator issue (21).
TARGETS = {
    "fd_ratio_max": 2.0,  # FD <= 2x the real-vs-real floor at the same n
    "kid_floor_se": 3.0,  # KID within 3 combined standard errors of its floor
    "conditional_fidelity_min": 0.9,  # per class, of the real images' accuracy
    "tstr_ratio_min": 0.9,  # TSTR accuracy over TRTR accuracy
    "sampler_vs_ddpm_max": 0.10,  # |FD(sampler) - FD(DDPM-1000)| / FD(DDPM-1000)
    # Share of generated images nearer their closest training image than the real
    # images' 99th percentile (1 % expected of a generator that does not copy).
    "memorised_share_max": 0.02,
}

#: Bootstrap resamples behind the FD standard errors.
N_BOOTSTRAP = 50


def default_classifier(preset):
    """The shipped substructure classifier trained on ``preset`` (its features judge it)."""
    from ..pretrained import list_pretrained, model_card

    names = [name for name in list_pretrained(task="classify")
             if model_card(name).get("preset") == preset]
    if not names:
        raise ValueError(f"no shipped classifier was trained on preset {preset!r}; pass "
                         f"classifier= (a classifier's weights file)")
    return names[0]


def _reference_grid(generator, enhancer):
    """The `generation_images` grid of the simulated sets the generator is judged against:
    its own training grid, or with ``enhancer`` that grid before binning."""
    meta = generator.model.metadata  # safetensors metadata: strings
    binned = int(meta.get("binned", 1))
    num_pix = None if meta.get("data_num_pix") is None else int(meta["data_num_pix"])
    if enhancer is None:
        return {"num_pix": num_pix, "binned": binned}
    if isinstance(enhancer, str):
        from ..pretrained import model_card

        scale = int(model_card(enhancer).get("scale", 1))
    else:
        scale = enhancer.scale
    if scale != binned:
        raise ValueError(f"{_name(enhancer)} is a x{scale} model, but {generator.name}'s "
                         f"images are binned by {binned}; the chain needs the two to match")
    return {"num_pix": num_pix, "binned": 1}


def _name(enhancer):
    return enhancer if enhancer is None or isinstance(enhancer, str) else enhancer.name


def _on_classifier_grid(classifier, images):
    """Images zero-padded about their centre to the field the classifier was trained on.

    A chain's field (128 px of Model I's 150) lies inside the classifier's. The
    noise-free field's outer ring is near zero, so the classifier reads a padded field as
    it reads the whole one (``tests/test_generate.py`` checks this on simulated fields);
    it would misread the bare smaller field, and refuses it.
    """
    from ..training.classifier import trained_image_shape

    shape = trained_image_shape(classifier)
    images = np.asarray(images)
    if not shape or shape == images.shape[1:]:
        return images
    pad = [(0, 0)]
    for have, want in zip(images.shape[1:], shape):
        if have > want or (want - have) % 2:
            raise ValueError(f"images of {images.shape[1]}x{images.shape[2]} do not fit "
                             f"centred in the classifier's {shape[0]}x{shape[1]} field")
        pad.append(((want - have) // 2,) * 2)
    return np.pad(images, pad)


def _features(classifier, images):
    from ..training.classifier import classifier_features

    return classifier_features(classifier, _on_classifier_grid(classifier, images)
                               ).astype(np.float64)


def _feature_distances(fa, fb, *, seed, n_bootstrap=N_BOOTSTRAP):
    """FD (with its bootstrap standard error) and KID between two feature sets."""
    from ..evaluate.metrics import frechet_distance, kernel_distance

    kid, kid_se = kernel_distance(fa, fb, subset_size=max(2, len(fa) // 2), seed=seed)
    rng = np.random.default_rng(seed)
    boots = [frechet_distance(fa[rng.integers(0, len(fa), len(fa))],
                              fb[rng.integers(0, len(fb), len(fb))])
             for _ in range(n_bootstrap)]
    return {"fd": float(frechet_distance(fa, fb)), "fd_se": float(np.std(boots, ddof=1)),
            "kid": float(kid), "kid_se": float(kid_se)}


def _pixel_distances(generated, real, scaling):
    from ..evaluate.metrics import pixel_histogram_distance, power_spectrum_distance

    a, b = scaling.apply(generated), scaling.apply(real)
    return {"pixel_js": float(pixel_histogram_distance(a, b, range=(-1.05, 1.25))),
            "power_spectrum": float(power_spectrum_distance(a, b))}


def _per_class_fd(fa, labels_a, fb, labels_b, classes):
    """FD between the images of each class (classes with fewer than 3 images: NaN)."""
    from ..evaluate.metrics import frechet_distance

    out = {}
    for k, name in enumerate(classes):
        a, b = fa[labels_a == k], fb[labels_b == k]
        out[name] = float(frechet_distance(a, b)) if min(len(a), len(b)) >= 3 else \
            float("nan")
    return out


def _accuracy_per_class(classifier, images, labels, classes):
    """The classifier's accuracy on the images of each class."""
    from ..training.classifier import classifier_predict

    predicted = classifier_predict(classifier, _on_classifier_grid(classifier, images)
                                   ).argmax(1)
    labels = np.asarray(labels)
    return {name: float(np.mean(predicted[labels == k] == k)) if np.any(labels == k)
            else float("nan") for k, name in enumerate(classes)}


def _chain_floor(generator, enhancer, real_b, labels_b, features_a, labels_a, real_a,
                 classifier, scaling, *, seed, progress):
    """What a chain could reach with a perfect generator: the floor partner's images,
    summed over the generator's blocks and taken back by the enhancer, against the
    reference set (all of it, n images)."""
    import xarray as xr

    from ..generate.generator import super_resolve
    from ..simulate.render import bin_image
    from ..training.data import CLASSES

    # The binning that made the generator's training images (generation_images).
    factor = int(generator.model.metadata.get("binned", 1))
    images = xr.DataArray(bin_image(real_b, factor).astype(np.float32), dims=("image", "y", "x"),
                          attrs={"unit": generator.unit or "",
                                 "pixel_scale": generator.pixel_scale})
    through = super_resolve(images, enhancer, device=generator.device,
                            progress=progress).values
    features = _features(classifier, through)
    accuracy = _accuracy_per_class(classifier, through, labels_b, CLASSES)
    return {"n": len(through), "enhancer": _name(enhancer), "binned": factor,
            **_feature_distances(features, features_a, seed=seed),
            **_pixel_distances(through, real_a, scaling),
            "fd_per_class": _per_class_fd(features, labels_b, features_a, labels_a, CLASSES),
            "accuracy_per_class": accuracy}


def _train_on(images, labels, test_images, test_labels, *, scaling, epochs, seed):
    """Accuracy on the test set of a fresh classifier trained on ``images``."""
    import torch
    import torch.nn.functional as F

    from ..nn.resnet import SmallResNet
    from ..training.regression import fit_network

    torch.manual_seed(seed)
    net = SmallResNet(3, width=16)
    x = torch.from_numpy(scaling.apply(images))[:, None]
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    fit_network(net, x, y, F.cross_entropy, epochs=epochs, batch_size=32, lr=2e-3, seed=seed)
    with torch.inference_mode():
        logits = net.eval()(torch.from_numpy(scaling.apply(test_images))[:, None])
    return float((logits.argmax(1).numpy() == np.asarray(test_labels)).mean())


def _nearest_psnr(classifier, images, train_images, train_features):
    """PSNR of every image to its nearest training image (nearest in classifier features)."""
    from ..evaluate.metrics import image_metrics

    features = _features(classifier, images)
    # Squared distances by |a|^2 + |b|^2 - 2ab, in blocks to bound memory.
    norms = (train_features**2).sum(1)
    nearest = np.empty(len(images), dtype=np.int64)
    for start in range(0, len(images), 256):
        block = features[start:start + 256]
        d2 = (block**2).sum(1)[:, None] + norms[None, :] - 2 * block @ train_features.T
        nearest[start:start + 256] = d2.argmin(1)
    return np.array([image_metrics(image, train_images[j])["psnr"]
                     for image, j in zip(images, nearest)])


def benchmark_generate(*, generator=None, classifier=None, n=1000,
                       samplers=DEFAULT_SAMPLERS, n_ddpm=None, batch_size=64,
                       memorisation=True, tstr_epochs=15, seed=0, json_path=None,
                       progress=True, workers=1, cache_dir=None, guidance=None,
                       enhancer=None, command=None):
    """Run the ``generate`` benchmark and return its results.

    Parameters
    ----------
    generator : str or lensenhance.Generator, optional
        A shipped generator name, a weights path, or a Generator; default
        `~lensenhance.generate.generator.DEFAULT_GENERATOR`.
    classifier : str or path-like, optional
        A shipped classifier (task ``"classify"``) or its weights file; default the
        shipped classifier trained on the generator's preset (`default_classifier`).
    enhancer : str or lensenhance.Enhancer, optional
        A (shipped) super-resolution model that takes a binned generator's images back to
        its preset's grid (the chain of ``Generator.generate(enhancer=...)``): every
        figure is then of the chain's output against the unbinned simulated images.
    n : int
        Images per row (and in each simulated comparison set).
    samplers : sequence of (str, int)
        ``(sampler, steps)`` rows.
    n_ddpm : int, optional
        Images for rows of more than 100 steps (DDPM-1000 costs 20-50x a DDIM-50 row on a
        CPU); those rows are judged against the floor at their own n, and the short
        samplers are compared with them on their first ``n_ddpm`` images. Default ``n``.
    batch_size : int
        Images per network call.
    memorisation : bool
        Run the memorisation check (simulates the generator's training set again).
    tstr_epochs : int
        Epochs of the train-on-generated / train-on-real classifiers (0 skips them).
    seed : int
        Seed of the generated images (and of the KID subsets and FD bootstrap).
    json_path : path-like, optional
        Write the results as JSON.
    workers : int
        Simulation workers.
    guidance : float, optional
        Classifier-free guidance weight of every row (None: the conditional network).
    cache_dir : path-like, optional
        A folder for the simulated sets (``<preset>-seed<seed>-n<n>.npz``): a rerun, or
        a training run's own cache copied there under that name, is not simulated again.
    command : str, optional
        The command line that ran the benchmark, recorded in the results.

    Returns
    -------
    dict
        ``rows`` (one per sampler: ``n``, ``fd``, ``fd_se``, ``kid``, ``kid_se``,
        ``pixel_js``, ``power_spectrum``, ``fd_floor``, ``fd_ratio``, ``fd_per_class``,
        ``accuracy_per_class``, ``conditional_fidelity``, ``seconds_per_image``, and
        where run ``tstr_accuracy``, ``memorisation``, ``vs_ddpm``), ``floors`` (per n,
        with their per-class FD), ``real_accuracy_per_class``, ``train_on_real``,
        ``targets``, ``verdict`` (each target of the headline row met or not) and the
        settings.
    """
    from .._device import machine_description
    from ..evaluate.metrics import frechet_distance
    from ..generate.generator import Generator
    from ..nn.weights import load_weights
    from ..predict.normalization import AsinhScaling
    from ..pretrained import list_pretrained, weights_path
    from ..training.data import CLASSES, default_scaling, generation_images

    if generator is None:
        generator = Generator.from_pretrained()
    elif isinstance(generator, str):
        generator = (Generator.from_pretrained(generator) if generator in list_pretrained()
                     else Generator.from_weights(generator))
    preset = generator.preset or "model_ii"
    if classifier is None:
        classifier = default_classifier(preset)
    classifier_path = weights_path(classifier) if str(classifier) in list_pretrained() \
        else classifier
    classifier_net = load_weights(classifier_path)
    n_ddpm = n if n_ddpm is None else int(n_ddpm)
    sizes = sorted({n_ddpm if steps > 100 else n for _, steps in samplers} | {n})
    grid = _reference_grid(generator, enhancer)
    set_name = preset + "".join(f"-{key}{value}" for key, value in grid.items()
                            if value not in (None, 1))

    def simulated(count, data_seed):
        cache = None
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            cache = Path(cache_dir) / f"{set_name}-seed{data_seed}-n{count}.npz"
        return generation_images(count, preset=preset, seed=data_seed, workers=workers,
                                 progress=progress, truth=False, cache=cache, **grid)

    # Three independent simulated sets: reference, floor partner, classifier test set.
    real_a, labels_a, _ = simulated(n, GENERATE_SEED)
    real_b, labels_b, _ = simulated(n, GENERATE_SEED + 1)
    # The generator's stretch is of its own grid; a chain's finer pixels need their own.
    scaling = generator.scaling if enhancer is None else \
        AsinhScaling(**default_scaling(real_a, preset))
    features_a, features_b = _features(classifier_net, real_a), _features(classifier_net,
                                                                          real_b)
    floors = {}
    for size in sizes:
        # The first `size` of each set hold the classes in equal parts (classes in turn
        # within each simulated block would not; generation_images concatenates classes).
        pick = _balanced(labels_a, size)
        floors[size] = {
            **_feature_distances(features_a[pick], features_b[pick], seed=seed),
            **_pixel_distances(real_a[pick], real_b[pick], scaling),
            "fd_per_class": _per_class_fd(features_a[pick], labels_a[pick], features_b[pick],
                                          labels_b[pick], CLASSES)}
    real_accuracy = _accuracy_per_class(classifier_net, real_a, labels_a, CLASSES)
    chain_floor = None
    if enhancer is not None:
        chain_floor = _chain_floor(generator, enhancer, real_b, labels_b, features_a,
                                   labels_a, real_a, classifier_net, scaling, seed=seed,
                                   progress=progress)

    train_set = None
    if memorisation:
        args = generator.model.metadata.get("train_args", {})
        extra = {k: args.get(k) for k in ("n_train", "data_seed")}
        if None not in extra.values():
            train_images, _, _ = simulated(extra["n_train"], extra["data_seed"])
            train_set = (train_images, _features(classifier_net, train_images))

    result = {"command": command, "generator": generator.name,
              "weights_sha256": generator.weights_sha256,
              "classifier": str(classifier), "preset": preset, "n": n, "n_ddpm": n_ddpm,
              "enhancer": _name(enhancer), "reference_grid": grid,
              "seed": seed, "guidance": guidance, "reference_seed": GENERATE_SEED,
              "machine": machine_description(),
              "floors": floors, "real_accuracy_per_class": real_accuracy,
              **({"chain_floor": chain_floor} if chain_floor else {}), "rows": [],
              "targets": dict(TARGETS)}
    tstr = None
    if tstr_epochs:
        real_c, labels_c, _ = simulated(n, GENERATE_SEED + 2)
        tstr = (real_c, labels_c)
        result["train_on_real"] = {"accuracy": _train_on(
            real_a, labels_a, real_c, labels_c, scaling=scaling,
            epochs=tstr_epochs, seed=seed), "n_train": n, "n_test": n}
    if train_set is not None:
        held_out = _nearest_psnr(classifier_net, real_b, *train_set)
        result["memorisation_real"] = {"median_psnr": float(np.median(held_out)),
                                       "p99_psnr": float(np.percentile(held_out, 99)),
                                       "n": len(held_out)}

    for sampler, steps in samplers:
        size = n_ddpm if steps > 100 else n
        start = time.perf_counter()
        images = generator.generate(size, steps=steps, sampler=sampler, seed=seed,
                                    guidance=guidance, batch_size=batch_size,
                                    enhancer=enhancer, progress=progress)
        seconds = (time.perf_counter() - start) / size
        generated = images.values
        labels = np.array([CLASSES.index(s) for s in images["substructure"].values])
        pick = _balanced(labels_a, size)
        features = _features(classifier_net, generated)
        accuracy = _accuracy_per_class(classifier_net, generated, labels, CLASSES)
        row = {"sampler": sampler, "steps": steps, "n": size, "seconds_per_image": seconds,
               **_feature_distances(features, features_a[pick], seed=seed),
               **_pixel_distances(generated, real_a[pick], scaling),
               "fd_per_class": _per_class_fd(features, labels, features_a[pick],
                                             labels_a[pick], CLASSES),
               "accuracy_per_class": accuracy,
               "conditional_fidelity": {
                   name: accuracy[name] / real_accuracy[name] if real_accuracy[name] > 0
                   else float("nan") for name in CLASSES}}
        if size > n_ddpm:
            # The first n_ddpm images (classes in turn) against the reference at that n:
            # what the long-chain rows are compared with.
            small = _balanced(labels_a, n_ddpm)
            # The FD alone: its bootstrap and the KID are not needed here.
            row["fd_at_n_ddpm"] = float(frechet_distance(features[:n_ddpm],
                                                         features_a[small]))
        row["fd_floor"] = floors[size]["fd"]
        row["fd_floor_se"] = floors[size]["fd_se"]
        row["kid_floor"] = floors[size]["kid"]
        row["kid_floor_se"] = floors[size]["kid_se"]
        row["fd_ratio"] = row["fd"] / floors[size]["fd"]
        if tstr is not None:
            row["tstr_accuracy"] = _train_on(generated, labels, *tstr,
                                             scaling=scaling, epochs=tstr_epochs,
                                             seed=seed)
        if train_set is not None:
            nearest = _nearest_psnr(classifier_net, generated, *train_set)
            row["memorisation"] = {
                "median_psnr": float(np.median(nearest)),
                "share_above_real_p99": float(np.mean(
                    nearest > result["memorisation_real"]["p99_psnr"]))}
        result["rows"].append(row)

    ddpm_rows = [r for r in result["rows"] if r["sampler"] == "ddpm" and r["steps"] > 100]
    if ddpm_rows:
        # Each short sampler against the full ancestral chain, on the same images' n.
        ddpm = max(ddpm_rows, key=lambda r: r["steps"])
        for row in result["rows"]:
            if row is not ddpm and row["steps"] <= 100:
                fd = row.get("fd_at_n_ddpm", row["fd"])
                row["vs_ddpm"] = {"relative_fd_difference": (fd - ddpm["fd"]) / ddpm["fd"],
                                  "n": ddpm["n"], "ddpm_steps": ddpm["steps"]}
    result["verdict"] = _verdict(result)
    if json_path is not None:
        write_json(result, json_path)
    return result


def _headline(result):
    """The row the targets are judged on: DDIM-50 where run, else the first short row."""
    short = [r for r in result["rows"] if r["steps"] <= 100] or result["rows"]
    ddim = [r for r in short if (r["sampler"], r["steps"]) == ("ddim", 50)]
    return (ddim or short)[0]


def _verdict(result):
    """Each target of the headline row: ``{name: {"value", "target", "met"}}``."""
    targets, row = result["targets"], _headline(result)
    out = {"fd_ratio": {"value": row["fd_ratio"], "target": f"<= {targets['fd_ratio_max']}",
                        "met": row["fd_ratio"] <= targets["fd_ratio_max"]}}
    se = float(np.hypot(row["kid_se"], row["kid_floor_se"]))
    excess = (row["kid"] - row["kid_floor"]) / se if se > 0 else float("inf")
    out["kid_excess_se"] = {"value": excess,
                            "target": f"<= {targets['kid_floor_se']} standard errors",
                            "met": excess <= targets["kid_floor_se"]}
    fidelity = np.array(list(row["conditional_fidelity"].values()), dtype=float)
    # A class the classifier never gets right on real images has no fidelity (NaN).
    fidelity = float(np.min(fidelity)) if np.all(np.isfinite(fidelity)) else float("nan")
    out["conditional_fidelity"] = {"value": fidelity,
                                   "target": f">= {targets['conditional_fidelity_min']}",
                                   "met": fidelity >= targets["conditional_fidelity_min"]}
    if "tstr_accuracy" in row and "train_on_real" in result:
        ratio = row["tstr_accuracy"] / result["train_on_real"]["accuracy"]
        out["tstr_ratio"] = {"value": ratio, "target": f">= {targets['tstr_ratio_min']}",
                             "met": ratio >= targets["tstr_ratio_min"]}
    for other in result["rows"]:
        if "vs_ddpm" in other:
            diff = other["vs_ddpm"]["relative_fd_difference"]
            out[f"{other['sampler']}{other['steps']}_vs_ddpm"] = {
                "value": diff, "target": f"within {targets['sampler_vs_ddpm_max']:.0%}",
                "met": abs(diff) <= targets["sampler_vs_ddpm_max"]}
    if "memorisation" in row:
        share = row["memorisation"]["share_above_real_p99"]
        out["memorised_share"] = {"value": share,
                                  "target": f"<= {targets['memorised_share_max']}",
                                  "met": share <= targets["memorised_share_max"]}
    return out


def _balanced(labels, size):
    """Indices of ``size`` images with the classes in (nearly) equal parts."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    per_class = [np.flatnonzero(labels == c) for c in classes]
    picked = []
    for k in range(size):
        members = per_class[k % len(classes)]
        picked.append(members[k // len(classes)])
    return np.array(picked)


def _floor_at(result, n):
    """The floors at ``n`` images (JSON keys are text)."""
    return result["floors"].get(n, result["floors"].get(str(n)))


def _ratio(accuracy, real):
    """Conditional fidelity as the table prints it (no fidelity where real is 0)."""
    return f"{accuracy / real:.2f}x" if real > 0 else "-"


def format_generate_table(result):
    """The benchmark as a text table with its targets marked met or not.

    Results written before the per-class figures and the verdict existed (no
    ``verdict``) print without them, and with their one sampler comparison
    (``ddim50_vs_ddpm``, stored beside the rows).
    """
    classes = list(result.get("real_accuracy_per_class", {}))
    guidance = result.get("guidance")
    enhancer = result.get("enhancer")
    lines = [f"generator {result['generator']}"
             + ("" if guidance is None else f" (guidance {guidance:g})")
             + ("" if enhancer is None else f" -> {enhancer}")
             + f", features of {result['classifier']}, reference: {result['preset']} "
             f"simulated images (seed {result['reference_seed']})",
             "",
             f"{'sampler':<12}{'n':>6}{'FD':>16}{'floor':>16}{'FD/floor':>10}"
             f"{'KID':>18}{'pixel JS':>10}{'P(k)':>8}{'TSTR acc':>10}{'s/img':>8}",
             "-" * 114]

    def pm(value, se, width):
        return (f"{value:.3g}" if se is None else f"{value:.3g} +- {se:.2g}").rjust(width)

    for row in result["rows"]:
        lines.append(
            f"{row['sampler'] + '-' + str(row['steps']):<12}{row['n']:>6}"
            + pm(row["fd"], row.get("fd_se"), 16)
            + pm(row["fd_floor"], row.get("fd_floor_se"), 16)
            + f"{row['fd_ratio']:>10.2f}" + pm(row["kid"], row["kid_se"], 18)
            + f"{row['pixel_js']:>10.3f}{row['power_spectrum']:>8.3f}"
            + (f"{row['tstr_accuracy']:>10.3f}" if "tstr_accuracy" in row else f"{'-':>10}")
            + f"{row['seconds_per_image']:>8.2f}")
    chain = result.get("chain_floor")
    if chain:
        floor = _floor_at(result, chain["n"])
        lines.append(
            f"{'simulated':<12}{chain['n']:>6}" + pm(chain["fd"], chain["fd_se"], 16)
            + pm(floor["fd"], floor.get("fd_se"), 16) + f"{chain['fd'] / floor['fd']:>10.2f}"
            + pm(chain["kid"], chain["kid_se"], 18)
            + f"{chain['pixel_js']:>10.3f}{chain['power_spectrum']:>8.3f}{'-':>10}{'-':>8}")
        lines.append(f"simulated: the floor partner's images summed over {chain['binned']}x"
                     f"{chain['binned']} blocks and taken back by {chain['enhancer']}, the "
                     f"chain with a perfect generator")
    if classes:
        lines += ["", f"{'per class':<22}" + "".join(f"{c:>22}" for c in classes),
                  f"{'  real accuracy':<22}" + "".join(
                      f"{result['real_accuracy_per_class'][c]:>22.3f}" for c in classes)]
    labelled = [(f"  {row['sampler']}-{row['steps']}", row) for row in result["rows"]]
    if chain:
        labelled.append(("  simulated", chain))
    real = result.get("real_accuracy_per_class", {})
    for label, row in labelled if classes else []:
        floor = _floor_at(result, row["n"])["fd_per_class"]
        lines.append(f"{label + ' FD (floor)':<22}" + "".join(
            f"{row['fd_per_class'][c]:.3g} ({floor[c]:.3g})".rjust(22) for c in classes))
        lines.append(f"{label + ' accuracy':<22}" + "".join(
            f"{row['accuracy_per_class'][c]:.3f} ({_ratio(row['accuracy_per_class'][c], real[c])})"
            .rjust(22) for c in classes))
    if "train_on_real" in result:
        real = result["train_on_real"]
        lines.append(f"train on real, test on real: accuracy {real['accuracy']:.3f} "
                     f"(n_train={real['n_train']}, n_test={real['n_test']})")
    if "memorisation_real" in result:
        real = result["memorisation_real"]
        lines.append(f"memorisation: held-out real images' PSNR to their nearest training "
                     f"image: median {real['median_psnr']:.2f} dB, 99th pct "
                     f"{real['p99_psnr']:.2f} dB (n={real['n']})")
        for row in result["rows"]:
            if "memorisation" in row:
                mem = row["memorisation"]
                lines.append(f"  {row['sampler']}-{row['steps']}: median "
                             f"{mem['median_psnr']:.2f} dB, share above the real 99th pct "
                             f"{mem['share_above_real_p99']:.3f} (n={row['n']})")
    comparisons = [(row["sampler"], row["steps"], row["vs_ddpm"]) for row in result["rows"]
                   if "vs_ddpm" in row]
    if "ddim50_vs_ddpm" in result:
        comparisons.append(("ddim", 50, result["ddim50_vs_ddpm"]))
    for sampler, steps, cmp in comparisons:
        lines.append(f"{sampler.upper()}-{steps} FD vs DDPM-{cmp['ddpm_steps']}: "
                     f"{cmp['relative_fd_difference']:+.1%} at n={cmp['n']}")
    if "verdict" not in result:
        return "\n".join(lines)
    headline = _headline(result)
    lines += ["", f"targets (headline row {headline['sampler']}-{headline['steps']}, "
                  f"n={headline['n']}):"]
    for name, item in result["verdict"].items():
        lines.append(f"  {name:<24}{item['value']:>10.3g}  target {item['target']:<26}"
                     f"{'met' if item['met'] else 'not met'}")
    return "\n".join(lines)


def format_generate_markdown(result):
    """`format_generate_table` as a fenced Markdown code block, as the README shows it.

    Parameters
    ----------
    result : dict or path-like
        A result of `benchmark_generate`, or the JSON file it was written to.

    Returns
    -------
    str
        The block, from its opening to its closing fence, without a final newline.
    """
    if not isinstance(result, dict):
        result = json.loads(Path(result).read_text())
    return f"```\n{format_generate_table(result)}\n```"
