"""Diffusion models in pure torch: schedules, parameterisations, loss, sampling.

Built on `diffusers` (its beta schedules and its DDPM, DDIM and DPM-Solver++ samplers);
adds the parameterisations (epsilon, v, x0) and their conversions, the min-SNR weighted
loss, classifier-free guidance and per-image seeding. Nothing here reads FITS or knows
units: tensors in, tensors out.
"""

from .losses import WEIGHTINGS, diffusion_loss, loss_weights
from .sampling import image_generators, resolve_seed, sample
from .schedule import PARAMETERIZATIONS, SAMPLERS, NoiseSchedule, make_scheduler

__all__ = ["NoiseSchedule", "PARAMETERIZATIONS", "SAMPLERS", "WEIGHTINGS", "diffusion_loss",
           "image_generators", "loss_weights", "make_scheduler", "resolve_seed", "sample"]
