"""xarray: image stacks as DataArrays, and datasets saved to netCDF or zarr (atomic)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u

from .._atomic import atomic_target
from ._common import MissingUnitWarning, _json_default
from .images import _make_ccd, read_image
from .wcs import _wcs_from_string, _wcs_to_string

_JSON_ATTRS_KEY = "lensenhance_json_attrs"


def to_dataarray(images, *, name="data", unit=None, dtype=np.float32):
    """Stack images into an `xarray.DataArray` with dims ``(image, y, x)``.

    Parameters
    ----------
    images : list, 3-D array or single image
        A list of anything `read_image` accepts, a 3-D ndarray or Quantity (one image
        per first-axis slice), or one 2-D image. All must share shape and unit.
    name : str, optional
        Name of the DataArray (not ``"image"``, the name of its first dimension, which
        xarray would refuse as a variable name in a Dataset).
    unit : str or `~astropy.units.Unit`, optional
        Passed to `read_image` for every image.
    dtype : {numpy.float32, numpy.float64, None}, optional
        Passed to `read_image`: None keeps float64 data as float64.

    Returns
    -------
    da : `xarray.DataArray`
        float32 data (unless ``dtype``); masked pixels are NaN (a DataArray has no mask;
        `from_dataarray` masks non-finite pixels again). Uncertainties are not carried.
        ``attrs["unit"]`` is the unit string and ``attrs["wcs"]`` the WCS header (as
        text) of the first image when it has one; when the images have different WCSs,
        a string coordinate ``wcs`` along ``image`` holds each header. Coordinates:
        ``image`` (index) and ``object`` (``meta['OBJECT']``) when an image has one.

    Raises
    ------
    ValueError
        No images, or images of different shape or unit.
    """
    import xarray as xr

    if isinstance(images, np.ndarray) and images.ndim == 3:
        if isinstance(images, u.Quantity):
            unit = images.unit if unit is None else u.Unit(unit)
            images = images.to_value(unit)
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) == 0:
        raise ValueError("to_dataarray: no images given")
    if unit is None and all(isinstance(im, np.ndarray) and not isinstance(im, u.Quantity)
                            for im in images):
        # One warning for the whole stack instead of one per image.
        warnings.warn("to_dataarray: plain arrays without unit=; taking them as dimensionless",
                      MissingUnitWarning, stacklevel=2)
        unit = u.dimensionless_unscaled
    ccds = [read_image(im, unit=unit, dtype=dtype) for im in images]

    first = ccds[0]
    for i, ccd in enumerate(ccds[1:], start=1):
        if ccd.shape != first.shape:
            raise ValueError(f"to_dataarray: image {i} has shape {ccd.shape}, image 0 "
                             f"{first.shape}")
        if ccd.unit != first.unit:
            raise ValueError(f"to_dataarray: image {i} has unit {ccd.unit}, image 0 "
                             f"{first.unit}")

    data = np.stack([np.where(ccd.mask, np.float32(np.nan), ccd.data) if ccd.mask is not None
                     else ccd.data for ccd in ccds])
    coords = {"image": np.arange(len(ccds))}
    objects = [str(ccd.meta.get("OBJECT", "")) for ccd in ccds]
    if any(objects):
        coords["object"] = ("image", np.array(objects, dtype=str))
    attrs = {"unit": first.unit.to_string()}
    headers = ["" if ccd.wcs is None else _wcs_to_string(ccd.wcs) for ccd in ccds]
    if headers[0]:
        attrs["wcs"] = headers[0]
    if len(set(headers)) > 1:
        coords["wcs"] = ("image", np.array(headers, dtype=str))
    return xr.DataArray(data, dims=("image", "y", "x"), coords=coords, name=name, attrs=attrs)


def from_dataarray(da, *, dtype=np.float32):
    """Split a DataArray made by `to_dataarray` back into CCDData images.

    Parameters
    ----------
    da : `xarray.DataArray`
        Dims ``(image, y, x)`` (any names; the first is the image axis) or ``(y, x)``.
    dtype : {numpy.float32, numpy.float64, None}, optional
        As for `read_image`: None keeps float64 data as float64.

    Returns
    -------
    images : list of `~astropy.nddata.CCDData`
        One per image, with unit and WCS from the attrs (or the ``wcs`` coordinate),
        a mask where the data are not finite, and ``meta['OBJECT']`` from the
        ``object`` coordinate; other 1-D coordinates along the image axis go into
        ``meta`` under their own names.
    """
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise TypeError(f"from_dataarray: expected an xarray.DataArray, got {type(da).__name__}")
    if da.ndim == 2:
        da = da.expand_dims("image")
    if da.ndim != 3:
        raise ValueError(f"from_dataarray: expected dims (image, y, x), got {da.dims}")
    name = f"DataArray {da.name!r}"
    image_dim = da.dims[0]
    if "unit" in da.attrs:
        unit = u.Unit(da.attrs["unit"])
    else:
        warnings.warn(f"{name}: no 'unit' attribute; taking the data as dimensionless",
                      MissingUnitWarning, stacklevel=2)
        unit = u.dimensionless_unscaled
    data = np.asarray(da.values)
    per_image = {
        key: np.asarray(coord.values)
        for key, coord in da.coords.items()
        if coord.dims == (image_dim,) and key not in (image_dim, "wcs")
    }
    shared_wcs = da.attrs.get("wcs") or ""
    headers = da.coords["wcs"].values if "wcs" in da.coords else [shared_wcs] * len(data)

    out = []
    for i, image in enumerate(data):
        meta = {}
        for key, values in per_image.items():
            value = values[i].item() if hasattr(values[i], "item") else values[i]
            if value != "":
                meta["OBJECT" if key == "object" else key] = value
        bad = ~np.isfinite(image)
        wcs = _wcs_from_string(str(headers[i]), name) if str(headers[i]) else None
        out.append(_make_ccd(image, name=f"{name}[{i}]", unit=unit, wcs=wcs, meta=meta,
                             mask=bad if bad.any() else None, dtype=dtype))
    return out


def _dataset_engine(path):
    suffix = Path(path).suffix.lower()
    if suffix in (".nc", ".nc4"):
        return "h5netcdf"
    if suffix == ".zarr":
        return "zarr"
    raise ValueError(f"{path}: unknown dataset format; use a .nc (netCDF) or .zarr path")


def _encode_attrs(attrs, where):
    """Attrs that netCDF and zarr can store: other values become JSON strings."""

    def native(value):
        if isinstance(value, (bool, np.bool_)):
            return False
        if isinstance(value, (str, int, float, np.integer, np.floating)):
            return True
        return (isinstance(value, np.ndarray) and value.ndim == 1
                and value.dtype.kind in "iuf")

    encoded, as_json = {}, []
    for key, value in attrs.items():
        if native(value):
            encoded[key] = value
            continue
        try:
            encoded[key] = json.dumps(value, default=_json_default)
        except TypeError as exc:
            raise TypeError(f"{where}: attribute {key!r} cannot be stored ({exc})") from None
        as_json.append(key)
    if as_json:
        encoded[_JSON_ATTRS_KEY] = json.dumps(as_json)
    return encoded




def _decode_attrs(attrs):
    attrs = dict(attrs)
    keys = json.loads(attrs.pop(_JSON_ATTRS_KEY, "[]"))
    for key in keys:
        attrs[key] = json.loads(attrs[key])
    return attrs


def write_dataset(ds, path, *, overwrite=False):
    """Save an xarray Dataset (or DataArray) to netCDF (``.nc``) or zarr (``.zarr``).

    The write is atomic (temporary file or folder, then rename). Attributes that the
    formats cannot hold (dicts, lists, booleans, None) are stored as JSON and restored
    by `read_dataset`.

    Parameters
    ----------
    ds : `xarray.Dataset` or `xarray.DataArray`
        The data; a DataArray is saved as a Dataset with one variable named after it
        (``"data"`` when unnamed).
    path : str or os.PathLike
        ``.nc`` for netCDF-4 (engine h5netcdf), ``.zarr`` for a zarr store (a folder).
    overwrite : bool, optional
        Replace an existing file or store. Default False.
    """
    import xarray as xr

    if isinstance(ds, xr.DataArray):
        ds = ds.to_dataset(name=ds.name or "data")
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"write_dataset: expected an xarray Dataset, got {type(ds).__name__}")
    path = Path(path)
    engine = _dataset_engine(path)
    ds = ds.copy(deep=False)
    ds.attrs = _encode_attrs(ds.attrs, str(path))
    for key, variable in ds.variables.items():
        variable.attrs = _encode_attrs(variable.attrs, f"{path}: variable {key!r}")
    with atomic_target(path, overwrite=overwrite, directory=engine == "zarr") as tmp:
        if engine == "zarr":
            ds.to_zarr(tmp, mode="w", consolidated=False, zarr_format=2)
        else:
            ds.to_netcdf(tmp, engine=engine)


def read_dataset(path, *, chunks="auto"):
    """Open a dataset saved by `write_dataset`, lazily (dask-backed).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nc`` file or a ``.zarr`` store.
    chunks : str, int, dict or None, optional
        Dask chunks (``"auto"`` by default); None loads numpy arrays lazily without dask.

    Returns
    -------
    ds : `xarray.Dataset`
        With the attributes as they were saved. Close it (or use it in a ``with``
        block) to release a netCDF file.
    """
    import xarray as xr

    path = Path(path)
    engine = _dataset_engine(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset")
    if engine == "h5netcdf" and path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a netCDF file")
    try:
        if engine == "zarr":
            ds = xr.open_dataset(path, engine="zarr", chunks=chunks, consolidated=False)
        else:
            ds = xr.open_dataset(path, engine=engine, chunks=chunks)
    except (OSError, ValueError) as exc:
        raise OSError(f"{path}: cannot open the dataset ({exc})") from None
    ds.attrs = _decode_attrs(ds.attrs)
    for variable in ds.variables.values():
        variable.attrs = _decode_attrs(variable.attrs)
    return ds


def save_dataset(ds, path, *, overwrite=False):
    """Deprecated: `write_dataset` (this name shadowed ``xarray.save_dataset``-like names)."""
    warnings.warn("lensenhance's save_dataset is deprecated; use write_dataset (the same "
                  "function)", DeprecationWarning, stacklevel=2)
    return write_dataset(ds, path, overwrite=overwrite)


def open_dataset(path, *, chunks="auto"):
    """Deprecated: `read_dataset` (this name shadowed ``xarray.open_dataset``)."""
    warnings.warn("lensenhance's open_dataset is deprecated (it shadowed "
                  "xarray.open_dataset); use read_dataset (the same function)",
                  DeprecationWarning, stacklevel=2)
    return read_dataset(path, chunks=chunks)
