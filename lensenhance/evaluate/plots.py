"""Figures for the benchmarks: one PNG per image, written atomically.

Figures are drawn with matplotlib's object-oriented `matplotlib.figure.Figure` on an Agg
canvas attached to that figure alone, never through pyplot: no global figure list, no
backend switch in the caller's session, nothing to close.
"""

import io
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_bytes

__all__ = ["plot_posterior_panel"]

#: The z-map's colour scale is fixed at this many standard deviations either side.
Z_LIMIT = 4.0


def _as_image(array, name):
    array = np.asarray(getattr(array, "data", array), dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got shape {array.shape}")
    return array


def _finite(array):
    values = np.asarray(array)[np.isfinite(array)]
    return values if values.size else np.zeros(1)


def _limits(values, interval):
    """An interval's limits on the finite values, widened when the image is constant."""
    vmin, vmax = (float(v) for v in interval.get_limits(_finite(values)))
    if not vmax > vmin:
        # A constant image would give a zero-width scale and a division by zero.
        pad = abs(vmin) * 0.1 or 1.0
        vmin, vmax = vmin - pad, vmax + pad
    return vmin, vmax


def _residual_limit(residual, std, sigma):
    """±3 typical standard deviations: the posterior's, else the noise's, else 99.5 %."""
    for scale in (std, sigma):
        if scale is not None:
            limit = 3.0 * float(np.median(_finite(scale)))
            if np.isfinite(limit) and limit > 0:
                return limit
    limit = float(np.percentile(np.abs(_finite(residual)), 99.5))
    return limit if limit > 0 else 1.0


def plot_posterior_panel(path, *, observed, mean, std=None, truth=None, sigma=None,
                         title=None):
    """Write a row of panels for one image: input, posterior mean, std, truth, residual, z.

    Panels, left to right (those whose arrays are missing are left out): the observed
    input; the posterior mean; the posterior standard deviation (``std``); the truth; the
    residual ``mean - truth``; the z-map ``(truth - mean) / std``. Input, mean and truth
    share one asinh stretch over the 99.5 % percentile interval of the truth (of the mean
    when there is no truth); std has a square-root stretch over its full range; the
    residual a symmetric linear scale of ±3 times the median std (or the median noise
    ``sigma`` when there is no std, else the 99.5th percentile of its absolute value); the
    z-map a fixed ±4 linear scale on a diverging colour map, so that z-maps of different
    images compare at a glance.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG to write; its folder is created, an existing file replaced. Written
        atomically: the PNG is rendered in memory, written to a temporary file in the
        same folder and renamed onto ``path``.
    observed, mean : array-like, shape (y, x)
        The observed (noisy) input and the posterior mean.
    std : array-like, shape (y, x), optional
        The posterior standard deviation per pixel.
    truth : array-like, shape (y, x), optional
        The noise-free image, when known (simulations).
    sigma : float or array-like, shape (y, x), optional
        The noise of ``observed``; only sets the residual's scale when ``std`` is missing.
    title : str, optional
        A title above the row.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When an array is not 2-D or its shape differs from ``observed``'s (the message
        names the array).
    """
    observed = _as_image(observed, "observed")
    if mean is None:
        raise ValueError("mean is required")
    arrays = {"mean": mean, "std": std, "truth": truth}
    for name, array in arrays.items():
        if array is None:
            continue
        arrays[name] = array = _as_image(array, name)
        if array.shape != observed.shape:
            raise ValueError(f"{name} has shape {array.shape} but observed has shape "
                             f"{observed.shape}")
    mean, std, truth = arrays["mean"], arrays["std"], arrays["truth"]
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.ndim != 0 and sigma.shape != observed.shape:
            raise ValueError(f"sigma has shape {sigma.shape} but observed has shape "
                             f"{observed.shape}")

    # Imported here so that importing the benchmarks does not load matplotlib.
    from astropy.visualization import (
        AsinhStretch,
        ImageNormalize,
        LinearStretch,
        MinMaxInterval,
        PercentileInterval,
        SqrtStretch,
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def norm(vmin, vmax, stretch):
        return ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretch, clip=False)

    # One scale for the three flux images, from the truth when known, so that the
    # mean is judged against the truth rather than against itself.
    reference = truth if truth is not None else mean
    flux_norm = norm(*_limits(reference, PercentileInterval(99.5)), AsinhStretch())
    panels = [("input", observed, flux_norm, "gray"),
              ("posterior mean", mean, flux_norm, "gray")]
    if std is not None:
        panels.append(("posterior std", std,
                       norm(*_limits(std, MinMaxInterval()), SqrtStretch()), "viridis"))
    if truth is not None:
        panels.append(("truth", truth, flux_norm, "gray"))
        residual = mean - truth
        limit = _residual_limit(residual, std, sigma)
        panels.append(("residual (mean - truth)", residual,
                       norm(-limit, limit, LinearStretch()), "RdBu_r"))
        if std is not None:
            # Pixels with zero std have no z; they are left blank rather than infinite.
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(std > 0, (truth - mean) / std, np.nan)
            panels.append(("z = (truth - mean) / std", z,
                           norm(-Z_LIMIT, Z_LIMIT, LinearStretch()), "RdBu_r"))

    fig = Figure(figsize=(3.2 * len(panels), 3.3), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas for this figure only: no global backend switch
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, data, panel_norm, cmap) in zip(axes, panels, strict=True):
        image = ax.imshow(data, origin="lower", norm=panel_norm, cmap=cmap,
                          interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, shrink=0.8)
    if title is not None:
        fig.suptitle(title)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
