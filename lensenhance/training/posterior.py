"""Posterior models: a denoiser that takes sigma, and residual diffusion on top of a mean.

The conditional diffusion models of `lensenhance` are two networks, as in NVIDIA's CorrDiff:

1. a deterministic network gives the mean (a residual SR network of `lensenhance.nn.sr`
   for super-resolution, the `~lensenhance.nn.raunet.RAUNet` for denoising, which takes
   the per-pixel sigma beside the image);
2. a conditional UNet (`~lensenhance.nn.unet.DiffusionUNet`), given the upsampled input,
   its upsampled sigma and that mean, models the residual ``truth - mean`` in units of the
   input's sigma. The residual is small and nearly local, so few sampling steps suffice,
   and the posterior mean is the regression's plus a correction.

Everything is in the Enhancer's normalised units: each input image is normalised as
`lensenhance.Enhancer` would (`fit_normalization`), its sigma divided by the same scale,
and the truth mapped like the SR pairs (`lensenhance.training.data.normalize_pairs`: flux per
input pixel). Half of the training images carry their exact sigma map, the other half the
constant sky noise that the Enhancer estimates when an image comes without one
(`estimate_sigma`), so the models work with either.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int
from ..diffusion import NoiseSchedule, diffusion_loss
from ..nn.ensemble import d4_transform
from ..predict.posterior import SIGMA_FLOOR, estimate_sigma, residual_condition
from .diffusion import validation_loss
from .initial import init_record, initial_network, weights_file
from .loop import train

__all__ = ["snr_pairs", "normalise_posterior_data", "SigmaDenoiseTask",
           "ResidualDiffusionTask", "train_denoiser", "train_residual_diffusion",
           "DENOISE_EXPOSURE", "POSTERIOR_UNET", "snr_of", "hsc_pairs", "hsc_sets",
           "posterior_sets", "HSC_CALIBRATION", "noise_correlation"]

#: log10 range of the exposure time per exposure (s) of the denoisers' training images
#: (Euclid VIS-like model_ii: 566 s x 4 nominal, so 0.06-5.6 times nominal depth).
DENOISE_EXPOSURE = (1.5, 3.5)

#: The residual diffusion UNet: no attention but the middle block's (cheap on a CPU at
#: 150 x 150 and local, so that tiles agree).
POSTERIOR_UNET = {"channels": [16, 32, 64, 96], "attention_levels": [], "layers_per_block": 1,
                  "norm_groups": 8, "attention_head_dim": 32}

_VALIDATION_STREAM = 2**32 - 1


def snr_of(x, sigma) -> np.ndarray:
    """Signal-to-noise figure of normalised images: 1 / median sigma (per image)."""
    sigma = np.asarray(sigma)
    return 1.0 / np.maximum(np.median(sigma.reshape(len(sigma), -1), axis=1), 1e-12)


def snr_pairs_overrides(exposure_log10):
    """The preset overrides with which `snr_pairs` simulates: the exposure time drawn
    log-uniformly from ``10**exposure_log10`` seconds."""
    from ..simulate.presets import LogUniform

    return {"exposure_time": LogUniform(*exposure_log10)}


def snr_pairs(n, *, preset="model_ii", exposure_log10=DENOISE_EXPOSURE, seed=0, workers=1,
              progress=True, cache=None):
    """Shallow observations, their sigma and the noise-free sky, over a range of depths.

    The simulator's `~lensenhance.simulate.LensSimulator.simulate_snr_pairs` with the
    exposure time drawn log-uniformly from ``10**exposure_log10`` seconds, the three
    substructure classes in equal parts.

    Returns
    -------
    dict
        ``low``, ``low_sigma``, ``clean`` (float32, ``(n, y, x)``, electron/s), ``seed``
        (int64 ``(n,)``: each image's seed, from which
        `lensenhance.simulate.render.lens_light_images` rebuilds its lens light),
        ``label`` (int64 ``(n,)``: the class, 0, 1, 2 for "no_sub", "cdm", "axion", in
        blocks in that order) and ``attrs``.
    """
    from ..simulate import LensSimulator

    arrays = ("low", "low_sigma", "clean", "seed", "label")
    # version 2: the cache holds the seeds and labels too (older ones are re-simulated)
    key = json.dumps({"n": int(n), "preset": preset, "seed": int(seed), "version": 2,
                      "exposure_log10": list(map(float, exposure_log10))}, sort_keys=True)
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                return {name: stored[name] for name in arrays} | {
                    "attrs": json.loads(str(stored["attrs"]))}
    parts, labels = [], []
    for k, name in enumerate(("no_sub", "cdm", "axion")):
        count = len(range(k, n, 3))
        if not count:
            continue
        class_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        sim = LensSimulator.from_preset(preset, substructure=name, seed=class_seed,
                                        **snr_pairs_overrides(exposure_log10))
        parts.append(sim.simulate_snr_pairs(count, workers=workers, progress=progress))
        labels.append(np.full(count, k, np.int64))
    out = {name: np.concatenate([p[name].values for p in parts]).astype(np.float32)
           for name in ("low", "low_sigma", "clean")}
    out["seed"] = np.concatenate([p["seed"].values for p in parts]).astype(np.int64)
    out["label"] = np.concatenate(labels)
    out["attrs"] = {"preset": preset, "pixel_scale": float(parts[0].attrs["pixel_scale"]),
                    "unit": str(parts[0].attrs["unit"]),
                    "exposure_log10": list(map(float, exposure_log10))}
    if cache is not None:
        import io

        from .._atomic import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, key=np.array(key), attrs=np.array(json.dumps(out["attrs"])),
                 **{k: out[k] for k in arrays})
        atomic_write_bytes(Path(cache), buffer.getvalue())
    return out


def normalise_posterior_data(x, sigma, truth, *, scale=1, estimated=None, unit="electron/s"):
    """Normalise inputs, sigmas and truths exactly as the Enhancer would see them.

    The same rule as `lensenhance.training.data.normalize_pairs` (the Enhancer's
    `~lensenhance.predict.normalization.fit_image_normalization` and the flux split of ``unit``).

    Parameters
    ----------
    x, sigma : numpy.ndarray, ``(n, y, x)``
        Observed images and their exact standard deviation (data unit).
    truth : numpy.ndarray, ``(n, s*y, s*x)``
        What the model should recover (flux per output pixel).
    scale : int
    estimated : array of bool, optional
        Per image: give the constant `estimate_sigma` instead of the exact map.
    unit : str or astropy unit, optional
        The images' unit.

    Returns
    -------
    x, sigma, truth : numpy.ndarray, float32, normalised
    """
    from astropy import units as u

    from ..predict.normalization import fit_image_normalization, normalize_target
    from ..predict.pixels import flux_split_factor

    n = len(x)
    split = flux_split_factor(None if unit is None else u.Unit(unit), scale)
    estimated = np.zeros(n, bool) if estimated is None else np.asarray(estimated, bool)
    xs, ss, ts = (np.empty(np.shape(a), np.float32) for a in (x, sigma, truth))
    for i in range(n):
        norm = fit_image_normalization(x[i])
        xs[i] = norm.apply(x[i])
        if estimated[i]:
            ss[i] = estimate_sigma(x[i]) / norm.scale
        else:
            ss[i] = sigma[i] / norm.scale
        ts[i] = normalize_target(truth[i], norm, split)
    return xs, ss, ts


def _aligned_crops(arrays, factors, patch, rng, n_images, batch_size, *, augment=True):
    """Aligned random crops of several stacks, D4-augmented alike (unless ``augment`` is
    False: a teacher's own inputs, as it saw them).

    ``arrays[0]`` is on the input grid; ``factors[j]`` is how many pixels of
    ``arrays[j]`` span one input pixel; ``patch`` is the crop side on the finest grid.
    """
    side = patch // max(factors)  # in input pixels
    ny, nx = arrays[0].shape[-2:]
    out = [[] for _ in arrays]
    for _ in range(batch_size):
        i = int(rng.integers(n_images))
        y0 = int(rng.integers(0, ny - side + 1))
        x0 = int(rng.integers(0, nx - side + 1))
        k, flip = (int(rng.integers(4)), bool(rng.integers(2))) if augment else (0, False)
        for j, (a, f) in enumerate(zip(arrays, factors)):
            crop = a[i, y0 * f:(y0 + side) * f, x0 * f:(x0 + side) * f]
            # rotate by k, then flip: the D4 element (-k, flip)
            out[j].append(d4_transform(crop, -k % 4 if flip else k, flip) if augment
                          else crop)
    return [np.ascontiguousarray(np.stack(o))[:, None] for o in out]


class SigmaDenoiseTask:
    """Regression of the clean image from ``(x, sigma)`` (the RAUNet), an L1 loss.

    Parameters
    ----------
    data : tuple
        ``(x, sigma, truth)`` normalised stacks (`normalise_posterior_data`).
    patch : int
        Side of the training crops.
    validation : tuple, optional
        Held-out ``(x, sigma, truth)``; the figure is their PSNR in normalised units.
    metadata : dict, optional
        What the exported weights carry.
    """

    name = "denoise"

    def __init__(self, data, *, patch=48, validation=None, metadata=None):
        self.x, self.sigma, self.truth = (np.asarray(a, np.float32) for a in data)
        self.patch = check_int(patch, "patch")
        self.validation = None if validation is None else [
            torch.from_numpy(np.asarray(a, np.float32))[:, None] for a in validation]
        self.metadata = dict(metadata or {})

    def __repr__(self):
        return f"SigmaDenoiseTask({len(self.x)} images, patch={self.patch})"

    def config(self):
        return {"n": len(self.x), "patch": self.patch, "loss": "l1",
                "metadata": self.metadata}

    def batch(self, batch_size, rng):
        x, sigma, truth = _aligned_crops([self.x, self.sigma, self.truth], [1, 1, 1], self.patch,
                                   rng, len(self.x), batch_size)
        return torch.from_numpy(x), torch.from_numpy(sigma), torch.from_numpy(truth)

    def loss(self, net, batch):
        x, sigma, truth = batch
        loss = F.l1_loss(net(x, sigma), truth)
        return loss, {}

    @torch.no_grad()
    def validate(self, net, device, batch_size):
        if self.validation is None:
            return None
        was_training = net.training
        net.eval()
        try:
            square, peak = [], []
            for start in range(0, len(self.validation[0]), batch_size):
                x, sigma, truth = (v[start:start + batch_size].to(device)
                                   for v in self.validation)
                square.append(((net(x, sigma) - truth) ** 2).mean(dim=(1, 2, 3)).cpu())
                peak.append((truth.amax(dim=(1, 2, 3)) - truth.amin(dim=(1, 2, 3))).cpu())
            mse, peak = torch.cat(square), torch.cat(peak)
            psnr = 10 * torch.log10(peak**2 / mse.clamp_min(1e-20))
        finally:
            net.train(was_training)
        return {"val_psnr": float(psnr.mean()), "val_mse": float(mse.mean())}

    def weights_metadata(self):
        return {"task": "denoise", **self.metadata}


def _upsample(a, scale):
    return a if scale == 1 else np.repeat(np.repeat(a, scale, axis=-2), scale, axis=-1)


class ResidualDiffusionTask:
    """Diffusion of ``(truth - mean) / sigma`` conditioned on ``[up(x), up(sigma), mean]``.

    Parameters
    ----------
    data : tuple
        ``(x, sigma, mean, truth)`` normalised stacks; ``mean`` and ``truth`` on the
        ``scale`` times finer grid.
    scale : int
    schedule : lensenhance.diffusion.NoiseSchedule
    patch : int
        Side of the training crops on the output grid (a multiple of ``scale``).
    validation : tuple, optional
        Held-out ``(x, sigma, mean, truth)`` of the patch size; the figure is their loss at
        fixed steps and noise.
    metadata : dict, optional
    """

    name = "posterior"

    def __init__(self, data, *, scale, schedule: NoiseSchedule, patch=64, weighting="min_snr",
                 gamma=5.0, validation=None, metadata=None):
        self.x, self.sigma, self.mean, self.truth = (np.asarray(a, np.float32) for a in data)
        self.scale = check_int(scale, "scale")
        self.patch = check_int(patch, "patch")
        if self.patch % self.scale:
            raise ValueError(f"patch {patch} is not a multiple of scale {scale}")
        self.schedule = schedule
        self.weighting, self.gamma = weighting, float(gamma)
        self.metadata = dict(metadata or {})
        self.validation = None
        if validation is not None:
            tensors = [torch.from_numpy(np.asarray(a, np.float32))[:, None] for a in validation]
            rng = np.random.default_rng([0, _VALIDATION_STREAM])
            n = len(tensors[0])
            t = torch.from_numpy(rng.integers(0, schedule.num_train_timesteps, size=n))
            noise = torch.from_numpy(rng.standard_normal(
                tensors[3].shape).astype(np.float32))
            self.validation = (*tensors, t, noise)

    def __repr__(self):
        return (f"ResidualDiffusionTask({len(self.x)} images, x{self.scale}, "
                f"patch={self.patch}, {self.schedule.parameterization}-prediction)")

    def config(self):
        return {"n": len(self.x), "scale": self.scale, "patch": self.patch,
                "schedule": self.schedule.to_dict(), "weighting": self.weighting,
                "gamma": self.gamma, "metadata": self.metadata}

    def batch(self, batch_size, rng):
        s = self.scale
        x, sigma, mean, truth = _aligned_crops([self.x, self.sigma, self.mean, self.truth],
                                         [1, 1, s, s], self.patch, rng, len(self.x),
                                         batch_size)
        t = rng.integers(0, self.schedule.num_train_timesteps, size=batch_size)
        noise = rng.standard_normal(truth.shape).astype(np.float32)
        return tuple(torch.from_numpy(a) for a in (x, sigma, mean, truth, t, noise))

    def _loss(self, net, x, sigma, mean, truth, t, noise):
        cond, unit = residual_condition(x, sigma, mean, self.scale)
        residual = (truth - mean) / unit
        x_t = self.schedule.add_noise(residual, noise, t)
        output = net(x_t, t, cond=cond)
        return diffusion_loss(output, residual, noise, t, self.schedule,
                              weighting=self.weighting, gamma=self.gamma)

    def loss(self, net, batch):
        return self._loss(net, *batch), {}

    def validate(self, net, device, batch_size):
        return validation_loss(self._loss, net, self.validation, device, batch_size)

    def weights_metadata(self):
        return {"task": "posterior", "scale": self.scale, "schedule": self.schedule.to_dict(),
                "sigma_floor": SIGMA_FLOOR, **self.metadata}


def _denoise_sets(out_dir, *, preset, n_train, n_val, data_seed, exposure_log10, workers,
                  progress):
    """Normalised (x, sigma, truth) for training and validation, exact/estimated sigma."""
    sets = {}
    for part, n, seed in (("train", n_train, data_seed), ("val", n_val, data_seed + 10_000)):
        raw = snr_pairs(n, preset=preset, exposure_log10=exposure_log10, seed=seed,
                        workers=workers, progress=progress and part == "train",
                        cache=out_dir / f"{part}_pairs.npz")
        estimated = np.arange(n) % 2 == 1
        sets[part] = normalise_posterior_data(raw["low"], raw["low_sigma"], raw["clean"],
                                              estimated=estimated)
        sets["attrs"] = raw["attrs"]
    return sets


def train_denoiser(*, out_dir, preset="model_ii", n_train=6000, n_val=200, data_seed=5,
                   exposure_log10=DENOISE_EXPOSURE, steps=3000, batch_size=16, patch=48,
                   lr=5e-4, channels=(32, 64, 128), blocks=1, resume=False, overwrite=False,
                   seed=0, max_steps=None, workers=1, progress=True, device=None,
                   metadata=None, data=None, init=None):
    """Train the RAUNet denoiser (the mean of ``diffusion-denoise``) on simulated pairs.

    Parameters
    ----------
    out_dir : path-like
        Run folder; the simulated pairs are cached there.
    preset, n_train, n_val, data_seed, exposure_log10
        The simulated training set (validation from ``data_seed + 10000``).
    data : dict, optional
        ``{"train": (x, sigma, truth), "val": (...), "attrs": {...}}`` already normalised
        (real pairs, e.g. HSC), instead of simulating.
    init : str or path-like, optional
        Weights (registry name or file) to start from: fine-tuning.
    steps, batch_size, lr, resume, overwrite, seed, max_steps, device, metadata
        As for `lensenhance.training.train`.

    Returns
    -------
    dict
        The training history.
    """
    from ..nn.raunet import RAUNet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = _denoise_sets(out_dir, preset=preset, n_train=n_train, n_val=n_val,
                             data_seed=data_seed, exposure_log10=exposure_log10,
                             workers=workers, progress=progress)
    x, sigma, _ = data["train"]
    snr = snr_of(x, sigma)
    attrs = data["attrs"]
    torch.manual_seed(seed)
    net = RAUNet(channels=channels, blocks=blocks) if init is None else initial_network(init)
    task = SigmaDenoiseTask(data["train"], patch=patch, validation=data["val"], metadata={
        "data_preset": attrs.get("preset"), "unit": attrs.get("unit"),
        "pixel_scale": attrs.get("pixel_scale"),
        "exposure_log10": attrs.get("exposure_log10"),
        "snr_range": [float(np.percentile(snr, 1)), float(np.percentile(snr, 99))]})
    return train(net, task, steps=steps, out_dir=out_dir, batch_size=batch_size, lr=lr,
                 weight_decay=0.0, ema_decay=0.999, grad_clip=1.0, val_every=250,
                 checkpoint_every=250, resume=resume, overwrite=overwrite, seed=seed,
                 progress=progress, device=device, metadata=metadata, max_steps=max_steps,
                 extra_config={"n_train": len(x), "data_seed": data_seed,
                               "init": init_record(init)})


def base_means(model, x, sigma, *, batch_size=32, device="cpu"):
    """The deterministic model's output for normalised stacks (``sigma`` if it takes it)."""
    takes_sigma = getattr(model, "takes_sigma", False)
    model = model.to(device).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[start:start + batch_size])[:, None].to(device)
            sb = torch.from_numpy(sigma[start:start + batch_size])[:, None].to(device)
            out.append((model(xb, sb) if takes_sigma else model(xb))[:, 0].float().cpu())
    return torch.cat(out).numpy()


def train_residual_diffusion(*, out_dir, base, data, scale, steps=6000, batch_size=16,
                             patch=64, lr=2e-4, ema_decay=0.999, parameterization="v",
                             beta_schedule="squaredcos_cap_v2", unet=None, resume=False,
                             overwrite=False, seed=0, max_steps=None, progress=True,
                             device=None, metadata=None, n_val=64, init=None):
    """Train the residual diffusion UNet on top of a deterministic model.

    Parameters
    ----------
    out_dir : path-like
    base : str or path-like
        The deterministic model: a registry name or a weights file.
    data : dict
        ``{"train": (x, sigma, truth), "val": (...), "attrs": {...}}`` normalised.
    scale : int
    steps, batch_size, lr, ema_decay, resume, overwrite, seed, max_steps, device, metadata
        As for `lensenhance.training.train`.
    patch : int
        Training crop on the output grid.
    unet : dict, optional
        `~lensenhance.nn.unet.DiffusionUNet` arguments replacing `POSTERIOR_UNET`.
    init : str or path-like, optional
        Diffusion weights to start from (fine-tuning).

    Returns
    -------
    dict
        The training history.
    """
    from ..nn.unet import DiffusionUNet
    from ..nn.weights import load_weights
    from ..pretrained import file_sha256

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_path = weights_file(base)
    model = load_weights(base_path)
    cache = out_dir / "base_means.npz"
    digest = file_sha256(base_path)
    x, sigma, truth = data["train"]
    vx, vsigma, vtruth = (a[:n_val] for a in data["val"])
    mean = None
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["sha256"]) == digest and stored["train"].shape == truth.shape:
                mean, vmean = stored["train"], stored["val"]
    if mean is None:
        mean = base_means(model, x, sigma)
        vmean = base_means(model, vx, vsigma)
        np.savez(cache, train=mean, val=vmean, sha256=np.array(digest))
    s = int(scale)
    crop = patch // s
    # Validation: the top-left patch of each held-out image, fixed.
    validation = (vx[:, :crop, :crop], vsigma[:, :crop, :crop], vmean[:, :patch, :patch],
                  vtruth[:, :patch, :patch])
    schedule = NoiseSchedule(parameterization=parameterization, beta_schedule=beta_schedule)
    snr = snr_of(x, sigma)
    attrs = data["attrs"]
    torch.manual_seed(seed)
    net = (DiffusionUNet(sample_size=patch, cond_channels=3, **{**POSTERIOR_UNET, **(unet or {})})
           if init is None else initial_network(init))
    task = ResidualDiffusionTask((x, sigma, mean, truth), scale=s, schedule=schedule,
                                 patch=patch, validation=validation, metadata={
        "base_model": str(base), "base_sha256": digest,
        "base_architecture": model.config["architecture"],
        "data_preset": attrs.get("preset"), "unit": attrs.get("unit"),
        "pixel_scale": attrs.get("pixel_scale"),
        "exposure_log10": attrs.get("exposure_log10"),
        "snr_range": [float(np.percentile(snr, 1)), float(np.percentile(snr, 99))]})
    return train(net, task, steps=steps, out_dir=out_dir, batch_size=batch_size, lr=lr,
                 weight_decay=0.0, ema_decay=ema_decay, grad_clip=1.0, val_every=500,
                 checkpoint_every=250, resume=resume, overwrite=overwrite, seed=seed,
                 progress=progress, device=device, metadata=metadata, max_steps=max_steps,
                 extra_config={"n_train": len(x), "init": init_record(init)})


#: HSC ``train`` pairs held back from fine-tuning to calibrate the standard deviation
#: (the last ones in catalog order).
HSC_CALIBRATION = 96


def hsc_pairs(directory, part, *, n=None):
    """HSC Wide and Deep/UltraDeep cutouts of one part of the catalog.

    Parameters
    ----------
    directory : path-like
        Holding ``catalog.ecsv`` with ``path``, ``target_path`` and ``split`` columns.
    part : {'train', 'calibration', 'val'}
        'train' is the catalog's ``train`` split less its last `HSC_CALIBRATION` rows,
        which are 'calibration'; 'val' is the catalog's ``val`` split (never trained on).
    n : int, optional
        At most this many pairs (the first ones).

    Returns
    -------
    wide, deep : numpy.ndarray, float32, ``(n, y, x)``
    names : list of str
    """
    from astropy.io import fits
    from astropy.table import Table

    directory = Path(directory)
    catalog_path = directory / "catalog.ecsv"
    if not catalog_path.is_file():
        raise FileNotFoundError(f"{catalog_path}: no such catalog")
    catalog = Table.read(catalog_path)
    for column in ("path", "target_path", "split"):
        if column not in catalog.colnames:
            raise ValueError(f"{catalog_path}: no {column!r} column")
    if part not in ("train", "calibration", "val"):
        raise ValueError(f"part must be 'train', 'calibration' or 'val', got {part!r}")
    split = catalog[catalog["split"] == ("val" if part == "val" else "train")]
    if part == "train":
        split = split[:len(split) - HSC_CALIBRATION]
    elif part == "calibration":
        split = split[len(split) - HSC_CALIBRATION:]
    rows = split if n is None else split[:n]
    wide = np.stack([fits.getdata(directory / r["path"]).astype(np.float32) for r in rows])
    deep = np.stack([fits.getdata(directory / r["target_path"]).astype(np.float32)
                     for r in rows])
    return wide, deep, [str(r["name"]) if "name" in rows.colnames else str(r["path"])
                        for r in rows]


def hsc_sets(directory, *, n_val=64):
    """HSC Wide -> Deep/UltraDeep pairs, normalised, with estimated (constant) sigma.

    The Wide image is the input and its sky noise is estimated (`estimate_sigma`), as the
    Enhancer does for an image without an uncertainty; the Deep/UltraDeep image is the
    truth. ``train`` is `hsc_pairs` 'train'; ``val`` is the first ``n_val`` 'calibration'
    pairs, for the validation figure only (the catalog's ``val`` split is never seen).
    A model trained on them predicts the deep *image*, its noise included: the deep
    coadds share much of their noise with the Wide ones (see `noise_correlation`), so
    the deep image's noise is not independent of the input and cannot be taken out.
    """
    sets = {}
    for part, name in (("train", "train"), ("val", "calibration")):
        wide, deep, _ = hsc_pairs(directory, name, n=None if part == "train" else n_val)
        sets[part] = normalise_posterior_data(wide, np.zeros_like(wide), deep,
                                              estimated=np.ones(len(wide), bool))
    sets["attrs"] = {"preset": "hsc_wide_dud", "unit": None, "pixel_scale": 0.168,
                     "exposure_log10": None}
    return sets


def noise_correlation(wide, deep):
    """The correlation of the Wide and Deep images' pixel noise, from their sky noises.

    With ``s_w``, ``s_d`` and ``s_diff`` the sky noise (`estimate_sigma`) of each image
    and of their difference, ``rho = (s_w**2 + s_d**2 - s_diff**2) / (2 s_w s_d)``
    (0 for independent noise), the median over the pairs.

    Returns
    -------
    dict
        ``rho``, and the median ``sigma_wide``, ``sigma_deep``, ``sigma_difference``, ``n``.
    """
    values = []
    for w, d in zip(wide, deep):
        s_w, s_d, s_diff = estimate_sigma(w), estimate_sigma(d), estimate_sigma(w - d)
        values.append((s_w, s_d, s_diff, (s_w**2 + s_d**2 - s_diff**2) / (2 * s_w * s_d)))
    median = np.median(np.array(values), axis=0)
    return {"rho": float(median[3]), "sigma_wide": float(median[0]),
            "sigma_deep": float(median[1]), "sigma_difference": float(median[2]),
            "n": int(len(values))}


def posterior_sets(kind, *, out_dir, hsc_dir=None, n_train=None, n_val=200, data_seed=None,
                   workers=1, progress=True):
    """The normalised training and validation sets of a residual diffusion model.

    Parameters
    ----------
    kind : {'denoise', 'sr'}
        'denoise': simulated Model II shallow -> noise-free pairs over
        `DENOISE_EXPOSURE` (or HSC pairs with ``hsc_dir``); 'sr': simulated Model I x2
        pairs (noisy LR, noise-free HR).

    Returns
    -------
    data : dict
        ``{"train": (x, sigma, truth), "val": (...), "attrs": {...}}``.
    scale : int
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if hsc_dir is not None:
        if kind != "denoise":
            raise ValueError("--hsc pairs are denoising pairs (--task denoise)")
        return hsc_sets(hsc_dir), 1
    if kind == "denoise":
        return _denoise_sets(out_dir, preset="model_ii", n_train=n_train or 6000, n_val=n_val,
                             data_seed=5 if data_seed is None else data_seed,
                             exposure_log10=DENOISE_EXPOSURE, workers=workers,
                             progress=progress), 1
    if kind != "sr":
        raise ValueError(f"kind must be 'denoise' or 'sr', got {kind!r}")
    from .data import simulated_pairs

    sets = {}
    seed = 1 if data_seed is None else data_seed
    for part, n, part_seed in (("train", n_train or 3000, seed), ("val", n_val, seed + 10_000)):
        cache = out_dir / f"{part}_pairs.npz"
        key = json.dumps({"n": n, "seed": part_seed, "preset": "model_i", "scale": 2})
        raw = None
        if cache.is_file():
            with np.load(cache) as stored:
                if str(stored["key"]) == key:
                    raw = {k: stored[k] for k in ("lr", "lr_sigma", "hr")}
        if raw is None:
            ds = simulated_pairs(n, preset="model_i", scale=2, seed=part_seed, workers=workers,
                                 progress=progress and part == "train")
            raw = {k: ds[k].values.astype(np.float32) for k in ("lr", "lr_sigma", "hr")}
            np.savez(cache, key=np.array(key), **raw)
            attrs = {"preset": "model_i", "unit": str(ds.attrs["unit"]),
                     "pixel_scale": float(ds.attrs["hr_pixel_scale"]), "exposure_log10": None}
            (out_dir / "data_attrs.json").write_text(json.dumps(attrs))
        sets[part] = normalise_posterior_data(raw["lr"], raw["lr_sigma"], raw["hr"], scale=2,
                                              estimated=np.arange(n) % 2 == 1)
    sets["attrs"] = json.loads((out_dir / "data_attrs.json").read_text())
    return sets, 2
