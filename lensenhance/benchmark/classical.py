"""Classical denoisers, each tuned to its best setting, as baselines for learned denoisers.

Three scikit-image denoisers are compared with the learned ones: total-variation
(Chambolle), non-local means and wavelet shrinkage (BayesShrink). Each has one parameter,
given here as ``strength`` times the image's noise level, so that one setting carries over
from one signal-to-noise ratio to another. `tune_classical` picks, for one method, the
strength that maximises the mean PSNR over a tuning set; the benchmark then evaluates that
one strength on a separate evaluation set, so that the baseline is at its best without
being fitted to the images it is scored on.

Wavelet shrinkage needs PyWavelets (``pywt``), which scikit-image imports on demand.
"""

import numpy as np

from ..evaluate.metrics import image_metrics

__all__ = ["CLASSICAL_DENOISERS", "DEFAULT_STRENGTHS", "denoise_classical", "tune_classical"]

#: The methods `denoise_classical` knows.
CLASSICAL_DENOISERS = ("tv", "nl_means", "wavelet")

#: The strength grids `tune_classical` searches by default. TV's optimum sits at larger
#: multiples of the noise than the others', hence its wider grid.
DEFAULT_STRENGTHS = {
    "tv": np.geomspace(0.25, 8, 11),
    "nl_means": np.geomspace(0.25, 4, 9),
    "wavelet": np.geomspace(0.25, 4, 9),
}


def _check_method(method):
    if method not in CLASSICAL_DENOISERS:
        raise ValueError(f"unknown classical denoiser {method!r}; choose one of "
                         f"{', '.join(CLASSICAL_DENOISERS)}")


def _check_image(image, name="image"):
    array = np.asarray(getattr(image, "data", image), dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite; fill NaN or infinite pixels first")
    return array


def _noise_level(sigma, shape):
    """One noise level for ``sigma`` (a float, or a map of the image's shape)."""
    array = np.asarray(sigma, dtype=np.float64)
    if array.ndim not in (0, 2):
        raise ValueError(f"sigma must be a float or a 2-D noise map, got shape {array.shape}")
    if array.ndim == 2 and array.shape != shape:
        raise ValueError(f"sigma has shape {array.shape} but the image has shape {shape}")
    if not np.isfinite(array).all():
        raise ValueError("sigma must be finite")
    if not (array > 0).all():
        raise ValueError("sigma must be positive (the noise standard deviation)")
    # The three denoisers take one noise level; the median ignores a few extreme pixels.
    return float(np.median(array))


def _check_strength(strength):
    strength = float(strength)
    if not (np.isfinite(strength) and strength > 0):
        raise ValueError(f"strength must be a positive finite number, got {strength}")
    return strength


def denoise_classical(method, image, sigma, *, strength=1.0):
    """Denoise one image with a classical method whose parameter scales with the noise.

    Parameters
    ----------
    method : {"tv", "nl_means", "wavelet"}
        ``"tv"``: `skimage.restoration.denoise_tv_chambolle` with
        ``weight = strength * sigma``. ``"nl_means"``:
        `skimage.restoration.denoise_nl_means` with ``h = strength * sigma``, 5x5 patches
        searched within 6 pixels (fast mode). ``"wavelet"``:
        `skimage.restoration.denoise_wavelet`, BayesShrink soft thresholding with the noise
        level given as ``strength * sigma``.
    image : array-like, shape (y, x)
        The noisy image, in any flux units (the output is in the same units).
    sigma : float or array-like, shape (y, x)
        The noise standard deviation, in the image's units: a float, or a noise map whose
        median is used (each method takes a single noise level).
    strength : float, optional
        The parameter in units of the noise; larger is smoother. Pick it with
        `tune_classical`.

    Returns
    -------
    numpy.ndarray
        The denoised image, float64, of the input's shape.

    Raises
    ------
    ValueError
        For an unknown method, an image that is not 2-D or not finite, or a noise level or
        strength that is not positive and finite.
    """
    _check_method(method)
    image = _check_image(image)
    sigma = _noise_level(sigma, image.shape)
    strength = _check_strength(strength)
    # Imported here: scikit-image's restoration module is slow to import, and only the
    # benchmark needs it.
    from skimage import restoration

    if method == "tv":
        out = restoration.denoise_tv_chambolle(image, weight=strength * sigma)
    elif method == "nl_means":
        out = restoration.denoise_nl_means(image, h=strength * sigma, sigma=sigma,
                                           patch_size=5, patch_distance=6, fast_mode=True)
    else:
        # Float input is neither rescaled nor clipped by scikit-image, so flux units survive.
        out = restoration.denoise_wavelet(image, sigma=strength * sigma, method="BayesShrink",
                                          mode="soft", rescale_sigma=True)
    return np.asarray(out, dtype=np.float64).reshape(image.shape)


def _per_image_sigmas(sigmas, n):
    if np.ndim(sigmas) == 0:
        return [sigmas] * n
    sigmas = list(sigmas)
    if len(sigmas) != n:
        raise ValueError(f"got {n} images but {len(sigmas)} noise levels")
    return sigmas


def tune_classical(method, images, sigmas, truths, *, strengths=None):
    """The strength of one classical denoiser that maximises the mean PSNR on a tuning set.

    The images passed here must be a tuning split, kept apart from the set on which the
    benchmark then reports the method at the chosen strength: tuning on the evaluation
    images would flatter the baseline.

    Parameters
    ----------
    method : {"tv", "nl_means", "wavelet"}
        See `denoise_classical`.
    images : sequence of array-like, each shape (y, x)
        Noisy tuning images.
    sigmas : float or sequence
        The noise of each image (a float or a noise map each, see `denoise_classical`), or
        one float for all.
    truths : sequence of array-like, each shape (y, x)
        The noise-free image of each tuning image.
    strengths : array-like, optional
        The strengths to try. By default `DEFAULT_STRENGTHS` ``[method]``: a geometric grid
        from 0.25 to 8 for ``"tv"`` and from 0.25 to 4 for the others.

    Returns
    -------
    dict
        ``{"method", "strength", "psnr", "grid", "n"}``: the chosen strength and its mean
        PSNR (dB), ``grid`` as ``[[strength, mean_psnr], ...]`` for every strength tried,
        and ``n`` the number of tuning images. PSNR is that of
        `lensenhance.evaluate.metrics.image_metrics`, with ``data_range`` the truth's own range.
        On a tie the smaller strength wins.
    """
    _check_method(method)
    images = [_check_image(image, f"images[{i}]") for i, image in enumerate(images)]
    truths = [_check_image(truth, f"truths[{i}]") for i, truth in enumerate(truths)]
    n = len(images)
    if n == 0:
        raise ValueError("tune_classical needs at least one tuning image")
    if len(truths) != n:
        raise ValueError(f"got {n} images but {len(truths)} truths")
    sigmas = _per_image_sigmas(sigmas, n)
    if strengths is None:
        strengths = DEFAULT_STRENGTHS[method]
    strengths = [_check_strength(s) for s in np.atleast_1d(strengths)]
    if not strengths:
        raise ValueError("strengths must not be empty")

    grid = []
    for strength in strengths:
        psnrs = [image_metrics(denoise_classical(method, image, sigma, strength=strength),
                               truth)["psnr"]
                 for image, sigma, truth in zip(images, sigmas, truths, strict=True)]
        grid.append([strength, float(np.mean(psnrs))])
    # argmax returns the first maximum, i.e. the gentlest of equally good strengths.
    best = int(np.argmax([psnr for _, psnr in grid]))
    return {"method": method, "strength": grid[best][0], "psnr": grid[best][1],
            "grid": grid, "n": n}
