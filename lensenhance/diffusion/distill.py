"""Few-step sampling by a student distilled from a many-step teacher's trajectories.

A deterministic sampler of a diffusion model (DPM-Solver or DDIM with ``eta=0``) is a
map from the starting noise to a sample, through states ``x_t`` at its timesteps. A
student is trained to jump along that map in a few large steps: from the teacher's state
``x_t`` it predicts the clean image ``x0`` for which one DDIM step from ``t`` lands on the
teacher's state at ``s`` (progressive distillation's target, Salimans & Ho 2022, ICLR,
eq. 8, here for a jump over several teacher steps at once as in TRACT, Berthelot et al.
2023). The student is told both ``t`` and ``s`` (a consistency-trajectory student, Kim et
al. 2024), so one network serves every grid of `STUDENT_GRIDS`: 1, 2 or 4 evaluations
instead of the teacher's 10.

Everything here is pure torch on a `NoiseSchedule`; the teacher's trajectories and the
training task are in `lensenhance.training.distill`.
"""

from __future__ import annotations

import torch

from .schedule import NoiseSchedule

__all__ = ["STUDENT_GRIDS", "DEFAULT_STEPS", "METHOD", "grid_jumps", "landing_x0", "ddim_jump",
           "sample_few_step"]

#: Timesteps of the few-step samplers, by number of network evaluations; each grid
#: ends at the clean image (0). All are among the 10-step teacher's timesteps.
STUDENT_GRIDS = {1: (999,), 2: (999, 499), 4: (999, 699, 499, 299)}

#: A distilled model's steps unless asked otherwise.
DEFAULT_STEPS = 2

#: What a distilled model's card says of how it was made.
METHOD = ("trajectory distillation: the student jumps t -> s along the teacher's "
          "deterministic sampler, target the x0 whose DDIM step lands on the teacher's state "
          "(Salimans & Ho 2022, ICLR, eq. 8), over several teacher steps at once (TRACT, "
          "Berthelot et al. 2023, arXiv:2303.04248), one student told both t and s "
          "(consistency trajectory models, Kim et al. 2024, ICLR); no normalisation, no "
          "attention (SkipInit, De & Smith 2020)")


def grid_jumps(grids=None) -> list[tuple[int, int]]:
    """Every ``(t, s)`` jump of the grids (``s = 0``: to the clean image), sorted."""
    grids = STUDENT_GRIDS if grids is None else grids
    jumps = set()
    for times in grids.values():
        times = [int(t) for t in times]
        jumps.update(zip(times, times[1:] + [0]))
    return sorted(jumps, reverse=True)


def _alpha_sigma(schedule: NoiseSchedule, t: int, like: torch.Tensor):
    if int(t) == 0:  # the clean image itself
        return torch.ones((), dtype=like.dtype), torch.zeros((), dtype=like.dtype)
    abar = schedule.alphas_cumprod[int(t)]
    return abar.sqrt().to(like.dtype), (1 - abar).sqrt().to(like.dtype)


def ddim_jump(schedule: NoiseSchedule, x_t, t: int, x0, s: int):
    """The deterministic DDIM step from ``x_t`` at ``t`` to ``s`` given a clean estimate."""
    alpha_t, sigma_t = _alpha_sigma(schedule, t, x_t)
    alpha_s, sigma_s = _alpha_sigma(schedule, s, x_t)
    epsilon = (x_t - alpha_t * x0) / sigma_t
    return alpha_s * x0 + sigma_s * epsilon


def landing_x0(schedule: NoiseSchedule, x_t, t: int, x_s, s: int):
    """The clean image whose DDIM step from ``(x_t, t)`` lands exactly on ``(x_s, s)``.

    ``x0 = (x_s - (sigma_s / sigma_t) x_t) / (alpha_s - (sigma_s / sigma_t) alpha_t)``
    (Salimans & Ho 2022, eq. 8); for ``s = 0`` it is ``x_s`` itself.
    """
    if int(s) == 0:
        return x_s
    alpha_t, sigma_t = _alpha_sigma(schedule, t, x_t)
    alpha_s, sigma_s = _alpha_sigma(schedule, s, x_t)
    ratio = sigma_s / sigma_t
    return (x_s - ratio * x_t) / (alpha_s - ratio * alpha_t)


@torch.no_grad()
def sample_few_step(student, noise, *, schedule: NoiseSchedule, steps: int = DEFAULT_STEPS,
                    cond=None, grids=None):
    """Samples from a distilled student in ``steps`` network evaluations.

    Parameters
    ----------
    student : callable
        ``student(x_t, t, s=..., cond=...)`` -> the clean estimate for the jump ``t -> s``.
    noise : torch.Tensor
        The starting noise (the state at the grid's first timestep, ``alpha ~ 0``).
    schedule : NoiseSchedule
        The teacher's.
    steps : int
        A key of ``grids``.
    cond : torch.Tensor, optional
        Conditioning image(s) passed through to the student.
    grids : dict, optional
        ``{steps: timesteps}``; default `STUDENT_GRIDS`.

    Returns
    -------
    torch.Tensor
        The samples, shaped like ``noise``.
    """
    grids = STUDENT_GRIDS if grids is None else {int(k): v for k, v in grids.items()}
    if int(steps) not in grids:
        raise ValueError(f"this distilled model samples in {sorted(grids)} steps, "
                         f"not {steps!r}")
    times = [int(t) for t in grids[int(steps)]]
    x = noise  # the teacher's start too (alpha ~ 0 at the first timestep)
    batch = x.shape[0]
    for t, s in zip(times, times[1:] + [0]):
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)
        s_batch = torch.full((batch,), s, device=x.device, dtype=torch.long)
        x0 = student(x, t_batch, s=s_batch, cond=cond)
        x = x0 if s == 0 else ddim_jump(schedule, x, t, x0, s)
    return x
