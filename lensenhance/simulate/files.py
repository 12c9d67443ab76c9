"""Writing simulated datasets: a FITS file per image plus an ECSV catalog, or one
netCDF / zarr dataset. Files go through :mod:`lensenhance.io` (atomic writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._validation import check_int
from .simulator import UNIT, LensSimulator, tan_wcs, truth_header

__all__ = ["write_simulation", "simulate_to_disk"]

CATALOG_NAME = "catalog.ecsv"
#: Images simulated and written at a time by `simulate_to_disk`.
CHUNK_SIZE = 256
_SETTINGS_NAME = "simulate_run.json"
_PARTS = ".parts"
_PAIR_VARIABLES = ("lr", "hr")
_DATASET_SUFFIX = {"netcdf": ".nc", "zarr": ".zarr"}
_FORMATS = ("fits", *_DATASET_SUFFIX)


def _image_variables(ds):
    """Image variables (dims image, y*, x*) other than ``*_sigma``; the recorded one first."""
    names = [name for name, var in ds.data_vars.items()
             if var.ndim == 3 and var.dims[0] == "image" and not name.endswith("_sigma")]
    primary = next((name for name in ("lr", "low", "image") if name in names), None)
    if primary is None and names:
        primary = names[0]
    return ([primary] + [n for n in names if n != primary]) if primary else []


def _dataset_target(out, fmt):
    out = Path(out)
    suffix = _DATASET_SUFFIX[fmt]
    return out if out.suffix.lower() == suffix else out / f"simulation{suffix}"


def _pixel_scale(ds, var):
    """Pixel scale (arcsec) of a variable's grid, from its x coordinate."""
    xdim = ds[var].dims[-1]
    if xdim in ds.coords and ds.sizes[xdim] > 1:
        return float(abs(ds[xdim].values[1] - ds[xdim].values[0]))
    key = "hr_pixel_scale" if xdim.endswith("_hr") else "lr_pixel_scale"
    for name in (key, "pixel_scale"):
        if name in ds.attrs:
            return float(ds.attrs[name])
    raise ValueError(f"variable {var!r}: no x coordinate or pixel-scale attribute to build "
                     "its WCS from")


def write_simulation(ds, out_dir, *, format="fits", overwrite=False, progress=True,
                     ra=150.0, dec=2.2):
    """Write a simulated dataset to disk.

    Parameters
    ----------
    ds : xarray.Dataset
        From `LensSimulator.simulate_pairs` or ``simulate_snr_pairs``.
    out_dir : str or os.PathLike
        Output folder (created). For ``netcdf``/``zarr`` a path ending in ``.nc`` /
        ``.zarr`` is used as is; otherwise ``out_dir/simulation.nc`` (``.zarr``).
    format : {'fits', 'netcdf', 'zarr'}, optional
        ``fits``: one FITS file per image and variable (``lr/000000.fits``,
        ``hr/000000.fits``, ...; the ``*_sigma`` variable becomes the uncertainty
        extension, the truth parameters header cards) and ``catalog.ecsv`` with the
        truth parameters and the relative paths (``lr_path``, ``hr_path``, ... and
        ``path``, the recorded image's). ``netcdf``/``zarr``: the dataset in one file.
    overwrite : bool, optional
        Replace existing files; otherwise an existing target raises FileExistsError
        before anything is written.
    progress : bool, optional
        Progress bar over the FITS files.
    ra, dec : float, optional
        Sky position (deg) of the image centres in the FITS WCS.

    Returns
    -------
    pathlib.Path
        The catalog (fits) or the dataset file (netcdf, zarr).
    """
    import xarray as xr

    from .. import io

    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"write_simulation: expected an xarray.Dataset, got "
                        f"{type(ds).__name__}")
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")
    if format != "fits":
        target = _dataset_target(out_dir, format)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        io.write_dataset(ds, target, overwrite=overwrite)
        return target

    out_dir = Path(out_dir)
    names = _image_variables(ds)
    if not names:
        raise ValueError(f"write_simulation: no image variables (dims image, y, x) in the "
                         f"dataset; it has {list(ds.data_vars)}")
    # Positions, not the image coordinate: a concatenation of runs may repeat it.
    relative = _relative_paths(names, range(ds.sizes["image"]))
    catalog = out_dir / CATALOG_NAME
    if not overwrite:
        existing = [p for p in [catalog] + [out_dir / r for rs in relative.values() for r in rs]
                    if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists ({len(existing)} target file(s) "
                                  "exist); pass overwrite=True to replace them")
    for name in names:
        (out_dir / name).mkdir(parents=True, exist_ok=True)

    truth = _write_fits_images(ds, out_dir, names, relative, overwrite=overwrite,
                               progress=progress, ra=ra, dec=dec)
    io.write_catalog(truth, catalog, overwrite=overwrite)
    return catalog


def _relative_paths(names, indices):
    return {name: [f"{name}/{int(i):06d}.fits" for i in indices] for name in names}


def _write_fits_images(ds, out_dir, names, relative, *, overwrite, progress, ra, dec):
    """Write every image of ``ds`` (one FITS file per variable); return its truth table."""
    from astropy.nddata import CCDData, StdDevUncertainty
    from tqdm.auto import tqdm

    from .. import io

    truth = _truth_table(ds)
    wcs = {name: tan_wcs(ds[name].shape[1:], _pixel_scale(ds, name), ra=ra, dec=dec)
           for name in names}
    unit = ds.attrs.get("unit", UNIT)
    history = (f"lensenhance simulation: preset {ds.attrs.get('preset', '?')}, "
               f"substructure {ds.attrs.get('substructure', '?')}")
    for i in tqdm(range(ds.sizes["image"]), desc="writing FITS", unit="img",
                  disable=not progress):
        header = truth_header({key: truth[key][i] for key in truth.colnames})
        for key in ("preset", "psf_fwhm"):
            if key in ds.attrs:
                header[key.upper().replace("_", "")[:8]] = ds.attrs[key]
        for name in names:
            sigma = ds.get(f"{name}_sigma")
            ccd = CCDData(ds[name].values[i], unit=unit, wcs=wcs[name], meta=header.copy(),
                          uncertainty=None if sigma is None
                          else StdDevUncertainty(sigma.values[i]))
            io.write_image(ccd, out_dir / relative[name][i], overwrite=overwrite,
                           history=history)
    for name in names:
        truth[f"{name}_path"] = relative[name]
    truth["path"] = relative[names[0]]
    truth.meta.update({k: v for k, v in ds.attrs.items()
                       if isinstance(v, (str, int, float, np.integer, np.floating))})
    return truth


def _truth_table(ds):
    """The coordinates along ``image`` as an astropy Table (units where astropy knows them)."""
    from astropy import units as u
    from astropy.table import Table

    table = Table()
    for key, coord in ds.coords.items():
        if coord.dims != ("image",) or key == "image":
            continue
        table[key] = coord.values
        unit = u.Unit(coord.attrs.get("units", ""), parse_strict="silent")
        if coord.attrs.get("units") and not isinstance(unit, u.UnrecognizedUnit):
            table[key].unit = unit
        table[key].description = coord.attrs.get("long_name", "")
    table.add_column(np.asarray(ds["image"].values), name="image", index=0)
    return table


def simulate_to_disk(out_dir, *, preset="model_i", substructure="no_sub", n=100, scale=2,
                     fmt="fits", seed=0, workers=1, overwrite=False, progress=True,
                     chunk_size=CHUNK_SIZE, refit=False):
    """Simulate ``n`` HR/LR pairs and write them (what ``lensenhance simulate`` runs).

    With ``fmt="fits"`` the images are simulated and written ``chunk_size`` at a time, so
    memory stays flat however large ``n`` is, and the run is resumable: killed at any
    moment and run again with the same arguments, it simulates only the images that are
    missing and the result is identical to an uninterrupted run (every image has its own
    seed). Every file is written atomically and temporaries of a killed run are removed.
    A run with other settings into the same folder is refused, naming what differs.
    ``simulate_run.json`` records the settings; ``.parts/`` holds the truth rows of the
    chunks done until ``catalog.ecsv`` is written.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder (see `write_simulation`).
    preset, substructure
        As for `LensSimulator.from_preset`.
    seed : int or None, optional
        Seed of the run (None: fresh entropy, recorded in the settings so that a rerun
        resumes the same run).
    n, scale, workers
        As for `LensSimulator.simulate_pairs`.
    fmt : {'fits', 'netcdf', 'zarr'}, optional
        Output format. ``netcdf`` and ``zarr`` hold the whole dataset in memory and
        write it once, at the end (not resumable).
    overwrite : bool, optional
        Start afresh: simulate every image again and replace the files.
    progress : bool, optional
        Show a progress bar.
    chunk_size : int, optional
        Images simulated and written at a time (FITS).
    refit : bool, optional
        Fill ``sub_chi2_refit`` in the truth (`LensSimulator.simulate_pairs`).

    Returns
    -------
    pathlib.Path
        The catalog or dataset written.

    Raises
    ------
    ValueError
        An invalid argument, an ``out_dir`` that cannot be a folder, or a folder that
        holds another run, another tool's files or a simulate run with other settings
        (before any image is simulated; another tool's files are never replaced, not
        even with ``overwrite``).
    FileExistsError
        The netCDF or zarr target exists and ``overwrite`` is False.
    """
    from .._runfolder import check_output_folder, open_run_folder

    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}, got {fmt!r}")
    for name, value in (("n", n), ("workers", workers), ("chunk_size", chunk_size)):
        check_int(value, name)
    check_int(scale, "scale", 2)
    sim = LensSimulator.from_preset(preset, substructure=substructure)  # checks both
    if fmt != "fits":
        target = _dataset_target(out_dir, fmt)
        check_output_folder(target.parent)
        if target.exists() and not overwrite:  # fail before spending time simulating
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        ds = sim.simulate_pairs(n, scale=scale, workers=workers, progress=progress, refit=refit,
                                seed=seed)
        return write_simulation(ds, out_dir, format=fmt, overwrite=overwrite,
                                progress=progress)

    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    check_int(seed, "seed", 0, note=" or None (it is recorded so that a rerun resumes the "
              "same run)")
    settings = {"preset": preset, "substructure": substructure, "n": int(n),
                "scale": int(scale), "seed": int(seed), "format": fmt,
                **({"refit": True} if refit else {})}

    # A folder holding anything but simulate runs (a catalog.ecsv that no run recorded,
    # say) is refused before any image is simulated.
    with open_run_folder(out_dir, settings=settings, settings_name=_SETTINGS_NAME,
                         overwrite=overwrite, what="simulate") as run:
        return _simulate_fits(run.path, sim, settings, workers=workers,
                              overwrite=overwrite, progress=progress,
                              chunk_size=int(chunk_size))


def _simulate_fits(out, sim, settings, *, workers, overwrite, progress, chunk_size):
    """The resumable FITS run of `simulate_to_disk`, in a locked, checked folder."""
    import logging
    import shutil

    from astropy.table import Table, vstack
    from tqdm.auto import tqdm

    from .. import io

    n, scale, seed = settings["n"], settings["scale"], settings["seed"]
    names = list(_PAIR_VARIABLES)
    catalog = out / CATALOG_NAME
    parts = out / _PARTS
    if overwrite:
        shutil.rmtree(parts, ignore_errors=True)
        catalog.unlink(missing_ok=True)
    # Once the catalog is written the parts are gone; missing images are still redone.
    finished = catalog.is_file()
    chunks = [range(start, min(n, start + chunk_size)) for start in range(0, n, chunk_size)]

    def part(chunk):
        return parts / f"part-{chunk.start:09d}.ecsv"

    def done(chunk):
        relative = _relative_paths(names, chunk)
        return ((finished or part(chunk).is_file())
                and all((out / r).is_file() for rs in relative.values() for r in rs))

    todo = [chunk for chunk in chunks if overwrite or not done(chunk)]
    n_done = n - sum(len(chunk) for chunk in todo)
    if n_done:
        logging.getLogger("lensenhance").info(
            "%s: %d of %d images already written; simulating the other %d", out, n_done, n,
            n - n_done)
    if todo and not finished:
        parts.mkdir(exist_ok=True)
    with tqdm(total=n, initial=n_done, desc=f"{settings['preset']} x{scale} pairs",
              unit="img", disable=not progress) as bar:
        for chunk in todo:
            ds = sim.simulate_pairs(n, scale=scale, workers=workers, progress=False,
                                    seed=seed, indices=list(chunk),
                                    refit=settings.get("refit", False))
            for name in names:
                (out / name).mkdir(exist_ok=True)
            # Files of a chunk cut short are this run's (same settings): replace them.
            truth = _write_fits_images(ds, out, names, _relative_paths(names, chunk),
                                       overwrite=True, progress=False, ra=150.0, dec=2.2)
            if not finished:
                io.write_catalog(truth, part(chunk), overwrite=True)
            bar.update(len(chunk))
            del ds, truth  # keep one chunk in memory at a time
    if not finished:
        tables = [Table.read(part(chunk), format="ascii.ecsv") for chunk in chunks]
        io.write_catalog(vstack(tables, metadata_conflicts="silent"), catalog,
                         overwrite=True)
        shutil.rmtree(parts, ignore_errors=True)
    return catalog
