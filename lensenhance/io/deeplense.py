"""The published DeepLense datasets: folders of ``.npy`` images, read or converted to FITS.

DeepLense (https://github.com/ML4SCI/DeepLense) publishes its simulations (made with
DeepLenseSim, https://github.com/mwt5345/DeepLenseSim) as folders of NumPy files, in
two layouts:

* classification: one sub-folder per dark-matter class (``no_sub``, ``cdm``,
  ``axion``; the accepted names are `CLASS_FOLDERS`), each holding ``.npy`` images of
  shape ``(150, 150)``, ``(1, 150, 150)`` or ``(64, 64)``. The axion files of Models
  I-III hold a 2-element object array ``[image, axion_mass]`` (mass in eV), which only
  ``pickle`` can read;
* super-resolution: ``HR/`` and ``LR/`` sub-folders of ``.npy`` images paired by file
  name.

`read_deeplense` reads either layout into an `xarray.Dataset`; `convert_deeplense`
writes one FITS file per image and a catalog that ``lensenhance enhance --catalog``
reads (``lensenhance convert deeplense`` on the command line).
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

__all__ = ["read_deeplense", "convert_deeplense", "CLASSES", "CLASS_FOLDERS"]

#: The classes in label order (``label`` is the index in this tuple).
CLASSES = ("no_sub", "cdm", "axion")

#: Accepted class folder names and the class each holds.
CLASS_FOLDERS = {
    "no_sub": "no_sub",
    "no_substructure": "no_sub",
    "cdm": "cdm",
    "subhalo": "cdm",
    "axion": "axion",
    "vort": "axion",
}

#: The sub-folders of the super-resolution layout.
HR_FOLDER, LR_FOLDER = "HR", "LR"

#: The catalog `convert_deeplense` writes in its output folder.
CATALOG_NAME = "catalog.ecsv"


# -- files --------------------------------------------------------------------------------

def _check_folder(folder):
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file, not a DeepLense dataset folder")
    return folder


def _npy_files(folder, what):
    """The ``.npy`` files of ``folder``, sorted by name; an error when there are none."""
    # Names starting with "." are skipped: macOS archives carry "._name.npy" metadata
    # files that are not arrays.
    files = sorted((p for p in folder.iterdir()
                    if p.suffix == ".npy" and not p.name.startswith(".") and p.is_file()),
                   key=lambda p: p.name)
    if not files:
        raise ValueError(f"{folder}: no .npy file in the {what}")
    return files


def _is_sr_layout(folder):
    hr, lr = (folder / HR_FOLDER).is_dir(), (folder / LR_FOLDER).is_dir()
    if hr != lr:
        have, missing = (HR_FOLDER, LR_FOLDER) if hr else (LR_FOLDER, HR_FOLDER)
        raise ValueError(f"{folder}: has a {have}/ folder but no {missing}/ folder; the "
                         f"super-resolution layout needs both")
    return hr


def _class_folders(folder, classes):
    """``[(class, class folder)]`` in `CLASSES` order, restricted to ``classes``."""
    wanted = None
    if classes is not None:
        if isinstance(classes, str):
            classes = (classes,)
        unknown = [c for c in classes if c not in CLASS_FOLDERS]
        if unknown:
            raise ValueError(f"classes: unknown class {unknown[0]!r}; use one of "
                             f"{', '.join(CLASSES)} (or a folder name of "
                             f"{', '.join(CLASS_FOLDERS)})")
        wanted = {CLASS_FOLDERS[c] for c in classes}
        if not wanted:
            raise ValueError("classes: no class given")

    found = {}
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    for sub in subfolders:
        cls = CLASS_FOLDERS.get(sub.name)
        if cls is None:
            continue
        if cls in found:
            raise ValueError(f"{folder}: both {found[cls].name}/ and {sub.name}/ hold the "
                             f"class {cls!r}; keep one of them")
        found[cls] = sub
    if not found:
        there = [p.name + ("/" if p.is_dir() else "") for p in sorted(folder.iterdir())]
        listing = ", ".join(there[:20]) + (f" ... ({len(there)} entries)"
                                           if len(there) > 20 else "") or "nothing"
        hint = ""
        # The published archives nest their class folders (train/, Model_I/ ...).
        nested = [p.name for p in subfolders
                  if any((p / name).is_dir() for name in CLASS_FOLDERS)]
        if nested:
            hint = f"; did you mean {folder / nested[0]}?"
        raise ValueError(f"{folder}: no class folder found (it holds: {listing}); accepted "
                         f"class folders are {', '.join(f'{n}/' for n in CLASS_FOLDERS)}, "
                         f"or {HR_FOLDER}/ and {LR_FOLDER}/ for super-resolution{hint}")
    if wanted is not None:
        missing = [c for c in CLASSES if c in wanted and c not in found]
        if missing:
            names = [n for n, c in CLASS_FOLDERS.items() if c == missing[0]]
            raise FileNotFoundError(f"{folder}: no folder for the class {missing[0]!r} "
                                    f"(looked for {', '.join(f'{n}/' for n in names)})")
    return [(c, found[c]) for c in CLASSES if c in found and (wanted is None or c in wanted)]


def _no_classes_for_pairs(folder, classes):
    # Ignoring the restriction would read data the caller did not ask for.
    if classes:
        raise ValueError(f"{folder}: classes= applies to class folders; this folder holds "
                         f"{HR_FOLDER}/ and {LR_FOLDER}/ pairs, which have no class")


def _sr_pairs(folder):
    """``[(hr file, lr file)]`` paired by file name, sorted by name."""
    hr = _npy_files(folder / HR_FOLDER, f"{HR_FOLDER}/ folder")
    lr = _npy_files(folder / LR_FOLDER, f"{LR_FOLDER}/ folder")
    lr_names = {p.name for p in lr}
    hr_names = {p.name for p in hr}
    for path in hr:
        if path.name not in lr_names:
            raise ValueError(f"{path}: no LR partner ({folder / LR_FOLDER / path.name} "
                             "does not exist)")
    for path in lr:
        if path.name not in hr_names:
            raise ValueError(f"{path}: no HR partner ({folder / HR_FOLDER / path.name} "
                             "does not exist)")
    return [(path, folder / LR_FOLDER / path.name) for path in hr]


# -- one file -----------------------------------------------------------------------------

_HEADER_READERS = {(1, 0): "read_array_header_1_0", (2, 0): "read_array_header_2_0",
                   (3, 0): "read_array_header_2_0"}


class _Refused(ValueError):
    """A well-formed .npy file that is refused (its message lacks the path)."""


def _load_npy(path):
    """The array of a ``.npy`` file; unpickles only the ``[image, axion_mass]`` layout."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version not in _HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = getattr(fmt, _HEADER_READERS[version])(f)
            # The header is read before anything is unpickled: only an object array of
            # exactly two elements (DeepLense's axion files) may run pickle at all.
            pickled = dtype.hasobject
            if pickled and not (shape == (2,) and dtype == np.dtype(object)):
                raise _Refused(f"an object array of shape {shape} and dtype {dtype} is not "
                               "a DeepLense file (only [image, axion_mass] object arrays "
                               "of 2 elements are unpickled)")
            f.seek(0)
            return fmt.read_array(f, allow_pickle=pickled)
    except _Refused as error:
        raise ValueError(f"{path}: {error}") from None
    except OSError as error:
        raise OSError(f"{path}: cannot read the file ({error.strerror or error})") from None
    except Exception as error:  # a corrupt pickle can raise nearly any exception
        raise ValueError(f"{path}: not a readable .npy file "
                         f"({type(error).__name__}: {error})") from None


def _as_image(array, path):
    """A 2-D float32 image from a DeepLense array, or a ValueError saying why not."""
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{path}: not an image: dtype {array.dtype} (expected real numbers)")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]  # DeepLense's (1, ny, nx) single-channel images
    elif array.ndim != 2:
        raise ValueError(f"{path}: not an image: shape {array.shape} (expected (ny, nx) or "
                         "(1, ny, nx))")
    if array.size == 0:
        raise ValueError(f"{path}: not an image: shape {array.shape} is empty")
    image = array.astype(np.float32)
    if not np.isfinite(image).any():
        raise ValueError(f"{path}: not an image: no finite pixel (every pixel is NaN or "
                         "infinite)")
    return image


def _read_file(path):
    """``(image, axion_mass)`` of one DeepLense file; the mass is NaN when absent."""
    array = _load_npy(path)
    if array.dtype == np.dtype(object):  # [image, axion_mass], checked by _load_npy
        image, mass = array[0], array[1]
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            got = (f"an array of shape {image.shape}" if isinstance(image, np.ndarray)
                   else type(image).__name__)
            raise ValueError(f"{path}: not a DeepLense [image, axion_mass] file: element 0 "
                             f"is {got}, not a 2-D or 3-D image")
        if isinstance(mass, np.ndarray) and mass.ndim == 0:
            mass = mass[()]
        if isinstance(mass, (bool, np.bool_)) or not isinstance(mass, numbers.Real):
            raise ValueError(f"{path}: not a DeepLense [image, axion_mass] file: element 1 "
                             f"is {type(mass).__name__}, not a float (the axion mass in eV)")
        return _as_image(image, path), float(mass)
    return _as_image(array, path), float("nan")


def _read_stack(files):
    """The images of ``files`` as one (n, ny, nx) float32 array, and their masses."""
    first, mass = _read_file(files[0])
    # Filled in place: a list of images stacked at the end would double peak memory.
    images = np.empty((len(files),) + first.shape, np.float32)
    masses = np.full(len(files), np.nan)
    images[0], masses[0] = first, mass
    for i, path in enumerate(files[1:], start=1):
        image, masses[i] = _read_file(path)
        if image.shape != first.shape:
            raise ValueError(f"{path}: image shape {image.shape} differs from the shape "
                             f"{first.shape} of {files[0]}; all images must share one shape")
        images[i] = image
    return images, masses


# -- reading ------------------------------------------------------------------------------

def read_deeplense(folder, *, classes=None):
    """Read a published DeepLense dataset folder into an `xarray.Dataset`.

    Two layouts are recognised. A folder with ``HR/`` and ``LR/`` sub-folders is a
    super-resolution set whose ``.npy`` images are paired by file name; otherwise the
    folder holds one sub-folder per class (names in `CLASS_FOLDERS`: ``no_sub`` or
    ``no_substructure``; ``cdm`` or ``subhalo``; ``axion`` or ``vort``), each holding
    ``.npy`` images of shape ``(ny, nx)`` or ``(1, ny, nx)``, or DeepLense's axion
    files, 2-element object arrays ``[image, axion_mass]``.

    The axion files can only be read with ``pickle``, which can run arbitrary code
    while loading: only read folders that you trust (such as the archives published by
    DeepLense). Pickle is used only for files whose header declares an object array of
    exactly 2 elements; every other file is read with ``allow_pickle=False``, and
    other object arrays are refused.

    Parameters
    ----------
    folder : str or os.PathLike
        The dataset folder (the one holding the class folders, or ``HR/`` and ``LR/``).
    classes : str or sequence of str, optional
        Read only these classes (class names of `CLASSES` or folder names of
        `CLASS_FOLDERS`); each must have its folder. Default: every class folder found.
        Refused (ValueError) for the super-resolution layout.

    Returns
    -------
    xarray.Dataset
        Class layout: ``images`` (image, y, x), float32, with the coordinates ``class``
        (the class name), ``label`` (its index in `CLASSES`, whatever ``classes`` is),
        ``axion_mass`` (eV; NaN for files without one) and ``file`` (the path read).
        Classes come in `CLASSES` order, files sorted by name within a class.
        Super-resolution layout: ``hr`` (image, y_hr, x_hr) and ``lr`` (image, y, x),
        float32, with the coordinates ``name`` (the shared file name), ``hr_file`` and
        ``lr_file``. ``attrs``: ``layout`` (``"classes"`` or ``"super_resolution"``)
        and ``source`` (the folder).

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``folder`` does not exist or is a file; a class asked for has no folder.
    ValueError
        No class folder (the message lists what the folder holds and the accepted
        names); a class folder without ``.npy`` files; images of different shapes
        (naming the first file that differs); a file that is not an image or not a
        readable ``.npy``; an ``HR`` file without its ``LR`` partner (or the reverse).
        Every message starts with the folder or file concerned.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as root:
    ...     for cls in ("no_sub", "axion"):
    ...         (Path(root) / cls).mkdir()
    ...     np.save(Path(root) / "no_sub" / "a.npy", np.ones((1, 8, 8)))
    ...     np.save(Path(root) / "axion" / "b.npy",
    ...             np.array([np.zeros((8, 8)), 1e-23], dtype=object))
    ...     ds = read_deeplense(root)
    >>> ds["images"].shape, ds["class"].values.tolist(), ds["label"].values.tolist()
    ((2, 8, 8), ['no_sub', 'axion'], [0, 2])
    >>> ds["axion_mass"].values
    array([  nan, 1.e-23])
    """
    import xarray as xr

    folder = _check_folder(folder)
    if _is_sr_layout(folder):
        _no_classes_for_pairs(folder, classes)
        pairs = _sr_pairs(folder)
        hr, _ = _read_stack([h for h, _ in pairs])
        lr, _ = _read_stack([lr for _, lr in pairs])
        return xr.Dataset(
            {"hr": (("image", "y_hr", "x_hr"), hr), "lr": (("image", "y", "x"), lr)},
            coords={"image": np.arange(len(pairs)),
                    "name": ("image", np.array([h.name for h, _ in pairs], dtype=str)),
                    "hr_file": ("image", np.array([str(h) for h, _ in pairs], dtype=str)),
                    "lr_file": ("image", np.array([str(lr) for _, lr in pairs], dtype=str))},
            attrs={"layout": "super_resolution", "source": str(folder)})

    files, names = [], []
    for cls, sub in _class_folders(folder, classes):
        found = _npy_files(sub, f"class folder of {cls!r}")
        files += found
        names += [cls] * len(found)
    images, masses = _read_stack(files)
    mass_attrs = {"units": "eV", "long_name": "axion mass (NaN: none in the file)"}
    return xr.Dataset(
        {"images": (("image", "y", "x"), images)},
        coords={"image": np.arange(len(files)),
                "class": ("image", np.array(names, dtype=str)),
                "label": ("image", np.array([CLASSES.index(c) for c in names], np.int64)),
                "axion_mass": ("image", masses, mass_attrs),
                "file": ("image", np.array([str(p) for p in files], dtype=str))},
        attrs={"layout": "classes", "source": str(folder)})


# -- conversion to FITS ---------------------------------------------------------------------

def _fits_image(image, source, cards):
    from astropy import units as u
    from astropy.io import fits
    from astropy.nddata import CCDData

    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    header["DLSOURCE"] = (source.name, "DeepLense file converted")
    # DeepLense images carry no unit; "dimensionless" says so without a MissingUnitWarning
    # on every read.
    return CCDData(image, unit=u.dimensionless_unscaled, meta=header)


def convert_deeplense(folder, out_dir, *, classes=None, overwrite=False, progress=False):
    """Convert a DeepLense dataset folder into FITS images and a catalog.

    Every image becomes a FITS file (written atomically by `write_image`, unit
    dimensionless, the class, label, axion mass and source file name as header cards),
    and ``out_dir/catalog.ecsv`` lists them with paths relative to ``out_dir``, the
    catalog that ``lensenhance enhance --catalog`` reads. A file that cannot be read is
    reported in the result and the others are still converted; it has no catalog row.

    The axion files of the published sets are read with ``pickle``: only convert
    folders that you trust (see `read_deeplense`).

    Parameters
    ----------
    folder : str or os.PathLike
        A DeepLense dataset folder, in either layout of `read_deeplense`.
    out_dir : str or os.PathLike
        Output folder (created). Class layout: ``<class>/<name>.fits`` and a catalog
        with the columns ``path``, ``class``, ``label``, ``axion_mass`` (eV, NaN when
        absent) and ``source_file``. Super-resolution layout: ``lr/<name>.fits`` and
        ``hr/<name>.fits`` and a catalog with ``path`` (the LR image, the input of
        ``enhance``), ``lr_path``, ``hr_path`` (the truth of ``evaluate``),
        ``lr_file`` and ``hr_file``.
    classes : str or sequence of str, optional
        As for `read_deeplense`.
    overwrite : bool, optional
        Replace existing files. Default False: when the catalog or any FITS target
        exists, FileExistsError is raised before anything is written.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    dict
        ``catalog`` (its path, or None when no image could be converted), ``layout``,
        ``n`` (files or pairs found), ``ok`` (images converted) and ``failures``
        (source file -> reason, each reason starting with the file's path).

    Raises
    ------
    FileNotFoundError, NotADirectoryError, ValueError
        As for `read_deeplense`, for the layout (not for single files, which are
        reported in ``failures``).
    FileExistsError
        An output exists and ``overwrite`` is False.
    RunFolderError
        ``out_dir`` cannot be a folder.
    """
    from astropy import units as u
    from astropy.table import Table
    from tqdm.auto import tqdm

    from .._runfolder import check_output_folder
    from .catalogs import write_catalog
    from .images import write_image

    folder = _check_folder(folder)
    out_dir = Path(out_dir).expanduser()
    if _is_sr_layout(folder):
        _no_classes_for_pairs(folder, classes)
        layout = "super_resolution"
        jobs = [{"hr": hr, "lr": lr, "name": hr.name[:-len(".npy")]}
                for hr, lr in _sr_pairs(folder)]
        for job in jobs:
            job["targets"] = {k: Path(k) / f"{job['name']}.fits" for k in ("lr", "hr")}
    else:
        layout = "classes"
        jobs = [{"class": cls, "file": path,
                 "targets": {"image": Path(cls) / f"{path.name[:-len('.npy')]}.fits"}}
                for cls, sub in _class_folders(folder, classes)
                for path in _npy_files(sub, f"class folder of {cls!r}")]

    check_output_folder(out_dir, create=False)
    catalog = out_dir / CATALOG_NAME
    if not overwrite:
        existing = [p for p in [catalog] + [out_dir / t for job in jobs
                                            for t in job["targets"].values()] if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists ({len(existing)} target file(s) "
                                  "exist); pass overwrite=True to replace them")
    check_output_folder(out_dir)
    for sub in {t.parent for job in jobs for t in job["targets"].values()}:
        (out_dir / sub).mkdir(exist_ok=True)

    rows, failures = [], {}
    for job in tqdm(jobs, desc="convert", unit="img", disable=not progress):
        source = job.get("file", job.get("hr"))
        try:
            if layout == "classes":
                image, mass = _read_file(source)
                cards = {"DLCLASS": (job["class"], "DeepLense class"),
                         "DLLABEL": (CLASSES.index(job["class"]), "index in no_sub,cdm,axion")}
                if np.isfinite(mass):  # FITS cannot hold NaN: no card when no mass
                    cards["AXMASS"] = (mass, "[eV] axion mass")
                write_image(_fits_image(image, source, cards),
                            out_dir / job["targets"]["image"], overwrite=overwrite,
                            history="lensenhance convert deeplense")
                rows.append({"path": job["targets"]["image"].as_posix(),
                             "class": job["class"], "label": CLASSES.index(job["class"]),
                             "axion_mass": mass, "source_file": str(source.resolve())})
            else:
                # Both read before either is written: no half-converted pair.
                hr, _ = _read_file(job["hr"])
                source = job["lr"]
                lr, _ = _read_file(job["lr"])
                for key, image in (("hr", hr), ("lr", lr)):
                    source = job[key]
                    write_image(_fits_image(image, source, {}),
                                out_dir / job["targets"][key], overwrite=overwrite,
                                history="lensenhance convert deeplense")
                rows.append({"path": job["targets"]["lr"].as_posix(),
                             "lr_path": job["targets"]["lr"].as_posix(),
                             "hr_path": job["targets"]["hr"].as_posix(),
                             "lr_file": str(job["lr"].resolve()),
                             "hr_file": str(job["hr"].resolve())})
        except (OSError, ValueError, TypeError) as error:
            text = str(error)
            failures[str(source)] = text if text.startswith(str(source)) else f"{source}: {text}"

    written = None
    if rows:
        table = Table(rows=rows, names=list(rows[0]))
        if layout == "classes":
            table["axion_mass"].unit = u.eV
            table["label"].description = f"index in {', '.join(CLASSES)}"
        table.meta.update({"source": str(folder.resolve()), "layout": layout})
        write_catalog(table, catalog, overwrite=overwrite)
        written = catalog
    return {"catalog": written, "layout": layout, "n": len(jobs), "ok": len(rows),
            "failures": failures}
