"""Running an Enhancer over a stack of images, timed: shared by the benchmarks."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["run_enhancer", "split_steps", "input_backgrounds", "input_noise"]


def run_enhancer(enhancer, images, sigmas=None, *, unit="electron/s", seed=0, samples=False):
    """Enhance a stack one image at a time, timed; arrays in the data unit.

    Parameters
    ----------
    enhancer : lensenhance.Enhancer
    images : numpy.ndarray ``(n, y, x)``
    sigmas : numpy.ndarray ``(n, y, x)``, optional
        Each image's standard deviation (None: the Enhancer estimates it if it needs one).
    samples : bool
        Also return the posterior samples.

    Returns
    -------
    dict
        ``mean`` ``(n, sy, sx)``, ``std`` (or None), ``samples`` ``(n, S, sy, sx)`` (or
        None), ``seconds_per_image``.
    """
    from astropy.nddata import CCDData, StdDevUncertainty

    means, stds, draws = [], [], []
    start = time.perf_counter()
    for i, image in enumerate(images):
        ccd = CCDData(np.asarray(image, np.float32), unit=unit,
                      uncertainty=None if sigmas is None else StdDevUncertainty(sigmas[i]))
        if samples:
            out, sample_array = enhancer.enhance(ccd, seed=seed + i, return_samples=True)
            draws.append(np.asarray(sample_array.values, np.float32))
        else:
            out = enhancer.enhance(ccd, seed=seed + i)
        means.append(np.asarray(out.data, np.float32))
        if out.uncertainty is not None:
            stds.append(np.asarray(out.uncertainty.array, np.float32))
    seconds = (time.perf_counter() - start) / len(images)
    return {"mean": np.stack(means), "std": np.stack(stds) if stds else None,
            "samples": np.stack(draws) if draws else None, "seconds_per_image": seconds}


def split_steps(spec):
    """``"name@k"`` -> ``("name", k)``: a posterior model at ``k`` sampler steps; else
    ``(spec, None)`` (the model's own steps; an ``@`` not followed by digits is part of
    the name or path).

    Raises
    ------
    ValueError
        If the step count after the ``@`` is 0.
    """
    name, at, steps = str(spec).rpartition("@")
    if not at or not steps.isdigit():
        return str(spec), None
    if int(steps) < 1:
        raise ValueError(f"{spec!r}: the steps after '@' must be a positive integer")
    return name, int(steps)


def input_backgrounds(images, scale, unit="electron/s"):
    """Each input's background level as the models see it, in the output's units.

    The offset of the one normalisation (`fit_image_normalization`: the sky-like level
    of the image, which extended lens light lifts above zero), flux-split like the
    output: ``(n, 1, 1)``, to subtract from outputs of the same images.
    """
    from astropy import units as u

    from ..predict.normalization import fit_image_normalization
    from ..predict.pixels import flux_split_factor

    split = flux_split_factor(u.Unit(unit), scale)
    offsets = np.array([fit_image_normalization(np.asarray(image, np.float64)).offset
                        for image in images])
    return (offsets * split).reshape(-1, 1, 1)


def input_noise(images, sigmas, scale, unit="electron/s"):
    """Each input's noise as the models see it, on the output's grid and in its units.

    The given sigma maps (nearest on the output's grid), or for none each image's sky
    noise as the Enhancer estimates it (`~lensenhance.predict.posterior.estimate_sigma`),
    flux-split like the output: ``(n, sy, sx)``, or ``(n, 1, 1)`` when estimated.
    """
    from astropy import units as u

    from ..predict.pixels import flux_split_factor
    from ..predict.posterior import estimate_sigma

    split = flux_split_factor(u.Unit(unit), scale)
    if sigmas is None:
        return np.array([estimate_sigma(image) for image in images]).reshape(-1, 1, 1) * split
    noise = np.asarray(sigmas, np.float64)
    if scale > 1:
        noise = noise.repeat(scale, axis=-2).repeat(scale, axis=-1)
    return noise * split
