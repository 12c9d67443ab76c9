"""The ``speed --part posterior`` benchmark: what a calibrated uncertainty map costs.

For each posterior model (a deterministic mean plus residual diffusion,
`~lensenhance.predict.posterior.PosteriorPredictor`) and each ``(n_samples, steps)``:

* **serial**: seconds per cutout of `Enhancer.enhance` on CCDData cutouts with their
  uncertainty, one after another in one process (the best of ``repeats`` passes over
  ``n`` cutouts, after a warm-up cutout);
* **sampler**: the predictor alone on a batch of ``b`` cutouts at once (a tensor of
  cutouts x samples per forward pass), for each batch size, and its best throughput;
* **catalog**: ``lensenhance enhance --catalog`` (or ``denoise``) on ``n`` cutouts as
  FITS files in a fresh process: cutouts/s over the rows' own span (first start to last
  finish, as a long run sees it) and end to end (interpreter start and model loading
  included); with ``dask``, the same through ``--scheduler`` to a local dask.distributed
  cluster of one single-threaded worker process;
* the **peak resident memory** (VmHWM) of each process that measures: a fresh
  interpreter per setting, so one setting's peak does not hide the next one's.

Every figure records the cutouts it comes from, the threads and the machine. The cutout
sizes are those of the issue that asked for this benchmark (23): 75 x 75 LR cutouts for
super-resolution, 64 x 64 for denoising.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import write_json

__all__ = ["benchmark_posterior_speed", "format_posterior_speed_table", "POSTERIOR_SETTINGS",
           "CUTOUT_SIZES", "POSTERIOR_TARGETS"]

#: (n_samples, steps) measured for every posterior model.
POSTERIOR_SETTINGS = ((16, 10), (16, 4), (16, 2), (16, 1), (4, 10))

#: Cutout side (input pixels) per task.
CUTOUT_SIZES = {"sr": 75, "denoise": 64}

#: Issue 23: 16 samples of a 75 x 75 cutout in <= 2 s on one core; a catalog run within
#: 1.3x of the sampler's own best throughput.
POSTERIOR_TARGETS = {"seconds_16_samples_75px": 2.0, "catalog_over_sampler_max": 1.3}

# A fresh interpreter times one setting and reports its own peak memory (VmHWM).
_SERIAL = r"""
import json, sys, time
import numpy as np
import torch
from astropy.nddata import CCDData, StdDevUncertainty
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from lensenhance.enhance import Enhancer
from lensenhance.benchmark.speed_posterior import cutouts
enhancer = Enhancer.from_pretrained(args["model"], device="cpu", n_samples=args["n_samples"],
                                    steps=args["steps"])
images = cutouts(max(args["n"], max(args["batches"])) + 1, args["size"])
ccds = [CCDData(im, unit="electron/s", uncertainty=StdDevUncertainty(np.full_like(im, 0.1)))
        for im in images[:args["n"] + 1]]
enhancer.enhance(ccds[0])  # warm-up
best = None
for _ in range(args["repeats"]):
    start = time.perf_counter()
    for ccd in ccds[1:]:
        enhancer.enhance(ccd)
    seconds = (time.perf_counter() - start) / args["n"]
    best = seconds if best is None else min(best, seconds)
sampler = {}
predictor = enhancer.predictor
for batch in args["batches"]:
    x = torch.from_numpy(np.stack(images[1:batch + 1]) / 10.0)[:, None].float()
    sigma = torch.full_like(x, 0.01)
    origins = [(k, 0, 0) for k in range(batch)]
    predictor.predict(x[:1], sigma=sigma[:1], seed=0, origins=origins[:1])
    start = time.perf_counter()
    predictor.predict(x, sigma=sigma, seed=0, origins=origins)
    sampler[str(batch)] = (time.perf_counter() - start) / batch
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) * 1024
print(json.dumps({"seconds_per_cutout": best, "sampler_seconds_per_cutout": sampler,
                  "peak_rss_gb": peak / 1e9}))
"""


def cutouts(n, size, seed=0):
    """``n`` lens-like float32 cutouts of ``size`` x ``size`` (rings on a sky with noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    out = []
    for _ in range(n):
        radius = rng.uniform(0.2, 0.35) * size
        ring = 5 * np.exp(-0.5 * ((np.hypot(y, x) - radius) / 1.5) ** 2)
        core = 10 * np.exp(-0.5 * (x**2 + y**2) / (0.05 * size) ** 2)
        out.append((ring + core + rng.normal(0, 0.1, (size, size))).astype(np.float32))
    return out


def _catalog_run(model, task, n, size, n_samples, steps, threads, scheduler=None):
    """cutouts/s and peak memory of ``lensenhance enhance|denoise --catalog`` on n cutouts
    (the command line's own process: with a ``scheduler``, the rows run on its workers)."""
    from astropy.io import fits
    from astropy.table import Table

    from .speed import _PEAK_WRAPPER

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        paths = []
        for k, image in enumerate(cutouts(n, size, seed=1)):
            path = folder / "in" / f"cutout_{k:04d}.fits"
            path.parent.mkdir(exist_ok=True)
            header = fits.Header({"BUNIT": "electron / s"})
            fits.HDUList([fits.PrimaryHDU(image, header),
                          fits.ImageHDU(np.full_like(image, 0.1), name="UNCERT",
                                        header=fits.Header({"UTYPE": "StdDevUncertainty"}))]
                         ).writeto(path)
            paths.append(f"in/{path.name}")
        Table({"path": paths}).write(folder / "catalog.ecsv")
        command = [sys.executable, "-c", _PEAK_WRAPPER, str(folder / "peak"), "-q",
                   "denoise" if task == "denoise" else "enhance", "--catalog",
                   str(folder / "catalog.ecsv"), "--model", model, "--n-samples",
                   str(n_samples), "--steps", str(steps), "--out", str(folder / "out")]
        if scheduler is not None:
            command += ["--scheduler", scheduler]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              env=_thread_env(threads))
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"the catalog run failed: {done.stderr.strip()[-500:]}")
        # The rows' own span (first start to last finish): without the interpreter's
        # start and the model's loading, which a long catalog run pays once.
        from datetime import datetime

        log = [json.loads(line) for line in
               (folder / "out" / "run_log.jsonl").read_text().splitlines()]
        starts = [datetime.fromisoformat(r["started"]).timestamp() for r in log]
        # Rows of one shared pass share its start and each carry its time split over
        # them: the pass ends at its start plus the sum of its rows' seconds.
        passes = {}
        for start, record in zip(starts, log):
            passes[start] = passes.get(start, 0.0) + record["seconds"]
        span = max(start + seconds for start, seconds in passes.items()) - min(starts)
        return {"n_cutouts": n, "seconds_end_to_end": seconds, "seconds_rows": span,
                "cutouts_per_s": n / span, "cutouts_per_s_end_to_end": n / seconds,
                "peak_rss_gb": int((folder / "peak").read_text()) / 1e9}


def _thread_env(threads):
    import os

    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def benchmark_posterior_speed(*, models=None, settings=POSTERIOR_SETTINGS, n=8, repeats=2,
                              batches=(1, 4, 16), threads=1, catalog=True, dask=False,
                              json_path=None, command=None, note=None):
    """Time every posterior model against its samples and steps; see the module docstring.

    Parameters
    ----------
    models : sequence of str, optional
        Shipped posterior models (default: every shipped one).
    settings : sequence of (int, int)
        ``(n_samples, steps)`` pairs.
    n : int
        Cutouts per timing.
    repeats : int
        Serial passes; the best counts.
    batches : sequence of int
        Cutouts per sampler call.
    threads : int
        Torch threads of every measuring process (1: the issue's "one core").
    catalog : bool
        Also time catalog runs through the command line.
    dask : bool
        Also time them on a local dask.distributed cluster (one worker process with
        ``threads`` threads).
    json_path : path-like, optional
    command, note : str, optional
        Recorded in the results.

    Returns
    -------
    dict
    """
    from .._device import machine_description
    from ..predict.loading import is_probabilistic
    from ..pretrained import list_pretrained

    if models is None:
        models = [name for name in list_pretrained() if is_probabilistic(name)]
    rows, skipped = [], []
    with contextlib.ExitStack() as stack:
        scheduler = stack.enter_context(_local_cluster(threads)) if dask and catalog else None
        for model in models:
            _time_model(model, settings, n, repeats, threads, batches, catalog, scheduler,
                        rows, skipped)
    result = {"benchmark": "speed/posterior", "command": command, "note": note,
              "threads": threads, "machine": machine_description(),
              "targets": dict(POSTERIOR_TARGETS), "rows": rows, "skipped": skipped}
    if json_path is not None:
        write_json(result, json_path)
    return result


@contextlib.contextmanager
def _local_cluster(threads):
    """The address of a local cluster of one worker process with ``threads`` threads."""
    import os

    from dask.distributed import LocalCluster

    saved = {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:  # the worker process inherits the thread limits
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            yield cluster.scheduler_address
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _time_model(model, settings, n, repeats, threads, batches, catalog, scheduler, rows,
                skipped):
    """The rows of one model (appended to ``rows``, or its settings to ``skipped``)."""
    from ..pretrained import model_card

    card = model_card(model)
    task = "sr" if int(card.get("scale", 1)) > 1 else "denoise"
    size = CUTOUT_SIZES[task]
    # a distilled model samples in its grids' step counts only
    grids = (card.get("distilled") or {}).get("grids")
    for n_samples, steps in settings:
        if grids is not None and str(steps) not in map(str, grids):
            skipped.append({"model": model, "n_samples": n_samples, "steps": steps})
            continue
        arguments = {"model": model, "n": n, "size": size, "n_samples": n_samples,
                     "steps": steps, "repeats": repeats, "threads": threads,
                     "batches": list(batches)}
        done = subprocess.run([sys.executable, "-c", _SERIAL, json.dumps(arguments)],
                              capture_output=True, text=True, env=_thread_env(threads))
        if done.returncode != 0:
            raise RuntimeError(f"{model}: timing failed: {done.stderr.strip()[-500:]}")
        timing = json.loads(done.stdout.strip().splitlines()[-1])
        best_sampler = min(timing["sampler_seconds_per_cutout"].values())
        row = {"model": model, "task": task, "cutout": [size, size], "n_cutouts": n,
               "repeats": repeats, "n_samples": n_samples, "steps": steps,
               "seconds_per_cutout": timing["seconds_per_cutout"],
               "cutouts_per_s": 1.0 / timing["seconds_per_cutout"],
               "sampler_seconds_per_cutout": timing["sampler_seconds_per_cutout"],
               "sampler_best_cutouts_per_s": 1.0 / best_sampler,
               "peak_rss_gb": timing["peak_rss_gb"]}
        if catalog:
            run = _catalog_run(model, task, n, size, n_samples, steps, threads)
            row["catalog"] = run
            row["catalog_over_sampler"] = (1.0 / run["cutouts_per_s"]) * \
                row["sampler_best_cutouts_per_s"]
        if scheduler is not None:
            run = _catalog_run(model, task, n, size, n_samples, steps, threads, scheduler)
            row["catalog_dask"] = run
            row["catalog_dask_over_sampler"] = (1.0 / run["cutouts_per_s"]) * \
                row["sampler_best_cutouts_per_s"]
        rows.append(row)


def format_posterior_speed_table(result):
    """The plain-text table of `benchmark_posterior_speed`."""
    header = (f"{'model':<24}{'cutout':>8}{'samples':>8}{'steps':>6}{'s/cutout':>10}"
              f"{'cutouts/s':>10}{'sampler best':>13}{'catalog':>9}{'cat/sampler':>12}"
              f"{'peak GB':>9}")
    lines = [f"{result['threads']} torch thread(s) on {result['machine']}", header,
             "-" * len(header)]
    for row in result["rows"]:
        cat = row.get("catalog")
        dask = row.get("catalog_dask")
        lines.append(
            f"{row['model']:<24}{row['cutout'][0]:>5}px{row['n_samples']:>9}{row['steps']:>6}"
            f"{row['seconds_per_cutout']:>10.2f}{row['cutouts_per_s']:>10.2f}"
            f"{row['sampler_best_cutouts_per_s']:>13.2f}"
            + (f"{cat['cutouts_per_s']:>9.2f}{row['catalog_over_sampler']:>12.2f}"
               if cat else f"{'-':>9}{'-':>12}")
            + f"{row['peak_rss_gb']:>9.2f}"
            + (f"  dask {dask['cutouts_per_s']:.2f}/s, {row['catalog_dask_over_sampler']:.2f}x"
               if dask else ""))
    n = result["rows"][0]["n_cutouts"] if result["rows"] else 0
    lines.append(f"s/cutout: Enhancer.enhance one cutout after another (best of the "
                 f"repeats, {n} cutouts); sampler best: the predictor on a batch of "
                 f"cutouts; catalog: the command line's rows, first start to last finish"
                 + ("; dask: the same on a local dask.distributed cluster (one worker)"
                    if any("catalog_dask" in row for row in result["rows"]) else ""))
    return "\n".join(lines)
