"""Row-by-row runs over catalogs of images: resumable, safe, composable.

`enhance_catalog` runs an `~lensenhance.enhance.Enhancer` (a super-resolution model or a
denoiser) over every row of a catalog (an ECSV or FITS table with a column of FITS
paths), or over a list of files (`catalog_from_files`):

* every row gets its own output, named from a key column or mirroring the input's path
  relative to the catalog's folder, so no two rows can write one file (duplicate rows,
  and rows whose names would collide, are refused before any work);
* each output FITS file (science image, MASK, UNCERT, HISTORY and the row's provenance in
  the header) is written atomically, so a killed run leaves no partial file;
* ``run_log.jsonl`` records every finished row (status, error, timings) as it finishes,
  and ``catalog.ecsv`` lists every row with its status, output path, error, timings and
  attempts (written at the end, and when interrupted);
* a rerun with the same settings skips the rows whose output is complete (header and
  size checked) and does the rest, failed rows included; a run with other settings
  into the same folder is refused;
* a failing row never stops the others; rows run serially, in worker processes that
  die with the parent (``workers=``), or on a dask.distributed cluster
  (``scheduler=``).

The output catalog's ``path`` column holds the outputs, so it is itself a valid input
catalog: ``denoise`` then ``enhance`` compose, and `lensenhance.enhance.evaluation` scores a run
against the simulator's catalog row by row.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._validation import check_int

__all__ = ["enhance_catalog", "catalog_from_files", "RUN_SETTINGS", "RUN_LOG",
           "OUTPUT_CATALOG"]

#: Settings of a run, in its output folder.
RUN_SETTINGS = "run.json"
#: One JSON line per finished row, in the output folder.
RUN_LOG = "run_log.jsonl"
#: The output catalog: every row's status, output, error and timings.
OUTPUT_CATALOG = "catalog.ecsv"
# Header cards naming the row an output belongs to (checked on resume).
ROW_CARD, SOURCE_CARD = "LEROW", "LESOURCE"
_FITS_SUFFIXES = (".fits.gz", ".fit.gz", ".fits.fz", ".fits", ".fit", ".fts", ".fz")
# Columns the output catalog sets; an input column of the same name is replaced.
_RUN_COLUMNS = ("row", "key", "source", "path", "status", "error", "warning", "started",
                "seconds", "attempts", "plot_path")
# Failures printed in full; the rest are counted (the catalog has them all).
_MAX_WARNINGS = 3


@dataclass
class _Row:
    row: int
    key: str
    source: Path | None
    output: Path
    plot: Path | None
    problem: str | None = None  # a row that fails before it runs (no path)


# -- reading the rows -----------------------------------------------------------------------

def catalog_from_files(paths):
    """An in-memory catalog of FITS files, for `enhance_catalog`.

    Parameters
    ----------
    paths : iterable of path-like
        The files (they need not exist: a missing one fails as its row).

    Returns
    -------
    astropy.table.Table
        A ``path`` column of absolute paths; ``meta["root"]`` is the deepest folder that
        holds them all, so that outputs mirror the paths below it (two inputs named
        ``x.fits`` in different folders get different outputs).
    """
    from astropy.table import Table

    paths = [Path(p).expanduser().resolve() for p in paths]
    if not paths:
        raise ValueError("no input files")
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    table = Table({"path": [str(p) for p in paths]})
    table.meta["root"] = str(root)
    return table


def _text(value):
    if isinstance(value, bytes):
        value = value.decode()
    return "" if value is None or np.ma.is_masked(value) else str(value).strip()


def _stem(name):
    lower = name.lower()
    for suffix in _FITS_SUFFIXES:
        if lower.endswith(suffix):
            return name[:-len(suffix)]
    return name


def _card(value):
    """A header value for any text: FITS cards hold ASCII only (escapes keep it unique)."""
    return str(value).encode("ascii", "backslashreplace").decode("ascii")


def _safe_name(key):
    # A key becomes one file name: no folders, no hidden files, nothing a shell trips on.
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", key).lstrip(".")
    return name or "_"


def _read_rows(catalog, out_dir, *, path_column, key_column, allow_outside, suffix, plot):
    """The rows of a run, each with its output; refuses what would go wrong later."""
    from astropy.table import Table

    from .. import io

    if isinstance(catalog, Table):
        table, label = catalog, "the catalog"
        catalog_path = None
    else:
        catalog_path = Path(catalog).expanduser()
        label = str(catalog_path)
        table = io.read_catalog(catalog_path, path_columns=(path_column,), allow_outside=True)
    if path_column not in table.colnames:
        raise ValueError(f"{label}: no column {path_column!r} (columns: "
                         f"{', '.join(table.colnames) or 'none'}); name the column of image "
                         "paths with --path-column (path_column=)")
    if key_column is not None and key_column not in table.colnames:
        raise ValueError(f"{label}: no key column {key_column!r} (columns: "
                         f"{', '.join(table.colnames)})")
    if len(table) == 0:
        raise ValueError(f"{label}: the catalog has no rows")

    sources = []
    for value in table[path_column]:
        text = _text(value)
        sources.append(Path(text).expanduser().resolve() if text else None)
    if catalog_path is not None:
        root = catalog_path.resolve().parent
        outside = [(i, s) for i, s in enumerate(sources)
                   if s is not None and not s.is_relative_to(root)]
        if outside and not allow_outside:
            i, source = outside[0]
            more = f" (and {len(outside) - 1} more row(s))" if len(outside) > 1 else ""
            raise ValueError(f"{label}: row {i}, column {path_column!r}: {source} lies outside "
                             f"the catalog's folder {root}{more}; allow it with "
                             "--allow-outside (allow_outside=True)")
    else:
        root = Path(table.meta.get("root") or os.getcwd()).resolve()
    # Outputs mirror the inputs below the deepest folder holding them all.
    base = Path(os.path.commonpath([str(root)] + [str(s.parent) for s in sources if s]))

    first_row = {}
    for i, source in enumerate(sources):
        if source is not None and source in first_row:
            raise ValueError(f"{label}: rows {first_row[source]} and {i} both point to "
                             f"{source} (duplicate rows); remove one")
        first_row.setdefault(source, i)

    rows, keys, names = [], {}, {}
    for i, source in enumerate(sources):
        if key_column is not None:
            key = _text(table[key_column][i])
            if not key:
                raise ValueError(f"{label}: row {i} has no value in the key column "
                                 f"{key_column!r}")
            relative = Path(_safe_name(key))
        elif source is not None:
            relative = source.parent.relative_to(base) / _stem(source.name)
            key = relative.as_posix()
        else:
            key = f"row-{i}"
            relative = Path(key)
        if key in keys:
            if catalog_path is None and key_column is None:  # files given one by one
                raise ValueError(f"{sources[keys[key]]} and {source} would both be written "
                                 f"as {key!r}: rename one, or list them in a catalog with a "
                                 "key column (--key-column)")
            raise ValueError(f"{label}: rows {keys[key]} and {i} have the same key {key!r} "
                             "(duplicate rows)")
        keys[key] = i
        output = out_dir / relative.parent / f"{relative.name}{suffix}.fits"
        # Case-insensitive file systems would put both in one file.
        folded = str(output).casefold()
        if folded in names:
            raise ValueError(f"{label}: rows {names[folded]} and {i} would both write "
                             f"{output}; give them distinct names (or a --key-column)")
        names[folded] = i
        if output in first_row:
            raise ValueError(f"{label}: row {i}: its output {output} would replace the "
                             f"input of row {first_row[output]}; use another --out (out_dir=)")
        plot_path = (out_dir / "plots" / relative.parent / f"{relative.name}{suffix}.png"
                     if plot else None)
        problem = None if source is not None else f"row {i}: no path in column {path_column!r}"
        rows.append(_Row(i, key, source, output, plot_path, problem))
    if catalog_path is not None and (out_dir / OUTPUT_CATALOG).resolve() == \
            catalog_path.resolve():
        raise ValueError(f"{label}: the output catalog {out_dir / OUTPUT_CATALOG} would "
                         "replace the input catalog; use another --out (out_dir=)")
    return table, rows, catalog_path


# -- one row --------------------------------------------------------------------------------

def _now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _describe(error):
    text = str(error) or type(error).__name__
    if not isinstance(error, (OSError, ValueError, TypeError, KeyError)):
        text = f"{type(error).__name__}: {text}"
    return text.replace("\n", " ")


def _plot_row(enhancer, task):
    """A PNG panel of one row: input (on the output grid), mean, std."""
    from .. import io
    from ..evaluate.plots import plot_posterior_panel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a unitless input has already been reported
        observed = io.read_image(task["source"], hdu=task["hdu"]).data
        out = io.read_image(task["output"])
    s = enhancer.scale
    factor = float(out.meta.get("LEFLUX", 1.0))  # the same flux per pixel as the mean
    observed = np.repeat(np.repeat(observed, s, axis=0), s, axis=1) * factor
    std = out.uncertainty.array if out.uncertainty is not None else None
    plot_posterior_panel(task["plot"], observed=observed, mean=out.data, std=std,
                         title=f"{task['key']} ({enhancer.name})")


def _process_row(enhancer, task):
    """Enhance one row into its output file; never raises for a failing row."""
    started, clock = _now(), time.perf_counter()
    record = {"row": task["row"], "key": task["key"], "source": task["source"],
              "started": started, "status": "ok", "error": "", "warning": ""}
    try:
        # The input as it was read: a later change to it makes this output stale.
        source = os.stat(task["source"])
        record.update(source_size=source.st_size, source_mtime_ns=source.st_mtime_ns)
        # Warnings go to the row's record, not 100k times to the terminal. (In threads of
        # a dask worker two rows may see each other's warnings: catch_warnings is global.)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            enhancer.enhance_file(task["source"], task["output"], hdu=task["hdu"],
                                  overwrite=task["overwrite"], meta=task["meta"],
                                  history=task["history"], noise_key=task["row"],
                                  progress=False)
            if task["plot"]:
                _plot_row(enhancer, task)
        messages = list(dict.fromkeys(str(w.message) for w in caught))
        record["warning"] = "; ".join(messages[:_MAX_WARNINGS])[:300]
        stat = os.stat(task["output"])
        record.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    except Exception as error:  # a failing row never stops the others
        record.update(status="failed", error=_describe(error))
    record["seconds"] = round(time.perf_counter() - clock, 4)
    return record


def _process_rows(enhancer, tasks):
    """Enhance several rows in shared forward passes; one record per row, never raises.

    `Enhancer.enhance_files` batches the rows' tiles (a diffusion posterior draws the
    samples of many cutouts at once); each row keeps its own noise key (its row number),
    so the outputs equal a run row by row. A warning that names a row's input goes to
    that row; one from the shared pass goes to every row of it.
    """
    if len(tasks) == 1:
        return [_process_row(enhancer, tasks[0])]
    started, clock = _now(), time.perf_counter()
    records = [{"row": t["row"], "key": t["key"], "source": t["source"], "started": started,
                "status": "ok", "error": "", "warning": ""} for t in tasks]
    jobs = []
    for task, record in zip(tasks, records):
        try:
            source = os.stat(task["source"])
            record.update(source_size=source.st_size, source_mtime_ns=source.st_mtime_ns)
        except OSError as error:
            record.update(status="failed", error=_describe(error))
        jobs.append({"source": task["source"], "path": task["output"], "hdu": task["hdu"],
                     "overwrite": task["overwrite"], "meta": task["meta"],
                     "history": task["history"], "noise_key": task["row"]})
    todo = [k for k, r in enumerate(records) if r["status"] == "ok"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcomes = enhancer.enhance_files([jobs[k] for k in todo], progress=False)
        except Exception as error:  # pragma: no cover - enhance_files returns errors
            outcomes = [error] * len(todo)
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    for k, outcome in zip(todo, outcomes):
        task, record = tasks[k], records[k]
        if isinstance(outcome, Exception):
            record.update(status="failed", error=_describe(outcome))
            continue
        mine = [m for m in messages if task["source"] in m
                or not any(t["source"] in m for t in tasks)]
        try:
            if task["plot"]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _plot_row(enhancer, task)
            stat = os.stat(task["output"])
            record.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                          warning="; ".join(mine[:_MAX_WARNINGS])[:300])
        except Exception as error:  # a failing row never stops the others
            record.update(status="failed", error=_describe(error))
    seconds = round((time.perf_counter() - clock) / len(tasks), 4)
    for record in records:
        record["seconds"] = seconds  # the shared pass's time, split over its rows
    return records


def default_rows_per_pass(enhancer):
    """Rows a catalog run puts through one shared pass: 8 for a posterior, else 1.

    A diffusion posterior's samples of several cutouts fill a batch that one cutout's
    would not; a residual network gains nothing and a row's failure stays its own.
    """
    return 8 if getattr(enhancer.predictor, "n_samples", 0) else 1


def _source_changed(row, record):
    """True when the input differs from the one the logged output was made from."""
    if record is None or "source_size" not in record:
        return False  # nothing logged to compare with (a journal from an older version)
    try:
        stat = os.stat(row.source)
    except OSError:
        return False  # a missing input fails on its own
    return (record.get("source") != str(row.source) or record["source_size"] != stat.st_size
            or record["source_mtime_ns"] != stat.st_mtime_ns)


def _output_state(row, task_meta, record, *, plot, failed_last=False):
    """What ``row.output`` needs: ``"done"`` (this row's complete output), ``"todo"``
    (missing), ``"plot"`` (done but its panel is missing), ``"redo"`` (this row's
    output, truncated or unreadable since the journal logged it, cut short, made from an
    input changed since, or left from before the row's last attempt failed), else the
    reason it cannot be replaced.

    ``record`` is the row's last successful journal record, ``failed_last`` whether a
    failed attempt came after it.
    """
    from astropy.io import fits

    path = row.output
    if not path.exists():
        return "todo"
    # The output is done; with plot, its panel too (else the row is redone for it).
    done = "plot" if plot and not row.plot.is_file() else "done"
    stale = failed_last or _source_changed(row, record)
    stat = path.stat()
    logged = record is not None and record.get("source") == str(row.source) and \
        "size" in record
    if logged and not stale and record["size"] == stat.st_size and \
            record.get("mtime_ns") == stat.st_mtime_ns:
        return done  # the file this run wrote for this input and logged, untouched since
    try:
        with warnings.catch_warnings():
            # "File may have been truncated": the sizes below say it.
            warnings.simplefilter("ignore")
            with fits.open(path, lazy_load_hdus=False) as hdul:
                header = hdul[0].header
                end = max(info["datLoc"] + info["datSpan"]
                          for info in (hdul.fileinfo(i) for i in range(len(hdul))))
                mine = all(header.get(key) == value for key, value in task_meta.items())
    except Exception as error:
        if logged and _starts_as_ours(path, task_meta):
            return "redo"  # this run's output, cut inside its header since: done again
        return (f"{path} exists but is not a readable FITS file ({_describe(error)}); "
                "remove it or use --overwrite (overwrite=True)")
    if not mine:
        return (f"{path} exists and is not this row's output of this run; remove it or use "
                "--overwrite (overwrite=True)")
    # Cut short (a full disk, an interrupted copy): inside an HDU, or whole HDUs lost
    # since the journal logged its size.
    if end > stat.st_size or stale or (logged and stat.st_size < record["size"]):
        return "redo"
    return done


def _starts_as_ours(path, task_meta):
    """True when an unreadable file begins as this row's output of this run would.

    A file cut inside its header cannot be opened; its first cards still show whether
    this run wrote it (the model card comes early), so that it is redone, not refused.
    """
    try:
        with open(path, "rb") as handle:
            text = handle.read(4 * 2880).decode("ascii", "replace")
    except OSError:
        return False
    if not text.startswith("SIMPLE  ="):
        return False
    cards = [text[i:i + 80] for i in range(0, len(text) - 79, 80)]
    found = {card[:8].strip(): card[10:] for card in cards if card[8:10] == "= "}
    if "LEMODEL" not in found:
        return False
    for key, value in task_meta.items():
        if key not in found:
            continue  # cut before this card
        card = found[key].strip()
        if not card.startswith("'"):
            return False
        # A long text continues on CONTINUE cards: its first card holds a prefix.
        text = card[1:card.rfind("'")].replace("''", "'").rstrip().removesuffix("&")
        if not str(value).startswith(text):
            return False
    return True


# -- running the rows -----------------------------------------------------------------------

_WORKER_ENHANCER = None
# Imported once by the fork server: workers start with torch and the models loaded.
_PRELOAD = ("lensenhance.enhance.catalog", "lensenhance.enhance", "lensenhance.nn")


def _init_worker(parent, enhancer, threads):
    from .._workers import stop_on_signals, watch_parent

    global _WORKER_ENHANCER
    # SIGTERM to the whole job (a batch scheduler's stop) reaches the workers too.
    # First: the threads started after it must not take the signals.
    stop_on_signals()
    watch_parent(parent)
    try:
        from tqdm import tqdm

        # Workers draw no bars: a thread lock, not a semaphore that a kill would leak.
        tqdm.set_lock(threading.RLock())
    except ImportError:  # pragma: no cover - tqdm is a dependency
        pass
    try:
        import torch

        torch.set_num_threads(threads)  # workers share the cores, not each take all
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    _WORKER_ENHANCER = enhancer


def _process_rows_in_worker(tasks):
    from .._workers import running_task

    with running_task():
        return _process_rows(_WORKER_ENHANCER, tasks)


def _failed(task, message):
    return {"row": task["row"], "key": task["key"], "source": task["source"],
            "started": _now(), "status": "failed", "error": message, "warning": "",
            "seconds": float("nan")}


def _in_processes(chunks, enhancer, workers, late=None):
    """Chunks of rows in ``workers`` processes (they end when this process ends, however).

    Interrupted, it stops the workers and waits for them; the records of rows they
    finished meanwhile go to the list ``late``.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from .._workers import process_context

    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = iter(chunks)

    def new_pool():
        return ProcessPoolExecutor(workers, mp_context=process_context(_PRELOAD),
                                   initializer=_init_worker,
                                   initargs=(os.getpid(), enhancer, threads))

    pool = new_pool()
    running = {}
    finished = False
    try:
        while True:
            while len(running) < 2 * workers:  # a bounded window: memory stays flat
                chunk = next(queue, None)
                if chunk is None:
                    break
                running[pool.submit(_process_rows_in_worker, chunk)] = chunk
            if not running:
                finished = True
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                chunk = running.pop(future)
                try:
                    yield from future.result()
                except BrokenProcessPool:
                    broken = True
                    for task in chunk:
                        yield _failed(task, "a worker process died while this row ran "
                                            "(out of memory?); rerun to retry it")
            if broken:
                # Every row still in the broken pool fails with it; the rest go on.
                for task in (t for chunk in running.values() for t in chunk):
                    yield _failed(task, "a worker process died while this row ran (out "
                                        "of memory?); rerun to retry it")
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop_pool(pool)
            for future in running:
                if future.done() and not future.cancelled() and future.exception() is None \
                        and late is not None:
                    late.extend(future.result())


def _stop_pool(pool):
    """Stop an interrupted pool's workers and wait until they have cleaned up.

    Left to themselves they would finish their rows after this process has logged its
    last one, or die mid-write when it exits, leaving temporaries behind.
    """
    from .._workers import stop_processes

    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    stop_processes(processes)
    pool.shutdown(wait=True)


def _connect(scheduler):
    """A dask.distributed Client for ``scheduler`` (an address or a Client) and whether
    this call opened it."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler (scheduler=) needs dask.distributed: "
                         "pip install distributed") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    _check_scheduler_address(scheduler)
    try:
        return Client(scheduler, timeout="10s", set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as error:
        raise ValueError(f"cannot reach the dask scheduler at {scheduler!r} "
                         f"({_describe(error)})") from None


def _check_scheduler_address(address):
    """Refuse an address that no scheduler can be at, before a Client is made.

    A Client given a malformed address fails only in its destructor (a traceback and a
    20 s wait), and one given a closed port retries for its whole timeout: both are
    checked here in well under a second.
    """
    import socket

    from distributed.comm import get_address_host_port, parse_address

    where = f"--scheduler (scheduler=) {address!r}"
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"{where}: not an address; give one like tcp://host:8786")
    try:
        scheme, _ = parse_address(address)
        if scheme in ("inproc", "ucx"):
            return  # no host and port to check: left to the Client
        host, port = get_address_host_port(address)
    except ValueError as error:
        raise ValueError(f"{where}: not a dask scheduler address ({error}); give one like "
                         "tcp://host:8786") from None
    try:
        socket.create_connection((host, port), timeout=3).close()
    except socket.gaierror as error:
        raise ValueError(f"{where}: unknown host {host!r} ({error.strerror or error})") \
            from None
    except OSError as error:
        raise ValueError(f"{where}: no dask scheduler answers at {host}:{port} "
                         f"({error.strerror or error}); start one (dask scheduler) or "
                         "check the address") from None


def _on_cluster(chunks, enhancer, client):
    """Chunks of rows as tasks of a dask.distributed cluster, a bounded number at a time."""
    from distributed import as_completed

    # The model travels once to every worker, not once per row.
    [remote] = client.scatter([enhancer], broadcast=True, hash=False)
    window = 2 * max(1, sum(client.nthreads().values()))
    queue = iter(chunks)
    running = {}
    pending = as_completed(loop=client.loop)

    def submit():
        chunk = next(queue, None)
        if chunk is None:
            return
        future = client.submit(_process_rows, remote, chunk, pure=False,
                               key=f"lensenhance-rows-{os.getpid()}-{time.time_ns()}-"
                                   f"{chunk[0]['row']}")
        running[future.key] = chunk
        pending.add(future)

    for _ in range(window):
        submit()
    for future in pending:
        chunk = running.pop(future.key)
        try:
            yield from future.result()
        except Exception as error:  # a worker lost, a task that could not run
            for task in chunk:
                yield _failed(task, f"the dask cluster could not run this row "
                                    f"({_describe(error)})")
        future.release()
        submit()


def _settings(enhancer, *, task, catalog_path, path_column, key_column, hdu, suffix):
    predictor = enhancer.predictor
    return {
        "task": task, "model": enhancer.name, "weights_sha256": predictor.weights_hash(),
        "scale": int(enhancer.scale), "seed": int(enhancer.seed),
        **{key: value for key, value in predictor.settings().items()
           if key in ("self_ensemble", "n_samples", "steps", "sampler", "n_draws")},
        "normalization": enhancer.normalization,
        "outlier_threshold": enhancer.outlier_threshold,
        "cosmic_rays": enhancer.cosmic_rays, "psf_fwhm": enhancer.psf_fwhm,
        "resample": enhancer.resample,
        "catalog": None if catalog_path is None else str(catalog_path.resolve()),
        "path_column": path_column, "key_column": key_column,
        "hdu": hdu, "suffix": suffix,
    }


def enhance_catalog(catalog, out_dir, *, enhancer, path_column="path", key_column=None,
                    hdu=None, suffix="", allow_outside=False, overwrite=False, workers=1,
                    scheduler=None, plot=False, task="enhance", rows_per_pass=None,
                    progress=True):
    """Enhance (or denoise) every row of a catalog into its own FITS file; resumable.

    Parameters
    ----------
    catalog : path-like or astropy.table.Table
        An ECSV or FITS table whose ``path_column`` lists FITS images (relative paths
        are relative to the catalog's folder), or a table from `catalog_from_files`.
    out_dir : path-like
        Output folder (created): empty, or holding an earlier enhance/denoise run. It
        receives the outputs, ``catalog.ecsv`` (every row:
        its input columns but the paths, ``row``, ``key``, ``source``, ``path`` (the
        output), ``status`` (ok, failed, pending), ``error``, ``warning``,
        ``started``, ``seconds``, ``attempts`` and, with ``plot``, ``plot_path``),
        ``run.json`` (the settings) and ``run_log.jsonl`` (one line per finished row).
    enhancer : Enhancer
        The model; with ``workers`` or ``scheduler`` it is pickled to the workers.
    path_column : str, optional
        The column of image paths.
    key_column : str, optional
        A column of unique row keys: output ``<key><suffix>.fits``. By default the
        output mirrors the input's path relative to the catalog's folder
        (``lr/000001.fits`` -> ``out/lr/000001<suffix>.fits``).
    hdu : int or str, optional
        The HDU of the inputs.
    suffix : str, optional
        Added to every output name (e.g. ``"_edsr-x2"``).
    allow_outside : bool, optional
        Accept rows whose path leaves the catalog's folder (``..``, absolute paths,
        symbolic links); refused by default.
    overwrite : bool, optional
        Start afresh: redo every row and replace its output. Otherwise a rerun skips
        the rows whose output is complete and does the others.
    workers : int, optional
        Rows enhanced at once, in worker processes (1: in this process). The workers
        end when this process ends, even when it is killed.
    scheduler : str or distributed.Client, optional
        Send the rows to this dask.distributed scheduler (address or Client) instead.
    plot : bool, optional
        Also write a PNG panel per row (input, mean, std) under ``out_dir/plots``.
    task : {'enhance', 'denoise'}, optional
        Names the run in its settings, headers and messages.
    rows_per_pass : int, optional
        Rows whose tiles share the predictor's forward passes (`Enhancer.enhance_files`);
        default `default_rows_per_pass` (8 for a diffusion posterior, else 1). The
        outputs do not depend on it: each row's randomness is keyed to its row number.
    progress : bool, optional
        Show a progress bar over rows.

    Returns
    -------
    dict
        ``catalog`` (the output catalog's path), ``n`` (rows), ``ok``, ``done`` (rows
        done by this call), ``skipped`` (complete before it), ``failed``, ``pending``
        (not reached: interrupted), ``failures`` (key -> error), ``warnings`` (rows
        with warnings, in the catalog's ``warning`` column), ``seconds``.

    Raises
    ------
    ValueError
        Before any row runs: an unusable ``out_dir`` (a file, not creatable, locked by
        another run, holding another tool's files (never replaced, not even with
        ``overwrite``), or a run with other settings), a catalog without
        ``path_column``, rows outside its folder, duplicate rows or names, invalid
        options. A failing row raises nothing: see ``failures``.
    OSError
        The catalog cannot be read.
    """
    from .._runfolder import Journal, check_output_folder, open_run_folder
    from .enhancer import Enhancer

    if not isinstance(enhancer, Enhancer):
        raise TypeError(f"enhancer must be an Enhancer, got {type(enhancer).__name__}")
    if task not in ("enhance", "denoise"):
        raise ValueError(f"task must be 'enhance' or 'denoise', got {task!r}")
    check_int(workers, "workers")
    if scheduler is not None and workers > 1:
        raise ValueError("give workers or scheduler, not both: the cluster's workers run "
                         "the rows")
    if not isinstance(suffix, str) or "/" in suffix or os.sep in suffix:
        raise ValueError(f"suffix must be a file-name part, got {suffix!r}")
    # Checked before the catalog is read; created once the rows are known to be sound.
    out_dir = check_output_folder(out_dir, create=False).resolve()
    table, rows, catalog_path = _read_rows(catalog, out_dir, path_column=path_column,
                                           key_column=key_column,
                                           allow_outside=allow_outside, suffix=suffix,
                                           plot=plot)
    settings = _settings(enhancer, task=task, catalog_path=catalog_path,
                         path_column=path_column, key_column=key_column, hdu=hdu,
                         suffix=suffix)
    client, own_client = (None, False) if scheduler is None else _connect(scheduler)
    clock = time.perf_counter()
    outcome = {"records": {}, "attempts": {}, "done": 0, "skipped": 0}
    try:
        with open_run_folder(out_dir, settings=settings, settings_name=RUN_SETTINGS,
                             overwrite=overwrite, what=task) as run:
            journal = Journal(run.path / RUN_LOG)
            if overwrite:
                journal.reset()
            try:
                with journal:
                    _run_rows(rows, journal, enhancer, settings, outcome, hdu=hdu,
                              overwrite=overwrite, plot=plot, workers=workers,
                              client=client, progress=progress, task=task,
                              rows_per_pass=None if rows_per_pass is None
                              else check_int(rows_per_pass, "rows_per_pass", 1))
            finally:
                # Also when interrupted: the rows not reached are listed as pending.
                if len(outcome["records"]) == len(rows):
                    catalog_out = _write_output_catalog(table, rows, outcome, out_dir,
                                                        path_column=path_column,
                                                        plot=plot, settings=settings)
    finally:
        if own_client:
            client.close()
    records = outcome["records"]
    counts = {status: sum(r["status"] == status for r in records.values())
              for status in ("ok", "failed", "pending")}
    failures = {row.key: records[row.row]["error"] for row in rows
                if records[row.row]["status"] == "failed"}
    return {"catalog": catalog_out, "n": len(rows), "ok": counts["ok"],
            "done": outcome["done"], "skipped": outcome["skipped"],
            "failed": counts["failed"], "pending": counts["pending"], "failures": failures,
            "warnings": sum(bool(r.get("warning")) for r in records.values()),
            "seconds": time.perf_counter() - clock}


def _run_rows(rows, journal, enhancer, settings, outcome, *, hdu, overwrite, plot, workers,
              client, progress, task, rows_per_pass=None):
    """Decide what each row needs, run the rows that need it, log every result.

    Fills ``outcome`` as it goes, so that an interrupted run can still be summarised.
    """
    from tqdm.auto import tqdm

    from .._version import __version__

    history, failed_last, attempts = {}, set(), outcome["attempts"]
    for record in journal.read():
        key = record.get("key")
        attempts[key] = attempts.get(key, 0) + 1
        if record.get("status") == "ok":
            history[key] = record
            failed_last.discard(key)
        elif record.get("status") == "failed":
            failed_last.add(key)
    records, tasks, skipped, queued = {}, [], 0, {}
    for row in rows:
        meta = {"LEMODEL": settings["model"], ROW_CARD: _card(row.key),
                SOURCE_CARD: _card(row.source)}
        if row.problem:
            records[row.row] = {"status": "failed", "error": row.problem, "started": "",
                                "seconds": float("nan"), "warning": ""}
            continue
        state = "todo" if overwrite else _output_state(row, meta, history.get(row.key),
                                                       plot=plot,
                                                       failed_last=row.key in failed_last)
        if state == "done":
            earlier = history.get(row.key, {})
            records[row.row] = {"status": "ok", "error": "", "warning": earlier.get(
                "warning", ""), "started": earlier.get("started", ""),
                "seconds": earlier.get("seconds", float("nan"))}
            skipped += 1
            continue
        if state not in ("todo", "plot", "redo"):
            records[row.row] = {"status": "failed", "error": state, "started": "",
                                "seconds": float("nan"), "warning": ""}
            continue
        records[row.row] = {"status": "pending", "error": "", "warning": "", "started": "",
                            "seconds": float("nan")}
        queued[row.row] = (row, meta, _mtime(row.output))
        tasks.append({
            "row": row.row, "key": row.key, "source": str(row.source),
            "output": str(row.output), "plot": str(row.plot) if row.plot else None,
            "hdu": hdu, "overwrite": overwrite or state in ("plot", "redo"),
            "meta": {ROW_CARD: (_card(row.key), "catalog row key"),
                     SOURCE_CARD: (_card(row.source), "input image")},
            "history": f"lensenhance {__version__} {task}: row {row.row} "
                       f"({_card(row.key)})"})
    outcome["records"], outcome["skipped"] = records, skipped
    for task_ in tasks:
        if task_["plot"]:
            Path(task_["plot"]).parent.mkdir(parents=True, exist_ok=True)
        Path(task_["output"]).parent.mkdir(parents=True, exist_ok=True)

    late = []
    per_pass = default_rows_per_pass(enhancer) if rows_per_pass is None else rows_per_pass
    chunks = [tasks[k:k + per_pass] for k in range(0, len(tasks), per_pass)]
    if client is not None:
        results = _on_cluster(chunks, enhancer, client)
    elif workers > 1 and len(tasks) > 1:
        results = _in_processes(chunks, enhancer, workers, late=late)
    else:
        results = (record for chunk in chunks for record in _process_rows(enhancer, chunk))

    def log(record):
        journal.append(record)
        attempts[record["key"]] = attempts.get(record["key"], 0) + 1
        records[record["row"]] = record
        outcome["done"] += record["status"] == "ok"

    with tqdm(total=len(rows), initial=len(rows) - len(tasks), desc=task, unit="row",
              disable=not progress) as bar:
        try:
            for record in results:
                log(record)
                bar.update(1)
        finally:
            if hasattr(results, "close"):
                results.close()  # stops the workers when interrupted
            for record in late:  # rows the stopped workers finished meanwhile
                log(record)
            for row, meta, before in queued.values():
                # Interrupted after its output was in place, before its record came back:
                # a complete output of this row written by this run (not an older one).
                if records[row.row]["status"] == "pending" and \
                        _mtime(row.output) not in (None, before) and \
                        _output_state(row, meta, None, plot=plot) == "done":
                    log(_finished_record(row))


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _finished_record(row):
    """The record of a row whose complete output an interrupted worker left unreported."""
    record = {"row": row.row, "key": row.key, "source": str(row.source), "started": "",
              "status": "ok", "error": "", "warning": "", "seconds": float("nan")}
    with contextlib.suppress(OSError):
        source, output = os.stat(row.source), os.stat(row.output)
        record.update(source_size=source.st_size, source_mtime_ns=source.st_mtime_ns,
                      size=output.st_size, mtime_ns=output.st_mtime_ns)
    return record


def _write_output_catalog(table, rows, outcome, out_dir, *, path_column, plot, settings):
    from astropy.table import Column, Table

    from .. import io

    keep = [name for name in table.colnames
            if name not in _RUN_COLUMNS and name != path_column and not name.endswith("_path")
            and table[name].ndim <= 1]
    out = Table([table[name] for name in keep], copy=True, meta={})
    records = outcome["records"]

    def column(name, values, dtype=None):
        out[name] = Column(values, dtype=dtype)

    column("row", [r.row for r in rows], np.int64)
    column("key", [r.key for r in rows], str)
    column("source", [str(r.source) if r.source else "" for r in rows], str)
    column("path", [r.output.relative_to(out_dir).as_posix() for r in rows], str)
    column("status", [records[r.row]["status"] for r in rows], str)
    column("error", [records[r.row].get("error", "") for r in rows], str)
    column("warning", [records[r.row].get("warning", "") for r in rows], str)
    column("started", [records[r.row].get("started", "") for r in rows], str)
    column("seconds", [_float(records[r.row].get("seconds")) for r in rows], np.float64)
    column("attempts", [outcome["attempts"].get(r.key, 0) for r in rows], np.int64)
    if plot:
        column("plot_path", [r.plot.relative_to(out_dir).as_posix() for r in rows], str)
    out["seconds"].unit = "s"
    out.meta.update({key: ("none" if value is None else value)
                     for key, value in settings.items()})
    path = out_dir / OUTPUT_CATALOG
    io.write_catalog(out, path, overwrite=True)
    return path


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
