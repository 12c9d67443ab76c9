"""Posterior sampling: a deterministic mean plus residual diffusion, as a predictor.

A conditional diffusion model of `lensenhance` (``diffusion-sr-x2``, ``diffusion-denoise``)
is two networks (the design of NVIDIA's CorrDiff): a deterministic model gives the mean
(a residual SR network, or the `~lensenhance.nn.raunet.RAUNet` denoiser, which takes the
per-pixel sigma), and a conditional UNet draws the residual ``truth - mean`` in units of
the input's sigma, given ``[up(x), up(sigma), mean]`` (`residual_condition`). Many draws
give the posterior mean, its per-pixel standard deviation and quantiles.

The standard deviation is recalibrated once, on held-out images: ``calibration`` holds a
factor on the spread of the samples about their mean, fitted so that the central 68 %
intervals cover 68 % of the truth where there is light (`lensenhance.evaluate.uncertainty`), and
stored with the weights.

`PosteriorPredictor` plugs this into the `~lensenhance.Enhancer`; it needs a sigma, and the
Enhancer estimates a constant one (`estimate_sigma`) for an image without an uncertainty.
Every random number comes from `~lensenhance.predict.predictors.position_noise`, keyed to the
output pixel, so the same seed gives the same samples whatever the tiling or batching.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int
from ..diffusion.distill import DEFAULT_STEPS, sample_few_step
from ..nn.inference import inference_copy
from .predictors import (
    Prediction,
    Predictor,
    count_receptive_field,
    has_global_operations,
    position_noise,
)
from .snr_factor import snr_std_factor, table_context

__all__ = ["PosteriorPredictor", "estimate_sigma", "residual_condition", "SIGMA_FLOOR",
           "load_posterior", "load_base"]

#: Smallest sigma (normalised units) by which a residual is scaled.
SIGMA_FLOOR = 1e-3

# Margin (input pixels) a tile needs around the pixels it is used for: the UNet sees far,
# but the residual it draws depends on a neighbourhood much smaller than its field.
_POSTERIOR_HALO = 24
# Output pixels (samples x tiles x pixels) of one sampler pass, which bound its activations
# (16 samples of a 1152^2 tile took 6.5 GB; one sample of a 1024^2 output, about 0.5 GB
# with the -fast students); never binding for cutouts (16 samples of 150^2 are 0.36 M).
_PASS_PIXELS = 1 << 20


def estimate_sigma(image, mask=None) -> float:
    """The sky noise of an image: the sigma-clipped MAD standard deviation of its pixels.

    What the Enhancer gives every pixel when an image comes without an uncertainty
    (it misses the source's own Poisson noise, which the models learn to add).

    Parameters
    ----------
    image : array-like
    mask : array-like of bool, optional
        True for pixels to ignore (non-finite ones are ignored anyway).

    Returns
    -------
    float
    """
    from astropy.stats import sigma_clipped_stats

    data = np.asarray(image, dtype=np.float64)
    good = np.isfinite(data)
    if mask is not None:
        good &= ~np.asarray(mask, bool)
    if not good.any():
        raise ValueError("estimate_sigma: no finite, unmasked pixel")
    _, _, std = sigma_clipped_stats(data[good], sigma=3.0, maxiters=10, stdfunc="mad_std")
    return float(std)


def residual_condition(x, sigma, mean, scale):
    """The conditioning stack ``[up(x), up(sigma), mean]`` and the residual unit.

    Parameters
    ----------
    x, sigma : torch.Tensor
        ``(B, 1, y, x)`` normalised input and its standard deviation.
    mean : torch.Tensor
        ``(B, 1, s*y, s*x)`` the deterministic model's output.
    scale : int

    Returns
    -------
    cond : torch.Tensor
        ``(B, 3, s*y, s*x)``; nearest upsampling, so that each output pixel sees its own
        input pixel's value and noise.
    unit : torch.Tensor
        ``(B, 1, s*y, s*x)``: ``up(sigma)`` floored at `SIGMA_FLOOR`; residuals are
        diffused in this unit.
    """
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
        sigma = F.interpolate(sigma, scale_factor=scale, mode="nearest")
    return torch.cat([x, sigma, mean], dim=1), sigma.clamp_min(SIGMA_FLOOR)


class PosteriorPredictor(Predictor):
    """Samples of the posterior from a deterministic mean and a residual diffusion UNet.

    Parameters
    ----------
    base : torch.nn.Module
        The deterministic model: ``base(x)`` or, if it has ``takes_sigma``,
        ``base(x, sigma)``.
    unet : lensenhance.nn.unet.DiffusionUNet
        With ``cond_channels=3``.
    schedule : lensenhance.diffusion.NoiseSchedule
    scale : int
    n_samples : int, optional
        Draws per pixel (the std of ``n`` draws has a relative error ~ ``1/sqrt(2n)``).
    steps : int, optional
        Sampler steps (network evaluations) per draw (default 10; a distilled model's:
        2).
    sampler : {'dpm', 'ddim', 'distilled'}, optional
        Deterministic samplers: only the starting noise is random. 'distilled' (the only
        one, and the default, of a model with ``grids``) jumps along the teacher's
        trajectories (`lensenhance.diffusion.distill`).
    grids : dict, optional
        A distilled student's ``{steps: timesteps}``; ``unet`` is then a
        `~lensenhance.nn.localunet.LocalUNet` and ``steps`` one of the keys.
    std_scale : float, optional
        Calibration factor on the spread of the draws about their mean.
    snr_calibration : dict, optional
        A factor that depends on each pixel's signal instead, in place of ``std_scale``
        (`lensenhance.predict.snr_factor`; it needs each image's zero level, which the
        Enhancer passes as ``zero``, and a table grouped by ``q`` the input's sigma).
    snr_range : (float, float), optional
        The ``1 / median(sigma)`` (normalised) range of the training images.
    name : str, optional
    weights_sha256 : str, optional
    sample_batch : int, optional
        Draws evaluated together (memory against speed).
    """

    exact_tiling = False
    needs_sigma = True

    def __init__(self, base, unet, *, schedule, scale, n_samples=16, steps=None, sampler=None,
                 std_scale=1.0, snr_range=None, name="posterior", weights_sha256=None,
                 sample_batch=16, halo=None, grids=None, snr_calibration=None):
        check_int(n_samples, "n_samples", 2, integral_floats=True)
        self.grids = None if grids is None else {int(k): tuple(map(int, v))
                                                 for k, v in grids.items()}
        if self.grids is None:
            steps = 10 if steps is None else steps
            sampler = "dpm" if sampler is None else sampler
            if sampler not in ("dpm", "ddim"):
                raise ValueError("sampler must be 'dpm' or 'ddim' (deterministic), got "
                                 f"{sampler!r}")
        else:
            steps = DEFAULT_STEPS if steps is None else steps
            sampler = "distilled" if sampler is None else sampler
            if sampler != "distilled":
                raise ValueError(f"{name} is a distilled model: its sampler is 'distilled', "
                                 f"not {sampler!r}")
            if steps not in self.grids:
                raise ValueError(f"{name} samples in {sorted(self.grids)} steps, not {steps!r}")
        check_int(steps, "steps", integral_floats=True)
        if not std_scale > 0:
            raise ValueError(f"std_scale must be > 0, got {std_scale!r}")
        # Exact rewrites for faster inference (channels_last: 13 % on this CPU), on copies.
        self.base = inference_copy(base.eval())
        self.unet = inference_copy(unet.eval())
        self.schedule = schedule
        self.scale = int(scale)
        self.n_samples = int(n_samples)
        self.steps = int(steps)
        self.sampler = sampler
        self.std_scale = float(std_scale)
        self.snr_calibration = snr_calibration
        self.snr_range = None if snr_range is None else tuple(map(float, snr_range))
        self.name = name
        self.sample_batch = max(1, int(sample_batch))
        self._weights_sha256 = weights_sha256
        self.base_takes_sigma = bool(getattr(base, "takes_sigma", False))
        if halo is None and self.grids is None:
            base_halo = 0 if self.base_takes_sigma else count_receptive_field(base)
            halo = max(base_halo, _POSTERIOR_HALO)
        elif halo is None:  # the base's reach, then the student's on the output grid
            halo = count_receptive_field(base) + math.ceil(unet.receptive_field / self.scale)
        self.halo = int(halo)
        # A student without normalisation on a local base: tiles equal the whole image.
        self.exact_tiling = self.grids is not None and not has_global_operations(base)
        # Both U-Nets see the whole image's pooling grid only in aligned tiles.
        self.tile_alignment = math.lcm(int(getattr(base, "divisor", 1)),
                                       int(getattr(unet, "divisor", 1)))

    @property
    def uncertainty_type(self):
        """What the standard deviation is (the output header's UNCTYPE)."""
        return (f"posterior std of {self.n_samples} diffusion samples ({self.sampler}, "
                f"{self.steps} steps) x " + ("an SNR-dependent factor" if self.snr_calibration
                                             else f"{self.std_scale:.3g}") + " (calibration)")

    def gives_std(self, has_sigma):
        return True

    @property
    def device(self):
        return next(self.unet.parameters()).device

    def to(self, device):
        self.base.to(device)
        self.unet.to(device)
        return self

    def weights_hash(self):
        return self._weights_sha256

    def deterministic_mean(self, x, sigma):
        """The base model's output (normalised units)."""
        with torch.inference_mode():
            return (self.base(x, sigma) if self.base_takes_sigma else self.base(x)).float()

    @property
    def uses_zero_level(self):
        return bool(self.snr_calibration)

    def predict(self, x, *, sigma=None, seed=0, origins=None, zero=None):
        from ..diffusion import sample

        if sigma is None:
            raise ValueError(f"{self.name} needs the input's sigma (the Enhancer estimates "
                             "one for an image without an uncertainty)")
        s = self.scale
        mean0 = self.deterministic_mean(x, sigma)
        cond, unit = residual_condition(x, sigma.to(x.dtype), mean0, s)
        batch, _, ny, nx = mean0.shape
        d = self.unet.divisor
        pad_y, pad_x = (-ny) % d, (-nx) % d
        if pad_y or pad_x:
            mode = "reflect" if min(ny, nx) > max(pad_y, pad_x) else "replicate"
            cond = F.pad(cond, (0, pad_x, 0, pad_y), mode=mode)
        py, px = ny + pad_y, nx + pad_x
        # (n_samples, B, py, px): noise keyed to output pixels (the pad gets its own).
        noise = np.stack([position_noise(seed, key, y0 * s, x0 * s, py, px, self.n_samples)
                          for key, y0, x0 in origins], axis=1)
        noise = torch.from_numpy(noise).to(x.device)[:, :, None]
        draws = []
        # samples per pass: at most sample_batch images, and _PASS_PIXELS output pixels
        # (16 samples of a 1152^2 tile would take 6 GB of activations)
        per_pass = max(1, min(self.sample_batch // batch, _PASS_PIXELS // (batch * py * px)))
        with torch.inference_mode():
            for start in range(0, self.n_samples, per_pass):
                part = noise[start:start + per_pass]
                k = len(part)
                start_noise = part.reshape(k * batch, 1, py, px)
                if self.grids is None:
                    residual = sample(self._denoiser, (k * batch, 1, py, px),
                                      schedule=self.schedule, seed=seed, sampler=self.sampler,
                                      steps=self.steps, cond=cond.repeat(k, 1, 1, 1),
                                      device=x.device, noise=start_noise)
                else:
                    residual = sample_few_step(self.unet, start_noise, schedule=self.schedule,
                                               steps=self.steps, cond=cond.repeat(k, 1, 1, 1),
                                               grids=self.grids)
                draws.append(residual.reshape(k, batch, 1, py, px)[..., :ny, :nx])
            # In place from here: 16 samples of a 1152^2 tile are 85 MB a copy.
            samples = torch.cat(draws).float()
            del draws, noise, part, start_noise
            samples = samples.mul_(unit).add_(mean0)
            mean = samples.mean(dim=0)
            deviation = samples.sub_(mean)
            spread = deviation.square().sum(dim=0).div_(self.n_samples - 1).sqrt_()
            factor = (snr_std_factor(mean, spread, self.snr_calibration,
                                     0.0 if zero is None else zero,
                                     noise=self._output_noise(sigma))
                      if self.snr_calibration else self.std_scale)
            return Prediction(mean, std=spread * factor,
                              samples=deviation.mul_(factor).add_(mean))

    def _output_noise(self, sigma):
        """The input's noise on the output's grid (nearest), where the table needs it."""
        if table_context(self.snr_calibration)[0] == "background":
            return None
        if self.scale > 1:
            sigma = F.interpolate(sigma, scale_factor=self.scale, mode="nearest")
        return sigma

    def _denoiser(self, x_t, t, *, class_labels=None, cond=None):
        return self.unet(x_t, t, cond=cond)

    def snr_warning(self, sigma, good):
        """A message when an image's noise is outside the trained range, else None.

        The figure is ``1 / median(sigma)`` in normalised units: the noise against the
        99.5th percentile of the sky-subtracted image, the same for every unit.
        """
        if self.snr_range is None:
            return None
        values = np.asarray(sigma)[np.asarray(good, bool)]
        if not values.size:
            return None
        snr = 1.0 / max(float(np.median(values)), 1e-12)
        low, high = self.snr_range
        if snr < low / 1.5 or snr > high * 1.5:
            # Short: it goes into a header card as it is.
            return f"SNR {snr:.3g} outside the trained range {low:.3g}-{high:.3g}"
        return None

    def __repr__(self):
        return (f"<PosteriorPredictor {self.name!r} scale={self.scale} "
                f"n_samples={self.n_samples} steps={self.steps} sampler={self.sampler!r} "
                f"std_scale={self.std_scale:.3g}>")


def load_posterior(path, *, base=None, name=None, device="cpu", **options):
    """A `PosteriorPredictor` from a residual diffusion weights file.

    Parameters
    ----------
    path : path-like
        Weights of task ``"posterior"`` (their metadata name the base model, its
        SHA-256, the schedule, the scale, the calibration and the trained SNR range).
    base : torch.nn.Module, optional
        The deterministic model; default: the one the metadata names (a shipped model,
        checked against the recorded SHA-256).
    name : str, optional
    device : str or torch.device
    **options
        `PosteriorPredictor` options (``n_samples``, ``steps``, ``sampler`` ...).
    """
    from pathlib import Path

    from ..diffusion import NoiseSchedule
    from ..nn.weights import load_weights, read_weights_metadata
    from ..pretrained import file_sha256

    path = Path(path)
    meta = read_weights_metadata(path)
    if meta.get("task") != "posterior":
        raise ValueError(f"{path}: a {meta.get('task')!r} model, not a posterior model")
    if base is None:
        base = load_base(meta, path)
    unet = load_weights(path, device=device)
    calibration = meta.get("calibration") or {}
    distilled = meta.get("distilled")
    if distilled:
        options.setdefault("grids", distilled["grids"])
    if options.get("std_scale") is None:
        # a distilled model's factor is fitted for each of its step counts
        steps = options.get("steps") or (DEFAULT_STEPS if distilled else 10)
        fitted = (calibration.get("by_steps") or {}).get(str(steps), calibration)
        options["std_scale"] = fitted.get("std_scale", 1.0)
        options.setdefault("snr_calibration", fitted.get("snr_bins"))
    return PosteriorPredictor(base.to(device), unet,
                              schedule=NoiseSchedule.from_dict(meta["schedule"]),
                              scale=int(meta.get("scale", 1)),
                              snr_range=meta.get("snr_range"),
                              name=name or path.name.removesuffix(".safetensors"),
                              weights_sha256=file_sha256(path), **options)


def load_base(meta, path):
    """The deterministic model a posterior model's metadata names (checked by SHA-256)."""
    from pathlib import Path

    from ..nn.weights import load_weights
    from ..pretrained import file_sha256, list_pretrained, load_pretrained

    reference = str(meta.get("base_model"))
    if reference in list_pretrained():
        base = load_pretrained(reference)
        return base
    base_path = Path(reference)
    if not base_path.is_absolute() and not base_path.is_file():
        base_path = Path(path).parent / base_path  # next to the posterior weights
    if not base_path.is_file():
        raise FileNotFoundError(f"{path}: its base model {reference!r} is neither a shipped "
                                "model nor a file")
    if meta.get("base_sha256") and file_sha256(base_path) != meta["base_sha256"]:
        raise ValueError(f"{path}: base model {base_path} is not the one it was trained on "
                         "(SHA-256 differs)")
    return load_weights(base_path)
