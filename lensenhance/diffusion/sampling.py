"""Reverse-process sampling with per-image seeds and classifier-free guidance.

The loop is diffusers' (``set_timesteps`` / ``step``) around any denoiser
``denoiser(x_t, t, class_labels=..., cond=...)`` that returns the schedule's
parameterisation. Two things are added:

* Per-image seeding: image ``i`` of a run with seed ``s`` draws all its noise (the
  starting point and every stochastic step) from its own `torch.Generator`, seeded from
  ``numpy.random.SeedSequence(s, spawn_key=(i,))``. A sample therefore never depends on the
  batch size, on which other images share its batch, or on the device.
* Classifier-free guidance: ``out = uncond + w * (cond - uncond)``, where the
  unconditional output uses the network's null class.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._validation import check_int
from .schedule import NoiseSchedule, make_scheduler

__all__ = ["image_generators", "sample", "resolve_seed"]


def resolve_seed(seed) -> int:
    """An int seed: ``seed`` itself, or fresh entropy when None (record it to reproduce)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    return check_int(seed, "seed", 0, note=" or None")


def image_generators(seed: int, indices) -> list[torch.Generator]:
    """One CPU `torch.Generator` per image index, independent of every other index."""
    generators = []
    for index in indices:
        state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(2)
        generator = torch.Generator("cpu")
        generator.manual_seed(int(state[0]) << 32 | int(state[1]))
        generators.append(generator)
    return generators


def _randn(shape, generators, device, dtype) -> torch.Tensor:
    """Standard normal draws, image ``k`` from ``generators[k]`` (on the CPU, then moved)."""
    draws = [torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32)
             for g in generators]
    return torch.cat(draws).to(device=device, dtype=dtype)


@torch.no_grad()
def sample(denoiser, shape, *, schedule: NoiseSchedule, seed: int, indices=None,
           sampler: str = "ddim", steps: int = 50, eta: float = 0.0, class_labels=None,
           null_label: int | None = None, guidance: float | None = None, cond=None,
           device="cpu", dtype=torch.float32, callback=None, noise=None) -> torch.Tensor:
    """Draw images from the reverse process.

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x_t, t, class_labels=..., cond=...)`` -> output in
        ``schedule.parameterization``; ``t`` is a ``(batch,)`` long tensor.
    shape : tuple
        ``(batch, channels, y, x)``.
    schedule : NoiseSchedule
    seed : int
        Run seed; image ``indices[k]`` draws from its own stream (`image_generators`).
    indices : sequence of int, optional
        Index of each image of the batch in the run (default ``range(batch)``).
    sampler : {'ddpm', 'ddim', 'dpm'}
    steps : int
        Number of network evaluations (per guidance branch).
    eta : float
        DDIM stochasticity.
    class_labels : torch.Tensor, optional
        ``(batch,)`` class of each image.
    null_label : int, optional
        The network's "no class" label (for guidance).
    guidance : float, optional
        Classifier-free guidance weight ``w`` (1: conditional only; 0: unconditional);
        None runs the conditional network once per step.
    cond : torch.Tensor, optional
        Conditioning image(s) passed through to the denoiser.
    callback : callable, optional
        ``callback(i, t, x_t, x0_estimate)`` after every step (e.g. to draw the process).
    noise : torch.Tensor, optional
        The starting noise, ``shape``, instead of the per-image streams (noise keyed to
        pixel positions, so that tiles of one image agree). The deterministic samplers
        ('ddim' with ``eta=0``, 'dpm') then draw nothing else.

    Returns
    -------
    torch.Tensor
        The samples, ``shape``.
    """
    batch = shape[0]
    indices = list(range(batch)) if indices is None else list(indices)
    if len(indices) != batch:
        raise ValueError(f"{len(indices)} indices for a batch of {batch}")
    check_int(steps, "steps")
    if steps > schedule.num_train_timesteps:
        raise ValueError(f"steps={steps} exceeds the {schedule.num_train_timesteps} "
                         "training steps")
    device = torch.device(device)
    generators = image_generators(seed, indices)
    scheduler = make_scheduler(schedule, sampler)
    with warnings.catch_warnings():
        # diffusers' DPM-Solver calls np.array on a torch tensor, which numpy 2 reports
        # as deprecated: a third-party detail, not the user's to see in every row.
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't "
                                r"accept a copy keyword", category=DeprecationWarning)
        scheduler.set_timesteps(int(steps), device=device)
    if noise is None:
        noise = _randn(shape, generators, device, dtype)
    elif tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    x = noise.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
    use_guidance = guidance is not None and class_labels is not None
    if use_guidance and null_label is None:
        raise ValueError("guidance needs the network's null_label")
    if class_labels is not None:
        class_labels = torch.as_tensor(class_labels, device=device).long()
    for i, t in enumerate(scheduler.timesteps):
        t_batch = torch.full((batch,), int(t), device=device, dtype=torch.long)
        x_in = scheduler.scale_model_input(x, t)
        if use_guidance:
            labels = torch.cat([class_labels, torch.full_like(class_labels, null_label)])
            both = denoiser(torch.cat([x_in, x_in]), torch.cat([t_batch, t_batch]),
                            class_labels=labels,
                            cond=None if cond is None else torch.cat([cond, cond]))
            conditional, unconditional = both.chunk(2)
            output = unconditional + guidance * (conditional - unconditional)
        else:
            output = denoiser(x_in, t_batch, class_labels=class_labels, cond=cond)
        if callback is not None:
            callback(i, int(t), x, schedule.to_x0(output, x, t_batch))
        kwargs = {"eta": float(eta)} if sampler == "ddim" else {}
        # A list of generators: diffusers draws each image's step noise from its own one.
        x = scheduler.step(output, t, x, generator=generators, **kwargs).prev_sample
    return x
