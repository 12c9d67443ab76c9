"""Image-quality metrics with an explicit data range.

Research notebooks often call ``peak_signal_noise_ratio`` or ``structural_similarity``
without ``data_range``, so that the number depends on the dtype or on the prediction's own
range. Here every metric is computed against the *truth* image with a data range that is
stated and recorded: by default the truth's own peak-to-peak range, the same rule for every
method compared.
"""

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

__all__ = ["image_metrics", "batch_metrics", "summarize_metrics"]

METRIC_NAMES = ("mse", "psnr", "ssim")


def _as_2d_float(image, name):
    array = np.asarray(getattr(image, "data", image), dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got shape {array.shape}")
    return array


def image_metrics(pred, truth, *, data_range=None):
    """MSE, PSNR and SSIM of one predicted image against its truth.

    Parameters
    ----------
    pred, truth : array-like
        2-D images of the same shape (arrays, Quantities' values or NDData).
    data_range : float, optional
        The range used by PSNR and SSIM. By default ``truth.max() - truth.min()``,
        so that the figure does not depend on the prediction.

    Returns
    -------
    dict
        ``{"mse", "psnr", "ssim", "data_range"}``, plain floats. MSE is in the units of
        the images divided by ``data_range**2`` (the normalised MSE), so that it can be
        averaged over images of different brightness.
    """
    pred = _as_2d_float(pred, "pred")
    truth = _as_2d_float(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred has shape {pred.shape} but truth has shape {truth.shape}")
    finite = np.isfinite(truth) & np.isfinite(pred)
    if not finite.all():
        raise ValueError("pred and truth must be finite; mask or fill NaN pixels first")
    if data_range is None:
        data_range = float(truth.max() - truth.min())
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    mse = mean_squared_error(truth, pred) / data_range**2
    # A perfect prediction has infinite PSNR; say so without a division warning.
    psnr = np.inf if mse == 0 else peak_signal_noise_ratio(truth, pred, data_range=data_range)
    # SSIM on a 7x7 window needs images of at least 7 pixels a side.
    win_size = min(7, min(truth.shape) - (1 - min(truth.shape) % 2))
    ssim = structural_similarity(truth, pred, data_range=data_range, win_size=win_size)
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
