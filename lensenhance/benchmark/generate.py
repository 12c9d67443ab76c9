"""The ``generate`` benchmark: how close generated lensing images are to simulated ones.

For each sampler setting (DDPM-1000, DDIM-50, DPM-Solver-20 by default) the generator
draws ``n`` images, the classes in equal parts, and they are compared with ``n`` held-out
simulated images of the training preset (a seed no training run uses):

* Frechet distance (FD) and kernel distance (KID, with its standard error) in the
  features of the shipped lensing classifier, next to the *real-vs-real floor*: the same
  distances between two independent simulated sets of the same size (both distances are
  biased upwards at small n, so a row is only judged against the floor at its own n);
* the Jensen-Shannon distance of the pixel histograms and the mean absolute log10 difference of
  the radial power spectra (both in the generator's asinh stretch);
* train-on-generated / test-on-real: a fresh classifier trained on the generated images
  (their conditioning classes as labels) and tested on a third simulated set, next to the
  same classifier trained on simulated images;
* memorisation: each image's nearest training image (in the classifier's features) and
  the PSNR to it, for the generated images and for held-out simulated ones; a generator
  that copies its training set gives generated images much closer to it than new real
  images are;
* seconds per image.

Targets (issue 7): FD <= 2x the floor; DDIM-50's FD within 10 % of DDPM-1000's.
"""

from __future__ import annotations

import time

import numpy as np

from . import write_json

__all__ = ["benchmark_generate", "format_generate_table", "GENERATE_SEED", "DEFAULT_SAMPLERS"]

#: Seed of the held-out simulated sets; no training command uses it.
GENERATE_SEED = 20261122

#: (sampler, steps) rows of the benchmark.
DEFAULT_SAMPLERS = (("ddpm", 1000), ("ddim", 50), ("dpm", 20))


def _features(classifier, images):
    from ..training.classifier import classifier_features

    return classifier_features(classifier, images).astype(np.float64)


def _distances(classifier, generated, real, scaling, *, seed):
    from ..evaluate.metrics import (
        frechet_distance,
        kernel_distance,
        pixel_histogram_distance,
        power_spectrum_distance,
    )

    fa, fb = _features(classifier, generated), _features(classifier, real)
    kid, kid_se = kernel_distance(fa, fb, subset_size=max(2, len(fa) // 2), seed=seed)
    a, b = scaling.apply(generated), scaling.apply(real)
    return {"fd": float(frechet_distance(fa, fb)), "kid": float(kid), "kid_se": float(kid_se),
            "pixel_js": float(pixel_histogram_distance(a, b, range=(-1.05, 1.25))),
            "power_spectrum": float(power_spectrum_distance(a, b))}


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


def benchmark_generate(*, generator="ddpm-lens64", classifier="lens-classifier", n=1000,
                       samplers=DEFAULT_SAMPLERS, n_ddpm=None, batch_size=64,
                       memorisation=True, tstr_epochs=15, seed=0, json_path=None,
                       progress=True, workers=1, command=None):
    """Run the ``generate`` benchmark and return its results.

    Parameters
    ----------
    generator : str or lensenhance.Generator
        A shipped generator name, a weights path, or a Generator.
    classifier : str or path-like
        A shipped classifier (task ``"classify"``) or its weights file.
    n : int
        Images per row (and in each simulated comparison set).
    samplers : sequence of (str, int)
        ``(sampler, steps)`` rows.
    n_ddpm : int, optional
        Images for rows of more than 100 steps (DDPM-1000 costs 20-50x a DDIM-50 row on a
        CPU); those rows are judged against the floor at their own n. Default ``n``.
    batch_size : int
        Images per network call.
    memorisation : bool
        Run the memorisation check (simulates the generator's training set again).
    tstr_epochs : int
        Epochs of the train-on-generated / train-on-real classifiers (0 skips them).
    seed : int
        Seed of the generated images.
    json_path : path-like, optional
        Write the results as JSON.
    workers : int
        Simulation workers.
    command : str, optional
        The command line that ran the benchmark, recorded in the results.

    Returns
    -------
    dict
        ``rows`` (one per sampler: ``n``, ``fd``, ``kid``, ``kid_se``, ``pixel_js``,
        ``power_spectrum``, ``fd_floor``, ``fd_ratio``, ``seconds_per_image``, and where
        run ``tstr_accuracy``, ``memorisation``), ``floors`` (per n), ``train_on_real``,
        ``targets`` and the settings.
    """
    from ..generate.generator import Generator
    from ..nn.weights import load_weights
    from ..pretrained import list_pretrained, weights_path
    from ..training.data import CLASSES, generation_images

    if isinstance(generator, str):
        generator = (Generator.from_pretrained(generator) if generator in list_pretrained()
                     else Generator.from_weights(generator))
    classifier_path = weights_path(classifier) if str(classifier) in list_pretrained() \
        else classifier
    classifier_net = load_weights(classifier_path)
    n_ddpm = n if n_ddpm is None else int(n_ddpm)
    preset = generator.preset or "model_ii"
    sizes = sorted({n_ddpm if steps > 100 else n for _, steps in samplers} | {n})

    # Three independent simulated sets: reference, floor partner, classifier test set.
    real_a, labels_a, _ = generation_images(n, preset=preset, seed=GENERATE_SEED,
                                            workers=workers, progress=progress)
    real_b, _, _ = generation_images(n, preset=preset, seed=GENERATE_SEED + 1,
                                     workers=workers, progress=progress)
    floors = {}
    for size in sizes:
        # The first `size` of each set hold the classes in equal parts (classes in turn
        # within each simulated block would not; generation_images concatenates classes).
        pick = _balanced(labels_a, size)
        floors[size] = _distances(classifier_net, real_a[pick], real_b[pick],
                                  generator.scaling, seed=seed)

    train_set = None
    if memorisation:
        args = generator.model.metadata.get("train_args", {})
        extra = {k: args.get(k) for k in ("n_train", "data_seed")}
        if None not in extra.values():
            train_images, _, _ = generation_images(extra["n_train"], preset=preset,
                                                   seed=extra["data_seed"], workers=workers,
                                                   progress=progress)
            train_set = (train_images, _features(classifier_net, train_images))

    result = {"command": command, "generator": generator.name,
              "weights_sha256": generator.weights_sha256,
              "classifier": str(classifier), "preset": preset, "n": n, "n_ddpm": n_ddpm,
              "seed": seed, "reference_seed": GENERATE_SEED, "floors": floors, "rows": [],
              "targets": {"fd_ratio_max": 2.0, "ddim50_vs_ddpm_max": 0.10}}
    tstr = None
    if tstr_epochs:
        real_c, labels_c, _ = generation_images(n, preset=preset, seed=GENERATE_SEED + 2,
                                                workers=workers, progress=progress)
        tstr = (real_c, labels_c)
        result["train_on_real"] = {"accuracy": _train_on(
            real_a, labels_a, real_c, labels_c, scaling=generator.scaling,
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
                                    batch_size=batch_size, progress=progress)
        seconds = (time.perf_counter() - start) / size
        generated = images.values
        labels = np.array([CLASSES.index(s) for s in images["substructure"].values])
        pick = _balanced(labels_a, size)
        row = {"sampler": sampler, "steps": steps, "n": size, "seconds_per_image": seconds,
               **_distances(classifier_net, generated, real_a[pick], generator.scaling,
                            seed=seed)}
        if size > n_ddpm:
            # The first n_ddpm images (classes in turn) against the reference at that n:
            # what the long-chain rows are compared with.
            small = _balanced(labels_a, n_ddpm)
            row["fd_at_n_ddpm"] = _distances(classifier_net, generated[:n_ddpm],
                                             real_a[small], generator.scaling,
                                             seed=seed)["fd"]
        row["fd_floor"] = floors[size]["fd"]
        row["kid_floor"] = floors[size]["kid"]
        row["fd_ratio"] = row["fd"] / floors[size]["fd"]
        if tstr is not None:
            row["tstr_accuracy"] = _train_on(generated, labels, *tstr,
                                             scaling=generator.scaling, epochs=tstr_epochs,
                                             seed=seed)
        if train_set is not None:
            nearest = _nearest_psnr(classifier_net, generated, *train_set)
            row["memorisation"] = {
                "median_psnr": float(np.median(nearest)),
                "share_above_real_p99": float(np.mean(
                    nearest > result["memorisation_real"]["p99_psnr"]))}
        result["rows"].append(row)

    ddpm_rows = [r for r in result["rows"] if r["sampler"] == "ddpm"]
    ddim_rows = [r for r in result["rows"] if (r["sampler"], r["steps"]) == ("ddim", 50)]
    if ddpm_rows and ddim_rows:
        # DDIM-50 against the full ancestral chain, on the same images' n.
        ddpm, ddim = max(ddpm_rows, key=lambda r: r["steps"]), ddim_rows[0]
        ddim_fd = ddim.get("fd_at_n_ddpm", ddim["fd"])
        result["ddim50_vs_ddpm"] = {"relative_fd_difference": (ddim_fd - ddpm["fd"]) / ddpm["fd"],
                                    "n": ddpm["n"], "ddpm_steps": ddpm["steps"]}
    if json_path is not None:
        write_json(result, json_path)
    return result


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


def format_generate_table(result):
    """The benchmark as a text table with its targets marked met or not."""
    lines = [f"generator {result['generator']}, features of {result['classifier']}, "
             f"reference: {result['preset']} simulated images (seed {result['reference_seed']})",
             "",
             f"{'sampler':<12}{'n':>6}{'FD':>10}{'floor':>9}{'FD/floor':>10}{'KID':>11}"
             f"{'+-':>9}{'pixel JS':>10}{'P(k)':>8}{'TSTR acc':>10}{'s/img':>8}",
             "-" * 103]
    for row in result["rows"]:
        met = "met" if row["fd_ratio"] <= result["targets"]["fd_ratio_max"] else "not met"
        lines.append(
            f"{row['sampler'] + '-' + str(row['steps']):<12}{row['n']:>6}{row['fd']:>10.3g}"
            f"{row['fd_floor']:>9.3g}{row['fd_ratio']:>10.2f}{row['kid']:>11.3g}"
            f"{row['kid_se']:>9.2g}{row['pixel_js']:>10.3f}{row['power_spectrum']:>8.3f}"
            + (f"{row['tstr_accuracy']:>10.3f}" if "tstr_accuracy" in row else f"{'-':>10}")
            + f"{row['seconds_per_image']:>8.2f}   FD <= 2x floor: {met}")
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
    if "ddim50_vs_ddpm" in result:
        cmp = result["ddim50_vs_ddpm"]
        diff = cmp["relative_fd_difference"]
        met = "met" if abs(diff) <= result["targets"]["ddim50_vs_ddpm_max"] else "not met"
        lines.append(f"DDIM-50 FD vs DDPM-{cmp['ddpm_steps']}: {diff:+.1%} at n={cmp['n']} "
                     f"(target within 10 %: {met})")
    return "\n".join(lines)
