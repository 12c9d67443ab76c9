"""The denoising training loss, with min-SNR weighting (Hang et al. 2023)."""

from __future__ import annotations

import torch

from .schedule import NoiseSchedule

__all__ = ["WEIGHTINGS", "loss_weights", "diffusion_loss"]

#: Per-step weightings of the loss.
WEIGHTINGS = ("min_snr", "uniform")


def loss_weights(schedule: NoiseSchedule, t: torch.Tensor, *, weighting: str = "min_snr",
                 gamma: float = 5.0) -> torch.Tensor:
    """Weight of each sample's squared error at steps ``t``.

    ``"min_snr"`` weighs the x0 error by ``min(SNR, gamma)``, expressed in the
    parameterisation the network predicts (for epsilon ``min(SNR, gamma) / SNR``, for v
    ``min(SNR, gamma) / (SNR + 1)``); it stops the nearly noise-free steps from dominating
    training. ``"uniform"`` is the plain mean squared error of the prediction.
    """
    if weighting == "uniform":
        return torch.ones(t.shape, dtype=torch.float32, device=t.device)
    if weighting != "min_snr":
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    snr = schedule.snr(t)
    clipped = snr.clamp(max=gamma)
    if schedule.parameterization == "epsilon":
        weight = clipped / snr
    elif schedule.parameterization == "v":
        weight = clipped / (snr + 1)
    else:
        weight = clipped
    return weight.to(torch.float32)


def diffusion_loss(output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
                   t: torch.Tensor, schedule: NoiseSchedule, *, weighting: str = "min_snr",
                   gamma: float = 5.0) -> torch.Tensor:
    """Weighted mean squared error of a network ``output`` at ``x_t`` built from ``(x0, noise, t)``.

    Returns
    -------
    torch.Tensor
        A scalar: the batch mean of the per-sample weighted mean squared errors.
    """
    target = schedule.target(x0, noise, t)
    per_sample = ((output.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    return (loss_weights(schedule, t, weighting=weighting, gamma=gamma) * per_sample).mean()
