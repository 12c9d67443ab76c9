"""Fitting a standard-deviation factor that depends on each pixel's signal.

One factor (`~lensenhance.evaluate.uncertainty.fit_std_scale`) makes a posterior's 68 %
intervals cover 68 % of the truth on average, but the empty sky, the faint wings and the
bright cores can still be off in opposite directions. Here the factor depends on each
pixel's context ``u`` (where its mean sits between the data's zero and the input's
background level) and its SNR ``r = |mean| / std`` (the raw spread of the samples, before
any factor): `lensenhance.predict.snr_factor` defines both and applies the table.

Per context group (`U_EDGES`), the split-conformal factor of each bin of ``r`` on a
held-out set; ``log c`` is interpolated linearly in ``log r`` between the bins' median
``r`` (constant beyond). The calibrated std ``c * s`` is kept non-decreasing in the raw
std ``s`` at every mean (a wider spread never gives a narrower error bar): ``u`` does not
depend on ``s``, and within a group that holds when the slope of ``log c`` against
``log r`` is at most 1, which the fit enforces from the faint end up (a bin whose factor
would rise faster is lowered to the bound).

A factor of ``r`` alone, fitted above the background, over-covered the brightest pixels
and the empty sky; the context groups separate those (`benchmark sr` and
`benchmark denoise` report the coverage per bin).

Given the input's noise, the groups are of the mean's SNR against it instead
(`Q_EDGES`, ``q = |m| / sigma``; ``context="both"``: each pair of a ``u`` group and a
``q`` group): on real survey cutouts, whose depths differ from
image to image, a pixel's error follows how far it stands above its image's noise, and
groups of ``u`` left the brightest pixels of the posterior mean over-covering
(`benchmark denoise --real` reports the coverage per decile of the mean). A ``q`` group
too small for a conformal factor is fitted with the next fainter one of its ``u`` group:
a bright core's few pixels are nearer their neighbours in ``q`` than all pixels are.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from .uncertainty import fit_std_scale

__all__ = ["fit_snr_calibration", "Q_EDGES", "U_EDGES"]

#: Inner edges of the context groups in ``u = log(|m| / |m - b|)``: nearer zero than the
#: background, between, near both, between, near the background.
U_EDGES = (-1.0, -0.2, 0.2, 1.0)

#: Inner edges of the groups in ``q = |m| / sigma``: half-decades from the empty sky
#: (below 0.3 sigma) to the bright cores (above 100 sigma; on a small calibration set
#: too few to fit alone, and then fitted with the pixels at 30-100 sigma).
Q_EDGES = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def _snr_bins(truth, mean, std, r, n_bins, level):
    """Bins of equal counts in ``r``: centres, bounded and raw factors, counts."""
    order = np.argsort(r, kind="stable")
    bins = np.array_split(order, n_bins)
    centres = np.array([np.median(r[b]) for b in bins])
    factors = np.array([fit_std_scale(truth[b], mean[b], std[b], level=level) for b in bins])
    bounded = factors.copy()
    for k in range(1, n_bins):
        # log-log slope at most 1: c(r) * s stays non-decreasing in s
        ceiling = bounded[k - 1] * centres[k] / max(centres[k - 1], 1e-12)
        bounded[k] = min(bounded[k], ceiling)
    return {"snr": centres.tolist(), "std_scale": bounded.tolist(),
            "unbounded": factors.tolist(), "n_pixels": [int(len(b)) for b in bins]}


def _fitted_sets(counts, n_rows, n_q, min_pixels):
    """The sets of groups fitted together: a ``q`` group with fewer than ``min_pixels``
    pixels joins the next fainter ``q`` group of its row (the brightest cores are few, and
    their neighbours in ``q`` are nearer them than all pixels are); a set that reaches the
    faintest group still short takes the table of all pixels (left out here)."""
    sets = []
    for row in range(n_rows):
        pending = []
        for k in range(row * n_q + n_q - 1, row * n_q - 1, -1):
            pending.append(k)
            if counts[pending].sum() >= min_pixels:
                sets.append(sorted(pending))
                pending = []
    return sets


def fit_snr_calibration(truth, mean, std, *, background=0.0, noise=None, context=None,
                        n_bins=12, u_edges=U_EDGES, q_edges=Q_EDGES, level=0.68, mask=None,
                        min_pixels=500):
    """Fit the context- and SNR-dependent factor on held-out pixels.

    Parameters
    ----------
    truth, mean, std : array-like
        One shape, in data units (the data's zero is its sky); ``std`` the raw spread of
        the samples (> 0).
    background : float or array-like, optional
        Each input's background level (its normalisation's offset), broadcastable.
    noise : float or array-like, optional
        The input's noise on the output's grid, same units, broadcastable (needed by
        the groups of ``q = |mean| / noise``; the predictor passes its input's sigma).
    context : {'background', 'noise', 'both'}, optional
        The groups: of ``u``, of ``q``, or each pair of a ``u`` group and a ``q`` group
        (`lensenhance.predict.snr_factor.snr_groups`). Default: ``"noise"`` given
        ``noise``, else ``"background"``.
    n_bins : int, optional
        Bins of equal pixel counts in ``r`` per context group (fewer where a group has
        fewer than ``n_bins * min_pixels`` pixels).
    u_edges, q_edges : sequence of float, optional
        Inner edges of the context groups in ``u`` or ``q``.
    level : float or sequence of float, optional
        The central interval each bin's factor matches; several: the geometric mean of
        their factors (`~lensenhance.evaluate.uncertainty.fit_std_scale`).
    mask : array-like of bool, optional
        True for the pixels to fit on (default: all finite ones).
    min_pixels : int, optional
        Fewer pixels per bin are refused (a conformal quantile of a few pixels is noise);
        a ``q`` group with fewer is fitted together with the next fainter ``q`` group(s)
        of the same ``u`` group; a group still short (a ``u`` group of a
        ``"background"`` table, or the faintest ``q`` groups) takes the table of all
        pixels.

    Returns
    -------
    dict
        ``context``, ``u_edges`` and/or ``q_edges`` (those it uses), ``groups`` (per
        group: ``snr``, each bin's median ``r``; ``std_scale``,
        its factor after the bound; ``unbounded``; ``n_pixels``; ``pooled``, True where
        the group took the table of all pixels; ``fitted_on``, else, the groups whose
        pixels its table was fitted on), ``level``, ``rule``; JSON-ready.
    """
    from ..predict.snr_factor import CONTEXTS, snr_groups

    n_bins = check_int(n_bins, "n_bins", 1)
    kind = ("background" if noise is None else "noise") if context is None else context
    if kind not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    if kind != "background" and noise is None:
        raise ValueError(f"context {kind!r} groups by the SNR against the input's noise: "
                         "give noise")
    truth, mean, std = (np.asarray(a, np.float64) for a in (truth, mean, std))
    background = np.broadcast_to(np.asarray(background, np.float64), mean.shape)
    noise = np.broadcast_to(np.asarray(1.0 if noise is None else noise, np.float64),
                            mean.shape)
    used = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std) & (std > 0)
    if kind != "background":
        used &= np.isfinite(noise) & (noise > 0)
    if mask is not None:
        used &= np.asarray(mask, bool)
    truth, mean, std = truth[used], mean[used], std[used]
    background, noise = background[used], noise[used]
    if truth.size < n_bins * min_pixels:
        raise ValueError(f"{truth.size} pixels are too few for {n_bins} bins of at least "
                         f"{min_pixels}")
    edges = {}
    if kind in ("background", "both"):
        edges["u_edges"] = u_edges
    if kind in ("noise", "both"):
        edges["q_edges"] = q_edges
    for name, given in edges.items():
        if np.any(np.diff(np.asarray(given, np.float64)) <= 0):
            raise ValueError(f"{name} must increase, got {list(given)}")
        edges[name] = [float(e) for e in given]
    group, r = snr_groups(kind, edges.get("u_edges"), edges.get("q_edges"),
                          mean - background, std, -background, noise)
    n_q = len(edges["q_edges"]) + 1 if "q_edges" in edges else 1
    n_rows = len(edges["u_edges"]) + 1 if "u_edges" in edges else 1
    counts = np.bincount(group, minlength=n_rows * n_q)
    pooled = _snr_bins(truth, mean, std, r, n_bins, level) | {"pooled": True}
    groups = [pooled] * (n_rows * n_q)
    for members in _fitted_sets(counts, n_rows, n_q, min_pixels):
        inside = np.isin(group, members)
        count = int(counts[members].sum())
        table = _snr_bins(truth[inside], mean[inside], std[inside], r[inside],
                          min(n_bins, count // min_pixels), level)
        for k in members:
            groups[k] = table | {"pooled": False, "fitted_on": members}
    level = np.atleast_1d(np.asarray(level, np.float64)).tolist()
    grouped_by = {"background": "log(|mean| / |mean - background|)",
                  "noise": "|mean| / the input's noise",
                  "both": "log(|mean| / |mean - background|) and |mean| / the input's "
                          "noise"}[kind]
    return {"context": kind, **edges, "groups": groups,
            "level": level[0] if len(level) == 1 else level,
            "rule": "split-conformal factor per bin of |mean| / std (raw) in each group of "
                    f"{grouped_by}, log-log interpolated, slope <= 1"}
