"""Noise of observed images: the preset's noise law, drawn or as a standard deviation.

Images are flux per pixel in electron/s; a noise law turns the expected (noise-free)
image into an observed one and says its exact standard deviation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["background_variance", "observe", "observe_preset", "noise_sigma"]


def background_variance(preset, *, pixel_scale, exposure_time):
    """Background noise variance per pixel, in electron**2.

    Sky electrons ``10**(-0.4 (sky - zp)) * pixel_area * t`` (their Poisson noise, Gaussian
    at these counts) plus ``num_exposures * read_noise**2``.
    """
    sky_rate = 10.0 ** (-0.4 * (preset.sky_brightness - preset.magnitude_zero_point))
    sky = sky_rate * pixel_scale**2 * exposure_time
    return sky + preset.num_exposures * preset.read_noise**2


def observe_preset(preset, expected, *, exposure_time, pixel_scale, rng, exposure_ratio=1.0):
    """Observe a noise-free image with the preset's noise law.

    ``poisson_gaussian``: `observe` with `background_variance` at ``pixel_scale``.
    ``deeplense_model_i``: DeepLenseSim's ``simple_sim``, step by step: in counts,
    ``t (m + N(0, sqrt(m / t)) + N(0, rms))``, then a Poisson draw of that clipped at 0,
    so the variance is ``2 m t + (rms t)**2`` counts (the Poisson noise counted twice,
    a quirk of the published Model I); ``rms`` is per pixel at any pixel scale.

    Returns the noisy image and its standard deviation, in electron/s.
    """
    t = exposure_time * exposure_ratio
    if preset.noise == "deeplense_model_i":
        m = np.maximum(expected, 0.0)
        rms = preset.background_rms
        counts = t * (m + rng.normal(0.0, 1.0, m.shape) * np.sqrt(m / t)
                      + rng.normal(0.0, rms, m.shape))
        noisy = rng.poisson(np.clip(counts, 0.0, None)) / t
        return noisy, np.sqrt(2.0 * m * t + (rms * t) ** 2) / t
    var = background_variance(preset, pixel_scale=pixel_scale, exposure_time=t)
    return observe(expected, exposure_time=t, background_var=var, rng=rng)


def noise_sigma(preset, expected, *, exposure_time, pixel_scale):
    """The standard deviation `observe_preset` gives ``expected``, without drawing."""
    m = np.maximum(expected, 0.0)
    t = exposure_time
    if preset.noise == "deeplense_model_i":
        return np.sqrt(2.0 * m * t + (preset.background_rms * t) ** 2) / t
    var = background_variance(preset, pixel_scale=pixel_scale, exposure_time=t)
    return np.sqrt(m * t + var) / t


def observe(expected, *, exposure_time, background_var, rng):
    """Add noise to a noise-free image of flux per pixel in electron/s.

    The source and lens-light electrons are drawn from a Poisson law with mean
    ``expected * exposure_time``; the sky and read noise are Gaussian with variance
    ``background_var`` (electron**2). Returns the noisy image and its exact standard
    deviation, both in electron/s.
    """
    counts = np.maximum(expected, 0.0) * exposure_time
    noisy = rng.poisson(counts) + rng.normal(0.0, np.sqrt(background_var), counts.shape)
    sigma = np.sqrt(counts + background_var) / exposure_time
    return noisy / exposure_time, sigma
