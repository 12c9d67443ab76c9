"""Image-quality metrics with an explicit data range, and distances between image sets.

Research notebooks often call ``peak_signal_noise_ratio`` or ``structural_similarity``
without ``data_range``, so that the number depends on the dtype or on the prediction's own
range. Here every metric is computed against the *truth* image with a data range that is
stated and recorded: by default the truth's own peak-to-peak range, the same rule for every
method compared.

Generated images have no truth image; they are compared with real ones as distributions:
the Frechet and kernel distances between feature vectors (`frechet_distance`,
`kernel_distance`: FID and KID when the features are those of a classifier), the distance
between pixel-value histograms and between radial power spectra. All are plain numpy and
scipy; the features come from the caller (e.g.
`lensenhance.training.classifier.classifier_features`).
"""

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from .._validation import check_int

__all__ = ["image_metrics", "batch_metrics", "summarize_metrics", "mean_and_se",
           "paired_differences", "frechet_distance",
           "kernel_distance", "pixel_histogram_distance", "radial_power_spectrum",
           "power_spectrum_distance"]

METRIC_NAMES = ("mse", "psnr", "ssim")


def _as_2d_float(image, name):
    array = np.asarray(getattr(image, "data", image), dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got shape {array.shape}")
    return array


def image_metrics(pred, truth, *, data_range=None, mask=None):
    """MSE, PSNR and SSIM of one predicted image against its truth.

    Parameters
    ----------
    pred, truth : array-like
        2-D images of the same shape (arrays, Quantities' values or NDData).
    data_range : float, optional
        The range used by PSNR and SSIM. By default ``truth.max() - truth.min()`` over
        the pixels scored, so that the figure does not depend on the prediction.
    mask : array-like of bool, optional
        Pixels to leave out (True), e.g. the masked (NaN) pixels of an enhanced image:
        MSE and PSNR are over the other pixels, SSIM is the mean of its map over the
        pixels whose window holds no masked pixel (over the unmasked pixels where none
        has such a window). They may hold NaN.

    Returns
    -------
    dict
        ``{"mse", "psnr", "ssim", "data_range"}``, plain floats. MSE is in the units of
        the images divided by ``data_range**2`` (the normalised MSE), so that it can be
        averaged over images of different brightness.

    Raises
    ------
    ValueError
        Shapes differ; a pixel left in is not finite; every pixel is masked.
    """
    pred = _as_2d_float(pred, "pred")
    truth = _as_2d_float(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred has shape {pred.shape} but truth has shape {truth.shape}")
    keep = np.ones(truth.shape, bool)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != truth.shape:
            raise ValueError(f"mask has shape {mask.shape} but truth has shape {truth.shape}")
        keep = ~mask
        if not keep.any():
            raise ValueError("every pixel is masked: nothing to score")
    finite = np.isfinite(truth) & np.isfinite(pred)
    if not finite[keep].all():
        raise ValueError("pred and truth must be finite; mask or fill NaN pixels first")
    if data_range is None:
        data_range = float(truth[keep].max() - truth[keep].min())
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if mask is not None:
        # The masked pixels (maybe NaN) get one value in both images: no error there.
        truth = np.where(keep, truth, 0.0)
        pred = np.where(keep, pred, 0.0)
    mse = mean_squared_error(truth[keep], pred[keep]) / data_range**2
    # A perfect prediction has infinite PSNR; say so without a division warning.
    psnr = np.inf if mse == 0 else peak_signal_noise_ratio(truth[keep], pred[keep],
                                                           data_range=data_range)
    # SSIM on a 7x7 window needs images of at least 7 pixels a side.
    win_size = min(7, min(truth.shape) - (1 - min(truth.shape) % 2))
    if mask is None:
        ssim = structural_similarity(truth, pred, data_range=data_range, win_size=win_size)
    else:
        from scipy.ndimage import binary_dilation

        _, ssim_map = structural_similarity(truth, pred, data_range=data_range,
                                            win_size=win_size, full=True)
        # Only the windows clear of masked pixels are the images' own; like skimage's
        # mean, none at the border.
        clear = ~binary_dilation(~keep, np.ones((win_size, win_size), bool))
        pad = (win_size - 1) // 2
        inner = np.zeros_like(clear)
        inner[pad:clear.shape[0] - pad, pad:clear.shape[1] - pad] = True
        clear &= inner
        ssim = float(ssim_map[clear].mean() if clear.any() else ssim_map[keep].mean())
    return {"mse": float(mse), "psnr": float(psnr), "ssim": float(ssim),
            "data_range": float(data_range)}


def batch_metrics(preds, truths, *, data_range=None):
    """Per-image metrics for a stack of images.

    Parameters
    ----------
    preds, truths : array-like, shape (n, y, x)
        Predictions and truths.
    data_range : float or array-like, optional
        One range for all images or one per image; by default each truth's own range.

    Returns
    -------
    dict of numpy.ndarray
        ``{"mse", "psnr", "ssim", "data_range"}``, each of length ``n``.
    """
    preds = np.asarray(preds)
    truths = np.asarray(truths)
    if preds.shape != truths.shape or preds.ndim != 3 or len(preds) == 0:
        raise ValueError(f"preds {preds.shape} and truths {truths.shape} must be the same "
                         "non-empty (n, y, x) shape")
    ranges = np.broadcast_to(np.asarray(data_range if data_range is not None else np.nan,
                                        dtype=float), (len(truths),))
    rows = [image_metrics(p, t, data_range=None if np.isnan(r) else float(r))
            for p, t, r in zip(preds, truths, ranges)]
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def summarize_metrics(per_image):
    """Mean and standard error of the mean of each metric in a `batch_metrics` result."""
    summary = {}
    for key in METRIC_NAMES:
        values = np.asarray(per_image[key], dtype=float)
        summary[key] = float(values.mean())
        summary[f"{key}_sem"] = float(values.std(ddof=1) / np.sqrt(len(values))) \
            if len(values) > 1 else float("nan")
    return summary


def mean_and_se(values):
    """Mean, standard error of the mean and count of a 1-D sample.

    Examples
    --------
    >>> mean_and_se([1.0, 2.0, 3.0])
    {'mean': 2.0, 'se': 0.5773502691896258, 'n': 3}
    """
    values = np.asarray(values, np.float64)
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "se": se, "n": int(len(values))}


def paired_differences(per_image):
    """Differences between methods scored on the same images, with their standard errors.

    Each method's per-image value minus each later method's: the mean difference, its
    standard error, and whether it is significant (more than two standard errors from
    0). Paired, so that the spread of the images' own difficulty cancels.

    Parameters
    ----------
    per_image : dict
        ``{method: per-image values}``, every method on the same images in the same order.

    Returns
    -------
    dict
        ``{"a - b": {"mean", "se", "n", "significant"}}``.

    Examples
    --------
    >>> d = paired_differences({"a": [30.0, 31.0, 29.0], "b": [29.0, 29.9, 28.1]})
    >>> round(d["a - b"]["mean"], 2), d["a - b"]["significant"]
    (1.0, True)
    """
    arrays = {name: np.asarray(values, np.float64) for name, values in per_image.items()}
    lengths = {len(values) for values in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(f"paired differences need the same images for every method, got "
                         f"{ {name: len(v) for name, v in arrays.items()} }")
    names = list(arrays)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            stats = mean_and_se(arrays[a] - arrays[b])
            stats["significant"] = bool(abs(stats["mean"]) > 2 * stats["se"])
            out[f"{a} - {b}"] = stats
    return out


# -- distances between sets of images or features ----------------------------------------

def _feature_pair(features_a, features_b):
    """Two finite float64 ``(n, d)`` arrays with the same ``d`` and ``n >= 2``."""
    arrays = []
    for name, value in (("features_a", features_a), ("features_b", features_b)):
        array = np.asarray(value, dtype=np.float64)
        if array.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got "
                             f"shape {array.shape}")
        if len(array) < 2:
            raise ValueError(f"{name} needs at least 2 samples, got {len(array)}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or infinite values")
        arrays.append(array)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(f"features_a has {arrays[0].shape[1]} features per sample but "
                         f"features_b has {arrays[1].shape[1]}")
    return arrays


def frechet_distance(features_a, features_b, *, eps=1e-6):
    """Frechet distance between Gaussians fitted to two sets of feature vectors.

    ``||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))`` (Dowson & Landau 1982): the
    FID of Heusel et al. (2017) when the features are a network's penultimate activations.

    Parameters
    ----------
    features_a, features_b : array-like, shape (n_a, d) and (n_b, d)
        Feature vectors, one row per sample (at least 2 each).
    eps : float, optional
        Added to the diagonals of both covariances when their product's square root is
        not finite (singular covariances, e.g. fewer samples than features).

    Returns
    -------
    float
        The squared distance (in feature units squared). It is biased upwards at small
        ``n``: compare sets of the same size, next to the distance between two real sets.
    """
    from scipy import linalg

    a, b = _feature_pair(features_a, features_b)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(root)):
        offset = eps * np.eye(len(cov_a))
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    # sqrtm of a product of covariances is real in exact arithmetic; rounding leaves
    # tiny imaginary parts.
    root = np.real(root)
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def _polynomial_mmd2(x, y):
    """Unbiased MMD^2 with the kernel ``(x.y / d + 1)^3`` (equal-size samples)."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    return ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
            + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1)) - 2 * k_xy.mean())


def kernel_distance(features_a, features_b, *, n_subsets=50, subset_size=None, seed=0):
    """Kernel distance (KID) between two sets of feature vectors, with its standard error.

    The unbiased estimate of the squared maximum mean discrepancy with the polynomial
    kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (Binkowski et al.
    2018). Unlike the Frechet distance it is unbiased, so it is near 0 (and may be
    negative) for two samples of one distribution, whatever their size.

    Parameters
    ----------
    features_a, features_b : array-like, shape (n_a, d) and (n_b, d)
        Feature vectors, one row per sample (at least 2 each).
    n_subsets : int, optional
        Number of random subsets.
    subset_size : int, optional
        Samples drawn (without replacement) from each set per subset; default
        ``min(1000, n_a, n_b)``.
    seed : int, optional
        Seeds the choice of subsets.

    Returns
    -------
    mean : float
        The mean of the subset estimates.
    standard_error : float
        Their standard deviation divided by ``sqrt(n_subsets)`` (NaN for one subset).
        Subsets drawn from the same samples overlap, so this measures the subsampling
        noise and understates the sampling error of the sets themselves when
        ``subset_size`` is close to their size (it is 0 when the subsets are the whole
        sets); for an error bar on the sets, compare independent draws.
    """
    a, b = _feature_pair(features_a, features_b)
    check_int(n_subsets, "n_subsets")
    largest = min(len(a), len(b))
    if subset_size is None:
        subset_size = min(1000, largest)
    check_int(subset_size, "subset_size", 2, maximum=largest, note=" (the smaller set)")
    rng = np.random.default_rng(seed)
    estimates = np.array([
        _polynomial_mmd2(a[rng.choice(len(a), subset_size, replace=False)],
                         b[rng.choice(len(b), subset_size, replace=False)])
        for _ in range(n_subsets)])
    error = estimates.std(ddof=1) / np.sqrt(n_subsets) if n_subsets > 1 else float("nan")
    return float(estimates.mean()), float(error)


def _image_set(images, name):
    """A finite float64 ``(n, y, x)`` stack (a single 2-D image is a stack of one)."""
    array = np.asarray(getattr(images, "data", images), dtype=np.float64)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty image stack (n, y, x), got shape "
                         f"{array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; mask or fill them first")
    return array


def pixel_histogram_distance(images_a, images_b, *, bins=64, range=None):
    """Jensen-Shannon distance between the pixel-value histograms of two image sets.

    Both sets' pixel values are binned on one shared grid; the result is the square root
    of the Jensen-Shannon divergence (base 2) of the two normalised histograms: 0 for
    identical histograms, 1 for histograms with no bin in common. Compare images in the
    stretch the models see (e.g. `lensenhance.predict.normalization.AsinhScaling.apply`): in
    flux units almost every pixel falls in the lowest bins.

    Parameters
    ----------
    images_a, images_b : array-like, shape (n_a, y, x) and (n_b, y', x')
        Image sets (sizes may differ: only the pixel values are compared).
    bins : int, optional
        Number of equal-width bins.
    range : (float, float), optional
        Lower and upper edge of the bins; values outside are left out. By default the
        smallest and largest value of both sets, so pass it to compare distances between
        different pairs of sets.

    Returns
    -------
    float
        The distance, in [0, 1].
    """
    from scipy.spatial.distance import jensenshannon

    a = _image_set(images_a, "images_a").ravel()
    b = _image_set(images_b, "images_b").ravel()
    check_int(bins, "bins")
    if range is None:
        range = (min(a.min(), b.min()), max(a.max(), b.max()))
        if range[0] == range[1]:  # constant images: one bin around the value
            range = (range[0] - 0.5, range[1] + 0.5)
    low, high = (float(v) for v in range)
    if not high > low:
        raise ValueError(f"range must be (low, high) with high > low, got {range}")
    hist_a, edges = np.histogram(a, bins=bins, range=(low, high))
    hist_b, _ = np.histogram(b, bins=edges)
    if hist_a.sum() == 0 or hist_b.sum() == 0:
        raise ValueError(f"no pixel of one set falls within range {(low, high)}")
    return float(jensenshannon(hist_a / hist_a.sum(), hist_b / hist_b.sum(), base=2))


def radial_power_spectrum(images):
    """Azimuthally averaged power spectrum of a set of images.

    The power ``|FFT(image)|^2 / (ny * nx)`` (so that white noise of variance ``s^2`` has
    power ``s^2`` at every frequency) is averaged over the images and over rings of
    width ``1 / max(ny, nx)`` cycles per pixel, from the lowest non-zero frequency to the
    Nyquist frequency (the corners beyond it are left out, and so is the mean, k = 0).
    The images are treated as periodic (no window), which suits cutouts whose edges
    are sky.

    Parameters
    ----------
    images : array-like, shape (n, y, x) or (y, x)
        The images.

    Returns
    -------
    k : numpy.ndarray, shape (n_bins,)
        Centre of each ring, in cycles per pixel (``1/size`` to ``0.5``).
    power : numpy.ndarray, shape (n_bins,)
        Mean power in each ring, in the images' unit squared.
    """
    stack = _image_set(images, "images")
    ny, nx = stack.shape[1:]
    size = max(ny, nx)
    if min(ny, nx) < 2:
        raise ValueError(f"images must be at least 2x2 pixels, got {(ny, nx)}")
    power = np.mean(np.abs(np.fft.fft2(stack)) ** 2, axis=0) / (ny * nx)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij"))
    ring = np.rint(radius * size).astype(int)
    n_bins = size // 2
    inside = (ring >= 1) & (ring <= n_bins)
    sums = np.bincount(ring[inside], weights=power[inside], minlength=n_bins + 1)
    counts = np.bincount(ring[inside], minlength=n_bins + 1)
    keep = counts[1:] > 0  # non-square images leave some rings empty
    k = np.arange(1, n_bins + 1) / size
    return k[keep], sums[1:][keep] / counts[1:][keep]


def power_spectrum_distance(images_a, images_b):
    """Mean absolute difference of the log10 radial power spectra of two image sets.

    Parameters
    ----------
    images_a, images_b : array-like, shape (n_a, y, x) and (n_b, y, x)
        Image sets of one image size.

    Returns
    -------
    float
        ``mean_k |log10 P_a(k) - log10 P_b(k)|`` with `radial_power_spectrum`: 0 for
        identical spectra, 1 for spectra a factor of 10 apart at every k.
    """
    a = _image_set(images_a, "images_a")
    b = _image_set(images_b, "images_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"images_a are {a.shape[1:]} pixels but images_b are "
                         f"{b.shape[1:]}; their spectra are sampled at different k")
    _, power_a = radial_power_spectrum(a)
    _, power_b = radial_power_spectrum(b)
    if not (np.all(power_a > 0) and np.all(power_b > 0)):
        raise ValueError("a power spectrum has empty (zero-power) rings; are the images "
                         "constant?")
    return float(np.mean(np.abs(np.log10(power_a) - np.log10(power_b))))
