"""Scoring predictions against truths, image by image: `evaluate_catalog`.

What ``lensenhance evaluate`` runs. The predictions are the output of a catalog run
(`lensenhance.enhance.catalog.enhance_catalog`: its folder or its ``catalog.ecsv``), matched row
by row with a truth catalog (e.g. the simulator's, whose ``hr_path`` column holds the
truth of a super-resolved LR image) through the input paths the run recorded; or a
folder of FITS images matched by file name. A row that cannot be scored is reported,
never dropped silently.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .catalog import OUTPUT_CATALOG, RUN_SETTINGS, _describe, _text

__all__ = ["evaluate_catalog", "format_metrics_table"]


def _check_json_target(json_path, overwrite):
    if json_path is None:
        return None
    json_path = Path(json_path).expanduser()
    if json_path.is_dir():
        raise ValueError(f"--json {json_path}: is a folder, not a file")
    if json_path.exists() and not overwrite:
        raise FileExistsError(f"--json {json_path}: exists; use another name, or "
                              "--overwrite to replace it")
    if not json_path.parent.is_dir():
        raise ValueError(f"--json {json_path}: the folder {json_path.parent} does not exist")
    return json_path


def _truth_catalog(truth, truth_column, allow_outside):
    from .. import io

    # Columns named *_path are path columns too: hr_path is resolved and checked.
    columns = ("path",) if truth_column is None else ("path", truth_column)
    table = io.read_catalog(truth, path_columns=columns, allow_outside=allow_outside)
    if truth_column is None:
        truth_column = "hr_path" if "hr_path" in table.colnames else "path"
    if truth_column not in table.colnames:
        raise ValueError(f"{truth}: no truth column {truth_column!r} (columns: "
                         f"{', '.join(table.colnames)}); choose it with --truth-column")
    return table, truth_column


def _class_of(table, index):
    for name in ("substructure", "class"):
        if table is not None and name in table.colnames:
            return _text(table[name][index]) or "all"
    return "all"


def _run_pairs(run_catalog, truth, truth_column, allow_outside):
    """(key, pred, truth, class, error) of every row of an enhance/denoise run."""
    from .. import io

    table = io.read_catalog(run_catalog, path_columns=("path",), allow_outside=True)
    missing = [name for name in ("source", "status", "key") if name not in table.colnames]
    if missing:
        raise ValueError(f"{run_catalog}: not the catalog of an enhance/denoise run (no "
                         f"column {', '.join(map(repr, missing))})")
    truth_table, by_source, by_key = None, {}, {}
    key_column = _text(table.meta.get("key_column", "none"))
    if truth.is_file():
        truth_table, truth_column = _truth_catalog(truth, truth_column, allow_outside)
        # The simulator's catalog is what the run read: its path columns lead back.
        for name in truth_table.colnames:
            if name == "path" or name.endswith("_path"):
                for i, value in enumerate(truth_table[name]):
                    by_source.setdefault(_text(value), i)
        if key_column not in ("", "none") and key_column in truth_table.colnames and \
                key_column in table.colnames:
            by_key = {_text(v): i for i, v in enumerate(truth_table[key_column])}
    pairs = []
    for row in table:
        key, status = _text(row["key"]), _text(row["status"])
        pred_path = Path(_text(row["path"]))
        pair = {"key": key, "pred": str(pred_path), "truth": None, "class": "all",
                "error": None}
        if truth_table is not None:
            index = by_source.get(_text(row["source"]))
            if index is None and by_key:
                index = by_key.get(_text(row[key_column]))
            if index is None:
                pair["error"] = (f"no row of {truth} points to its input "
                                 f"{_text(row['source'])}")
            else:
                pair["truth"] = _text(truth_table[truth_column][index])
                pair["class"] = _class_of(truth_table, index)
        else:
            # A folder of truths holds them under the inputs' names.
            pair["truth"] = str(truth / Path(_text(row["source"])).name)
        if status != "ok":
            error = _text(row["error"]) if "error" in table.colnames else ""
            pair["error"] = f"the run's status is {status!r}" + (f": {error}" if error else "")
        pairs.append(pair)
    return pairs, truth_column


def _folder_pairs(pred, truth, truth_column, allow_outside):
    """(key, pred, truth, class, error) of predictions in a folder, matched by file name."""
    pairs = []
    if truth.is_dir():
        for path in sorted(truth.glob("*.fits")):
            pairs.append({"key": path.name, "pred": str(pred / path.name),
                          "truth": str(path), "class": "all", "error": None})
        return pairs, None
    table, truth_column = _truth_catalog(truth, truth_column, allow_outside)
    for i, value in enumerate(table[truth_column]):
        path = Path(_text(value))
        pairs.append({"key": path.name, "pred": str(pred / path.name), "truth": str(path),
                      "class": _class_of(table, i), "error": None})
    return pairs, truth_column


def evaluate_catalog(pred, truth, *, truth_column=None, allow_outside=False, json_path=None,
                     overwrite=False, progress=False):
    """MSE, PSNR and SSIM of predictions against their truths, image by image.

    Parameters
    ----------
    pred : path-like
        The output of an `enhance_catalog` run (its folder or its ``catalog.ecsv``),
        whose rows are matched with the truth catalog's rows through the input paths
        (or the run's key column); or a folder of predicted FITS images, matched by file
        name.
    truth : path-like
        A catalog (ECSV or FITS table), e.g. the simulator's, whose ``truth_column``
        lists the true images (a ``substructure`` or ``class`` column gives per-class
        figures); or a folder of true FITS images, named as the run's inputs (or, for a
        folder of predictions, as the predictions).
    truth_column : str, optional
        Default: ``hr_path`` when the catalog has it (the simulator's HR/LR pairs: the
        truth of a super-resolved LR image is the HR image), else ``path``.
    allow_outside : bool, optional
        Accept truth paths outside the truth catalog's folder.
    json_path : path-like, optional
        Also write the result as JSON there (refused if the file exists, unless
        ``overwrite``); checked before any image is read.
    overwrite : bool, optional
        Replace an existing ``json_path``.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    dict
        ``n`` (images scored), ``n_failed``, ``summary`` (per class and ``all``: the mean
        and standard error of each metric), ``rows`` (per image: ``key``, ``pred``,
        ``truth``, ``class``, ``status``, ``error``, the metrics and ``n_masked``),
        ``failures`` (key -> reason), ``n_masked`` (pixels left out: masked or NaN in
        the prediction or the truth, such as the pixels an enhanced image has no value
        for; every other pixel is scored) and ``n_masked_images`` (images with any),
        ``pred``, ``truth``, ``truth_column``.

    Raises
    ------
    ValueError
        Nothing could be matched or scored; unusable arguments.
    FileNotFoundError, FileExistsError
        A missing ``pred`` or ``truth``; an existing ``json_path``.
    """
    from tqdm.auto import tqdm

    from .. import io
    from .._atomic import atomic_target
    from ..evaluate.metrics import image_metrics, summarize_metrics

    json_path = _check_json_target(json_path, overwrite)
    pred, truth = Path(pred).expanduser(), Path(truth).expanduser()
    if not truth.exists():
        raise FileNotFoundError(f"--truth {truth}: no such folder or catalog")
    if pred.is_dir() and (pred / RUN_SETTINGS).is_file() and (pred / OUTPUT_CATALOG).is_file():
        pairs, truth_column = _run_pairs(pred / OUTPUT_CATALOG, truth, truth_column,
                                         allow_outside)
    elif pred.is_file():
        pairs, truth_column = _run_pairs(pred, truth, truth_column, allow_outside)
    elif pred.is_dir():
        pairs, truth_column = _folder_pairs(pred, truth, truth_column, allow_outside)
    else:
        raise FileNotFoundError(f"--pred {pred}: no such folder or catalog")
    if not pairs:
        raise ValueError(f"--pred {pred}, --truth {truth}: no image to compare")

    rows, labels, values = [], [], {key: [] for key in ("mse", "psnr", "ssim", "data_range")}
    for pair in tqdm(pairs, desc="evaluate", unit="img", disable=not progress):
        row = {**pair, "status": "ok", "mse": None, "psnr": None, "ssim": None,
               "data_range": None, "n_masked": None}
        try:
            if pair["error"]:
                raise ValueError(pair["error"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # units are not compared, only pixels
                p = io.read_image(pair["pred"], unit="")
                t = io.read_image(pair["truth"], unit="")
            mask = _left_out(p, t)
            metrics = image_metrics(p.data, t.data, mask=mask if mask.any() else None)
        except (OSError, ValueError, TypeError, KeyError) as error:
            row.update(status="failed", error=_describe(error))
            rows.append(row)
            continue
        row.update(metrics, n_masked=int(mask.sum()))
        rows.append(row)
        labels.append(pair["class"])
        for key in values:
            values[key].append(metrics[key])
    n = len(labels)
    failures = {row["key"]: row["error"] for row in rows if row["status"] != "ok"}
    if not n:
        first = next(iter(failures.items()))
        raise ValueError(f"no prediction in {pred} could be scored against {truth} "
                         f"({len(failures)} failed; {first[0]}: {first[1]})")
    stacked = {key: np.array(v) for key, v in values.items()}
    labels = np.array(labels)
    summary = {"all": summarize_metrics(stacked)}
    for label in sorted(set(labels) - {"all"}):
        summary[label] = summarize_metrics({k: v[labels == label] for k, v in stacked.items()})
        summary[label]["n"] = int((labels == label).sum())
    summary["all"]["n"] = n
    masked = [row["n_masked"] for row in rows if row["n_masked"]]
    result = {"n": n, "n_failed": len(failures), "summary": summary, "rows": rows,
              "failures": failures, "n_masked": int(sum(masked)),
              "n_masked_images": len(masked), "pred": str(pred), "truth": str(truth),
              "truth_column": truth_column}
    if json_path is not None:
        import json

        text = json.dumps(_json_safe(result), indent=1, allow_nan=False) + "\n"
        with atomic_target(json_path, overwrite=overwrite) as tmp:
            Path(tmp).write_text(text)
    return result


def _left_out(pred, truth):
    """The pixels not scored: masked, or not finite, in the prediction or the truth.

    An enhanced image holds NaN (and MASK) where its input had no usable pixel: those
    have no prediction to score.
    """
    mask = ~np.isfinite(pred.data) | ~np.isfinite(truth.data) if \
        pred.data.shape == truth.data.shape else np.zeros(pred.data.shape, bool)
    for image in (pred, truth):
        if image.mask is not None and np.shape(image.mask) == mask.shape:
            mask |= np.asarray(image.mask, dtype=bool)
    return mask


def _json_safe(value):
    """NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_metrics_table(rows, *, title=None):
    """A plain-text table of ``{method: {"mse", "psnr", "ssim"}}`` rows."""
    lines = [title] if title else []
    lines.append(f"{'method':<22}{'MSE':>12}{'PSNR [dB]':>12}{'SSIM':>10}")
    for method, summary in rows.items():
        lines.append(f"{method:<22}{summary['mse']:>12.3e}{summary['psnr']:>12.2f}"
                     f"{summary['ssim']:>10.4f}")
    return "\n".join(lines)
