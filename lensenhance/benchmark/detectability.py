"""``benchmark detectability``: how much of the substructure is in the images.

Per preset and class, the distribution of ``sub_chi2`` (with against without the
substructure, noise-free, against the observed image's noise) and ``sub_chi2_refit``
(after refitting the smooth lens and source: what no smooth model can absorb), over held-
out seeds: median, 10 and 90 % quantiles, and the share above 25 (a 5-sigma difference if
it sat in one pixel; `lensenhance.simulate.detectability`).
"""

from __future__ import annotations

import time

import numpy as np

from . import write_json

__all__ = ["benchmark_detectability", "format_detectability_table", "DEFAULT_PRESETS",
           "THRESHOLD"]

DEFAULT_PRESETS = ("deeplense_model_i", "deeplense_model_ii", "deeplense_model_iii",
                   "deeplense_model_iv", "model_i", "model_ii", "model_iii")

#: The chi-square a substructure must exceed to count as detectable.
THRESHOLD = 25.0


def _summary(values):
    values = np.asarray(values, dtype=float)
    return {"median": float(np.median(values)), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90)),
            "share_above": float(np.mean(values > THRESHOLD)), "n": int(values.size)}


def benchmark_detectability(*, n=100, presets=DEFAULT_PRESETS, classes=("cdm", "axion"),
                            refit=True, seed=2024, workers=1, json_path=None, command=None,
                            progress=False, verbose=True):
    """Measure ``sub_chi2`` and ``sub_chi2_refit`` per preset and class.

    Parameters
    ----------
    n : int, optional
        Images per preset and class.
    presets, classes : sequence of str, optional
        What to measure (``no_sub`` is 0 by construction).
    refit : bool, optional
        Also refit the smooth model (about 0.1-1 s per image).
    seed : int, optional
        Seed of the simulations (not one any shipped model was trained on).
    workers : int, optional
        Simulation processes.
    json_path : path-like, optional
        Write the result there.
    command : str, optional
        The command line, recorded.

    Returns
    -------
    dict
        ``rows``: one per preset and class with ``sub_chi2`` and ``sub_chi2_refit``
        summaries (median, p10, p90, share_above, n); ``threshold``, ``seed``, ``command``.
    """
    from ..simulate import LensSimulator

    rows = []
    started = time.perf_counter()
    if verbose:
        print(f"sub_chi2 and sub_chi2_refit: median [10 %, 90 %] and the share above "
              f"{THRESHOLD:g}; {n} images per row, seed {seed}", flush=True)
    for preset in presets:
        for substructure in classes:
            sim = LensSimulator.from_preset(preset, substructure=substructure)
            t0 = time.perf_counter()
            ds = sim.simulate_pairs(n, scale=2, seed=seed, refit=refit, workers=workers,
                                    progress=progress)
            row = {"preset": preset, "class": substructure,
                   "sub_chi2": _summary(ds["sub_chi2"].values),
                   "m_sub_total_median": float(np.median(ds["m_sub_total"].values)),
                   "seconds": time.perf_counter() - t0}
            if refit:
                row["sub_chi2_refit"] = _summary(ds["sub_chi2_refit"].values)
            rows.append(row)
            if verbose:
                print(_format_row(row), flush=True)
    result = {"benchmark": "detectability", "threshold": THRESHOLD, "seed": seed,
              "n_per_row": n, "rows": rows, "refit": refit, "command": command,
              "wall_time_s": time.perf_counter() - started}
    if json_path is not None:
        write_json(result, json_path)
    return result


def _format_row(row):
    def cell(s):
        return (f"{s['median']:10.3g} [{s['p10']:.3g}, {s['p90']:.3g}] "
                f"{100 * s['share_above']:5.1f} %")

    text = f"{row['preset']:20s} {row['class']:6s} n={row['sub_chi2']['n']:<5d} " \
           f"chi2 {cell(row['sub_chi2'])}"
    if "sub_chi2_refit" in row:
        text += f" | refit {cell(row['sub_chi2_refit'])}"
    return text


def format_detectability_table(result):
    """The result as the plain-text table the command prints (docs and README)."""
    lines = [f"sub_chi2 and sub_chi2_refit: median [10 %, 90 %] and the share above "
             f"{result['threshold']:g}; {result['n_per_row']} images per row, seed "
             f"{result['seed']}"]
    lines += [_format_row(row) for row in result["rows"]]
    return "\n".join(lines)
