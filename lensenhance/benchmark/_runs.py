"""Running an Enhancer over a stack of images, timed: shared by the benchmarks."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["run_enhancer", "split_steps"]


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
