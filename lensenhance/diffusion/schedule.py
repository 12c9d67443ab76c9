"""Noise schedule, parameterisations and samplers' schedulers (pure torch + diffusers).

A variance-preserving diffusion ``x_t = alpha_t x_0 + sigma_t eps`` with
``alpha_t**2 = alphas_cumprod[t]`` and ``sigma_t**2 = 1 - alpha_t**2``. The betas and
the samplers come from `diffusers` (DDPM, DDIM, DPM-Solver++); this module adds what
diffusers keeps inside its schedulers: the three parameterisations a network may be
trained in (``epsilon``, ``v``, ``x0``) and exact conversions between them, and the
signal-to-noise ratio that the min-SNR loss weighting needs.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["NoiseSchedule", "PARAMETERIZATIONS", "SAMPLERS", "make_scheduler"]

#: What a network may predict.
PARAMETERIZATIONS = ("epsilon", "v", "x0")

#: Sampler names accepted by `make_scheduler` (and by ``Generator.generate``).
SAMPLERS = ("ddpm", "ddim", "dpm")

# diffusers' names of the parameterisations.
_DIFFUSERS_PREDICTION = {"epsilon": "epsilon", "v": "v_prediction", "x0": "sample"}


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """A discrete variance-preserving noise schedule.

    Parameters
    ----------
    num_train_timesteps : int
        Number of diffusion steps in training.
    beta_schedule : str
        A diffusers beta schedule: ``"squaredcos_cap_v2"`` (cosine, Nichol & Dhariwal
        2021), ``"linear"``, ``"scaled_linear"``.
    beta_start, beta_end : float
        Ends of the linear schedules (ignored by the cosine one).
    parameterization : {'epsilon', 'v', 'x0'}
        What the network predicts.
    """

    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    parameterization: str = "v"

    def __post_init__(self):
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got "
                             f"{self.parameterization!r}")
        if int(self.num_train_timesteps) < 2:
            raise ValueError("num_train_timesteps must be at least 2")

    # -- construction and storage
    def to_dict(self) -> dict:
        """The schedule as plain values (stored in weights metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> NoiseSchedule:
        """Inverse of `to_dict` (unknown keys are an error)."""
        return cls(**values)

    def _kwargs(self) -> dict:
        return {"num_train_timesteps": self.num_train_timesteps,
                "beta_schedule": self.beta_schedule, "beta_start": self.beta_start,
                "beta_end": self.beta_end,
                "prediction_type": _DIFFUSERS_PREDICTION[self.parameterization]}

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``alpha_t**2`` for every training step, float64 (from diffusers' betas)."""
        cached = self.__dict__.get("_alphas_cumprod")
        if cached is None:
            from diffusers import DDPMScheduler

            scheduler = DDPMScheduler(**self._kwargs())
            cached = scheduler.alphas_cumprod.to(torch.float64)
            object.__setattr__(self, "_alphas_cumprod", cached)
        return cached

    def _coefficients(self, t: torch.Tensor, like: torch.Tensor):
        """``alpha_t`` and ``sigma_t`` at integer steps ``t``, shaped to broadcast."""
        abar = self.alphas_cumprod.to(like.device)[t.to(like.device).long()]
        shape = (-1,) + (1,) * (like.ndim - 1)
        alpha = abar.sqrt().to(like.dtype).reshape(shape)
        sigma = (1 - abar).sqrt().to(like.dtype).reshape(shape)
        return alpha, sigma

    # -- the forward process
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = alpha_t x0 + sigma_t noise``."""
        alpha, sigma = self._coefficients(t, x0)
        return alpha * x0 + sigma * noise

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha_t**2 / sigma_t**2`` (float64)."""
        abar = self.alphas_cumprod[t.cpu().long()]
        return (abar / (1 - abar)).to(t.device)

    # -- parameterisations
    def target(self, x0, noise, t) -> torch.Tensor:
        """What a network of this parameterisation should output for ``(x0, noise, t)``."""
        if self.parameterization == "epsilon":
            return noise
        if self.parameterization == "x0":
            return x0
        alpha, sigma = self._coefficients(t, x0)
        return alpha * noise - sigma * x0

    def to_x0(self, output, x_t, t) -> torch.Tensor:
        """The clean-image estimate implied by a network ``output`` at ``(x_t, t)``."""
        alpha, sigma = self._coefficients(t, x_t)
        if self.parameterization == "epsilon":
            return (x_t - sigma * output) / alpha
        if self.parameterization == "x0":
            return output
        return alpha * x_t - sigma * output

    def to_epsilon(self, output, x_t, t) -> torch.Tensor:
        """The noise estimate implied by a network ``output`` at ``(x_t, t)``."""
        alpha, sigma = self._coefficients(t, x_t)
        if self.parameterization == "epsilon":
            return output
        if self.parameterization == "x0":
            return (x_t - alpha * output) / sigma
        return sigma * x_t + alpha * output

    def from_x0(self, x0, x_t, t) -> torch.Tensor:
        """The network output of this parameterisation that implies clean image ``x0``."""
        alpha, sigma = self._coefficients(t, x_t)
        noise = (x_t - alpha * x0) / sigma
        return self.target(x0, noise, t)


def make_scheduler(schedule: NoiseSchedule, sampler: str = "ddim"):
    """A diffusers scheduler for ``sampler`` on ``schedule``'s betas and parameterisation.

    Parameters
    ----------
    schedule : NoiseSchedule
    sampler : {'ddpm', 'ddim', 'dpm'}
        Ancestral DDPM, DDIM (deterministic for ``eta=0``) or DPM-Solver++ (2nd order,
        multistep).

    Returns
    -------
    diffusers.SchedulerMixin
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    kwargs = schedule._kwargs()
    if sampler == "ddpm":
        scheduler = DDPMScheduler(**kwargs, clip_sample=False, variance_type="fixed_small")
    elif sampler == "ddim":
        scheduler = DDIMScheduler(**kwargs, clip_sample=False, set_alpha_to_one=True,
                                  timestep_spacing="trailing")
    elif sampler == "dpm":
        scheduler = DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++",
                                                solver_order=2, timestep_spacing="trailing",
                                                final_sigmas_type="zero")
    else:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    return scheduler
