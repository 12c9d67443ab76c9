"""A posterior's std factor as a function of each pixel's signal: how it is applied.

One factor on the spread of the samples makes the 68 % intervals cover on average, but the
sky, the faint wings and the bright cores can be off in opposite directions. The factor
here depends on two things a pixel's prediction tells, both free of the data's units:

* its **context** ``u = log(|m| / |m - b|)``: where the mean ``m`` sits between the data's
  zero and the input's background level ``b`` (the offset of its normalisation, which
  extended lens light lifts above the sky). ``u < 0``: nearer zero than the background
  (empty sky around a bright lens); ``u ~ 0``: far above both (the lens and its arcs);
  ``u > 0``: near the background level;
* its **SNR** ``r = |m| / s`` with ``s`` the raw spread of the samples.

A table of ``context`` ``"noise"`` groups pixels by the mean's SNR against the input's
noise instead (``"both"``: by each pair of a ``u`` group and a ``q`` group),
``q = |m| / sigma`` with ``sigma`` the input's
noise on the output's grid (the estimated sky noise for an image without one): on real
survey cutouts the error of a pixel follows how far its signal stands above the image's
noise more than where it sits between zero and the background (`benchmark denoise`
reports the coverage per bin).

The table (`lensenhance.evaluate.snr_calibration.fit_snr_calibration`, fitted on held-out
images only) holds, per context group, the split-conformal factor of bins of ``r``;
``log c`` is linear in ``log r`` between the bins' centres and constant beyond. Since ``u``
(or ``q``) does not change with ``s`` and each group's log-log slope is at most 1, the
calibrated std ``c * s`` never falls as the raw spread grows.

The data's zero must be its sky level (survey cutouts are sky-subtracted): for an image
with a sky pedestal every pixel reads as bright and gets the top bins' factor.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONTEXTS", "noise_snr", "snr_context", "snr_groups", "snr_std_factor",
           "table_context"]

_TINY = 1e-30


def snr_context(mean, std, zero=0.0):
    """Each pixel's context ``u`` and SNR ``r`` (numpy arrays).

    Parameters
    ----------
    mean : array-like
        The posterior mean measured from the input's background level (the normalised
        mean; in data units ``m - b``).
    std : array-like
        The raw spread of the samples, same units.
    zero : float or array-like, optional
        The data's zero in the same units (``-offset / scale`` of the normalisation;
        ``-b`` in data units), broadcastable to ``mean``.

    Returns
    -------
    u, r : numpy.ndarray
    """
    mean = np.asarray(mean, np.float64)
    signal = np.abs(mean - np.asarray(zero, np.float64))
    u = np.log(np.maximum(signal, _TINY)) - np.log(np.maximum(np.abs(mean), _TINY))
    r = signal / np.maximum(np.asarray(std, np.float64), _TINY)
    return u, r


def noise_snr(mean, noise, zero=0.0):
    """The mean's SNR against the input's noise, ``q = |mean - zero| / noise``.

    Parameters
    ----------
    mean, zero : array-like
        As for `snr_context`.
    noise : array-like
        The input's noise on the output's grid, same units, broadcastable to ``mean``.
    """
    signal = np.abs(np.asarray(mean, np.float64) - np.asarray(zero, np.float64))
    return signal / np.maximum(np.asarray(noise, np.float64), _TINY)


#: The grouping variables a table may use: ``u``, ``q``, or every pair of their groups.
CONTEXTS = ("background", "noise", "both")


def table_context(table):
    """A table's grouping variable and the inner edges of its groups.

    Returns
    -------
    kind : {'background', 'noise', 'both'}
        ``u`` (`snr_context`; tables without a ``context``), the mean's SNR against the
        input's noise (`noise_snr`), or each pair of a ``u`` group and a ``q`` group.
    u_edges, q_edges : list of float or None
        The inner edges in ``u`` and in ``q`` (None where the kind has none).
    """
    kind = table.get("context", "background")
    if kind not in CONTEXTS:
        raise ValueError(f"unknown SNR calibration context {kind!r}")
    return kind, table.get("u_edges"), table.get("q_edges")


def snr_groups(kind, u_edges, q_edges, mean, std, zero=0.0, noise=None):
    """Each pixel's group and SNR ``r`` (numpy arrays; see `snr_context`).

    Groups of ``u`` (``kind`` ``"background"``), of ``q`` (``"noise"``), or ``u`` group
    ``i`` and ``q`` group ``j`` as group ``i * (len(q_edges) + 1) + j`` (``"both"``).
    """
    u, r = snr_context(mean, std, zero)
    if kind == "background":
        return np.searchsorted(np.asarray(u_edges, np.float64), u, side="right"), r
    if noise is None:
        raise ValueError("this SNR calibration groups pixels by their SNR against the "
                         "input's noise: give noise")
    q_group = np.searchsorted(np.asarray(q_edges, np.float64), noise_snr(mean, noise, zero),
                              side="right")
    if kind == "noise":
        return q_group, r
    u_group = np.searchsorted(np.asarray(u_edges, np.float64), u, side="right")
    return u_group * (len(q_edges) + 1) + q_group, r


def _numpy(value):
    if hasattr(value, "detach"):
        return value.detach().double().cpu().numpy()
    return value


def snr_std_factor(mean, std, table, zero=0.0, *, noise=None):
    """Each pixel's std factor from a calibration table.

    Parameters
    ----------
    mean, std : numpy.ndarray or torch.Tensor
        See `snr_context`; a tensor gives a tensor on its device and dtype.
    table : dict
        `~lensenhance.evaluate.snr_calibration.fit_snr_calibration`'s: its ``context``
        (`table_context`), the inner edges of its groups (``u_edges``, ``q_edges``) and
        one ``groups`` entry per group with ``snr`` (bin centres) and ``std_scale``.
    zero : float, numpy.ndarray or torch.Tensor, optional
    noise : float, numpy.ndarray or torch.Tensor, optional
        The input's noise on the output's grid, same units (needed by a ``"noise"`` or
        ``"both"`` table; broadcastable to ``mean``).

    Returns
    -------
    The factor, shaped like ``mean``.
    """
    tensor = mean if hasattr(mean, "detach") else None
    mean, std, zero, noise = (_numpy(v) for v in (mean, std, zero, noise))
    group, r = snr_groups(*table_context(table), mean, std, zero, noise)
    log_r = np.log(np.maximum(r, 1e-12))
    out = np.empty_like(log_r)
    for k, entry in enumerate(table["groups"]):
        inside = group == k
        if inside.any():
            centres = np.log(np.maximum(np.asarray(entry["snr"], np.float64), 1e-12))
            out[inside] = np.interp(log_r[inside], centres,
                                    np.log(np.asarray(entry["std_scale"], np.float64)))
    out = np.exp(out)
    if tensor is None:
        return out
    import torch

    return torch.from_numpy(out).to(device=tensor.device, dtype=tensor.dtype)
