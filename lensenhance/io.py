"""Reading and writing images, catalogs and datasets, and resampling their WCS.

This module is the astropy side of lensenhance: every image that enters the package
goes through `read_image`, which returns a `~astropy.nddata.CCDData` with float32
data, a unit, a celestial 2-D WCS (or None), and mask and uncertainty when known.

File layout written by `write_image` (the one `CCDData.write` also uses)::

    HDU 0  PRIMARY  science image, header + WCS + BUNIT, HISTORY cards
    HDU 1  MASK     uint8, 1 = masked            (only when the image has a mask)
    HDU 2  UNCERT   standard deviation, UTYPE    (only when it has an uncertainty)

so that ``astropy.io.fits.getdata(path)`` and DS9 show the science image.

Every writer here is atomic: it writes a temporary file (or folder) next to the
target, syncs it to disk and moves it into place with `os.replace`, so a failed or
interrupted write never leaves a partial file; nothing is overwritten unless
``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, StdDevUncertainty
from astropy.table import Column, MaskedColumn, Table
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning, Sip

from ._atomic import atomic_target

__all__ = [
    "MissingUnitWarning",
    "WCSResampleWarning",
    "read_image",
    "write_image",
    "read_catalog",
    "write_catalog",
    "to_dataarray",
    "from_dataarray",
    "save_dataset",
    "open_dataset",
    "upsample_wcs",
    "downsample_wcs",
    "describe_image",
]

MASK_EXTNAME = "MASK"
UNCERT_EXTNAME = "UNCERT"
SCI_EXTNAME = "SCI"
_UNCERTAINTY_KEY = "UTYPE"

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)

# Header keywords that describe the array layout or the primary celestial WCS. They are
# removed from CCDData.meta on reading because the CCDData carries them itself (shape,
# ``wcs``, ``unit``); left in meta they would go stale once the image is resampled.
_LAYOUT_KEYS = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|EXTNAME|EXTVER|"
    r"BZERO|BSCALE|BUNIT|BLANK|CHECKSUM|DATASUM)$"
)
_WCS_KEYS = re.compile(
    r"^(WCSAXES|WCSNAME|RADESYS|RADECSYS|EQUINOX|EPOCH|LONPOLE|LATPOLE|MJDREF|"
    r"(CRPIX|CRVAL|CDELT|CTYPE|CUNIT|CROTA)\d+|(CD|PC|PV|PS)\d+_\d+|"
    r"(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+))$"
)

# Catalog suffixes and the astropy.table format that reads them.
_CATALOG_FORMATS = {
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".fit.gz": "fits",
}
_JSON_ATTRS_KEY = "lensenhance_json_attrs"


class MissingUnitWarning(AstropyUserWarning):
    """The image has no unit (no BUNIT, no ``unit=``); it is taken as dimensionless."""


class WCSResampleWarning(AstropyWarning):
    """A part of a WCS that cannot be resampled exactly was dropped."""


def _check_readable_file(path, what="file"):
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


# --------------------------------------------------------------------------------------
# read_image / write_image
# --------------------------------------------------------------------------------------


def read_image(source, *, hdu=None, unit=None):
    """Read an image from any FITS-like or array-like source into a CCDData.

    Parameters
    ----------
    source : str, os.PathLike, HDUList, HDU, NDData, tuple, Quantity or ndarray
        A path to a FITS file; an `~astropy.io.fits.HDUList`; a ``PrimaryHDU``,
        ``ImageHDU`` or ``CompImageHDU``; an `~astropy.nddata.NDData` or
        `~astropy.nddata.CCDData` (copied); a tuple ``(array, header)`` or
        ``(array, wcs)``; a `~astropy.units.Quantity`; or a plain array.
    hdu : int or str, optional
        The HDU to read from a file or HDUList, by index or EXTNAME. By default the
        first HDU that holds a 2-D image (MASK and UNCERT extensions excepted).
    unit : str or `~astropy.units.Unit`, optional
        Unit of the data. It replaces the unit stored with the source (BUNIT,
        ``NDData.unit``); a Quantity is converted to it.

    Returns
    -------
    ccd : `~astropy.nddata.CCDData`
        float32 data (always a copy) with its unit; ``wcs`` is the celestial 2-D WCS
        of the source or None; ``mask`` (bool) and ``uncertainty``
        (`~astropy.nddata.StdDevUncertainty`) come from the source, or, for a FITS
        file whose image is the primary HDU or an extension named SCI, from its MASK
        and UNCERT extensions (the layout of `write_image`). ``meta`` holds the header
        without its layout and WCS keywords.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        The path does not exist or is a folder.
    OSError
        The file is not FITS, or is truncated or corrupt.
    KeyError
        ``hdu`` names no HDU of the file.
    ValueError
        The chosen HDU holds no image, or the image is not 2-D (leading axes of length
        1 are dropped), or it is empty.
    TypeError
        The source is of no supported type.

    Warns
    -----
    MissingUnitWarning
        Neither the source nor ``unit=`` gives a unit: the data are taken as
        dimensionless.
    """
    unit = None if unit is None else u.Unit(unit)
    if isinstance(source, (str, os.PathLike)):
        return _read_fits_file(source, hdu=hdu, unit=unit)
    name = _describe(source)
    if hdu is not None and not isinstance(source, fits.HDUList):
        raise ValueError(f"{name}: hdu={hdu!r} applies only to FITS files and HDULists")
    if isinstance(source, fits.HDUList):
        return _from_hdulist(source, hdu=hdu, unit=unit, name=name)
    if isinstance(source, _IMAGE_HDUS):
        return _from_hdu(source, unit=unit, name=name)
    if isinstance(source, NDData):
        return _from_nddata(source, unit=unit, name=name)
    if isinstance(source, tuple):
        return _from_tuple(source, unit=unit, name=name)
    if isinstance(source, u.Quantity):
        data = source.value if unit is None else source.to_value(unit)
        return _make_ccd(data, name=name, unit=source.unit if unit is None else unit)
    if isinstance(source, (np.ndarray, list)):
        return _make_ccd(source, name=name, unit=unit)
    raise TypeError(
        f"read_image: unsupported source of type {type(source).__name__}; expected a path, "
        "an HDUList or image HDU, NDData/CCDData, (array, header), (array, WCS), a Quantity "
        "or an ndarray"
    )


def _describe(source):
    """A short name of a source for error messages."""
    if isinstance(source, fits.HDUList):
        filename = source.filename()
        return f"HDUList({filename})" if filename else "HDUList"
    if isinstance(source, _IMAGE_HDUS):
        return f"{type(source).__name__} {source.name!r}"
    if isinstance(source, np.ndarray):
        return f"{type(source).__name__} of shape {source.shape}"
    return type(source).__name__


def _read_fits_file(path, *, hdu, unit):
    path = _check_readable_file(path, "FITS file")
    try:
        hdul = fits.open(path)
        hdul.verify("silentfix+ignore")
    except (OSError, ValueError, TypeError) as exc:
        # Replace astropy's deep traceback by one line naming the file.
        raise OSError(f"{path}: not a readable FITS file ({exc})") from None
    with hdul:
        return _from_hdulist(hdul, hdu=hdu, unit=unit, name=str(path))


def _hdu_label(index, hdu):
    kind = "image" if hdu.is_image else "table"
    shape = "x".join(str(n) for n in getattr(hdu, "shape", ())) or "no data"
    return f"{index} {hdu.name!r} ({kind} {shape})"


def _hdu_summary(hdul):
    return "; ".join(_hdu_label(i, h) for i, h in enumerate(hdul))


def _image_ndim(shape):
    """Number of axes once the leading axes of length 1 are dropped."""
    shape = list(shape)
    while len(shape) > 2 and shape[0] == 1:
        shape.pop(0)
    return len(shape)


def _is_default_image(hdu):
    shape = getattr(hdu, "shape", ())
    return (hdu.is_image and hdu.name not in (MASK_EXTNAME, UNCERT_EXTNAME)
            and _image_ndim(shape) == 2 and 0 not in shape)


def _from_hdulist(hdul, *, hdu, unit, name):
    if len(hdul) == 0:
        raise ValueError(f"{name}: holds no HDU")
    if hdu is None:
        index = next((i for i, h in enumerate(hdul) if _is_default_image(h)), None)
        if index is None:
            raise ValueError(f"{name}: no HDU holds a 2-D image; HDUs: {_hdu_summary(hdul)}")
        science = hdul[index]
    else:
        try:
            science = hdul[hdu]
        except (KeyError, IndexError):
            raise KeyError(
                f"{name}: no HDU {hdu!r}; available: {_hdu_summary(hdul)}"
            ) from None
        index = hdul.index(science)
    if not isinstance(science, _IMAGE_HDUS):
        raise ValueError(f"{name}: HDU {_hdu_label(index, science)} holds no image data")

    # MASK and UNCERT belong to the image only in the layout write_image produces.
    mask = uncertainty = None
    if index == 0 or science.name == SCI_EXTNAME:
        if MASK_EXTNAME in hdul and science.name != MASK_EXTNAME:
            mask = _hdu_data(hdul[MASK_EXTNAME], name) != 0
        if UNCERT_EXTNAME in hdul and science.name != UNCERT_EXTNAME:
            uncertainty = _uncertainty_from_hdu(hdul[UNCERT_EXTNAME], name)
    return _from_hdu(science, unit=unit, name=name, mask=mask, uncertainty=uncertainty,
                     fobj=hdul)


def _hdu_data(hdu, name):
    try:
        data = hdu.data
    except (OSError, ValueError, TypeError) as exc:
        raise OSError(
            f"{name}: cannot read the data of HDU {hdu.name!r}; the file is truncated or "
            f"corrupt ({exc})"
        ) from None
    if data is None:
        raise ValueError(f"{name}: HDU {hdu.name!r} holds no image data")
    return data


def _uncertainty_from_hdu(hdu, name):
    from astropy.nddata import InverseVariance, VarianceUncertainty

    kinds = {
        cls.__name__: cls for cls in (StdDevUncertainty, VarianceUncertainty, InverseVariance)
    }
    # Files without UTYPE (older CCDData writers) hold a standard deviation.
    kind = hdu.header.get(_UNCERTAINTY_KEY, StdDevUncertainty.__name__)
    if kind not in kinds:
        raise ValueError(
            f"{name}: unknown uncertainty type {_UNCERTAINTY_KEY}={kind!r} in HDU "
            f"{hdu.name!r}; expected one of {sorted(kinds)}"
        )
    return kinds[kind](_hdu_data(hdu, name)).represent_as(StdDevUncertainty).array


def _from_hdu(hdu, *, unit, name, mask=None, uncertainty=None, fobj=None):
    data = _hdu_data(hdu, name)
    header = hdu.header
    wcs = _wcs_from_header(header, name, fobj=fobj)
    return _make_ccd(
        data,
        name=name,
        unit=_unit_from_header(header, name) if unit is None else unit,
        wcs=wcs,
        meta=_clean_header(header, strip_wcs=wcs is not None),
        mask=mask,
        uncertainty=uncertainty,
    )


def _from_tuple(source, *, unit, name):
    if len(source) != 2 or not isinstance(source[1], (fits.Header, WCS)):
        raise TypeError(
            f"read_image: a tuple source must be (array, Header) or (array, WCS), got "
            f"({', '.join(type(item).__name__ for item in source)})"
        )
    array, second = source
    if isinstance(array, u.Quantity):
        unit = array.unit if unit is None else unit
        array = array.to_value(unit)
    if isinstance(second, fits.Header):
        wcs = _wcs_from_header(second, name)
        return _make_ccd(
            array,
            name=name,
            unit=_unit_from_header(second, name) if unit is None else unit,
            wcs=wcs,
            meta=_clean_header(second, strip_wcs=wcs is not None),
        )
    return _make_ccd(array, name=name, unit=unit, wcs=_checked_wcs(second, name))


def _from_nddata(nd, *, unit, name):
    uncertainty = None
    if nd.uncertainty is not None:
        try:
            std = nd.uncertainty.represent_as(StdDevUncertainty)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"{name}: cannot express its {type(nd.uncertainty).__name__} as a standard "
                f"deviation ({exc})"
            ) from None
        uncertainty = std.array
        if std.unit is not None and nd.unit is not None:
            uncertainty = std.quantity.to_value(nd.unit)
    meta = nd.meta.copy() if hasattr(nd.meta, "copy") else dict(nd.meta)
    return _make_ccd(
        nd.data,
        name=name,
        unit=nd.unit if unit is None else unit,
        wcs=None if nd.wcs is None else _checked_wcs(nd.wcs, name),
        meta=meta,
        mask=nd.mask,
        uncertainty=uncertainty,
    )


def _squeeze_leading(array):
    array = np.asanyarray(array)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def _make_ccd(data, *, name, unit=None, wcs=None, meta=None, mask=None, uncertainty=None):
    """Validate shapes and build the CCDData; the single place every source ends in."""
    data = _squeeze_leading(data)
    if data.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D image, got {data.ndim}-D data of shape "
                         f"{data.shape}")
    if data.size == 0:
        raise ValueError(f"{name}: the image is empty (shape {data.shape})")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise TypeError(f"{name}: image data of dtype {data.dtype} is not numeric")
    if np.iscomplexobj(data):
        raise TypeError(f"{name}: complex image data are not supported")
    data = np.array(data, dtype=np.float32)  # always a copy: files close, callers mutate

    if mask is not None:
        mask = np.array(_squeeze_leading(mask), dtype=bool)
        if mask.shape == ():
            mask = np.full(data.shape, bool(mask))
        _check_same_shape(mask, data, "mask", name)
    if uncertainty is not None:
        uncertainty = np.array(_squeeze_leading(uncertainty), dtype=np.float32)
        _check_same_shape(uncertainty, data, "uncertainty", name)
        uncertainty = StdDevUncertainty(uncertainty)

    if unit is None:
        warnings.warn(
            f"{name}: no unit (no BUNIT, no unit=); taking the data as dimensionless",
            MissingUnitWarning,
            stacklevel=4,
        )
        unit = u.dimensionless_unscaled
    if wcs is not None:
        wcs.pixel_shape = data.shape[::-1]
    return CCDData(
        data, unit=unit, wcs=wcs, meta=meta, mask=mask, uncertainty=uncertainty, copy=False
    )


def _check_same_shape(array, data, what, name):
    if array.shape != data.shape:
        raise ValueError(
            f"{name}: the {what} has shape {array.shape}, the image {data.shape}"
        )


def _unit_from_header(header, name):
    if "BUNIT" not in header:
        return None
    bunit = str(header["BUNIT"]).strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        unit = u.Unit(bunit, parse_strict="silent")
        if isinstance(unit, u.UnrecognizedUnit):
            unit = u.Unit(bunit, format="fits", parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        warnings.warn(f"{name}: BUNIT={bunit!r} is not a unit astropy knows; kept as is",
                      u.UnitsWarning, stacklevel=5)
    return unit


def _wcs_from_header(header, name, *, fobj=None):
    """The celestial 2-D WCS of a header, or None when it has none."""
    try:
        with warnings.catch_warnings():
            # wcslib's notes on header fixes (dates, units) are not the user's concern.
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, fobj=fobj if isinstance(fobj, fits.HDUList) else None)
    except Exception as exc:  # wcslib raises many types for broken headers
        warnings.warn(f"{name}: ignoring an unreadable WCS ({exc})", AstropyUserWarning,
                      stacklevel=5)
        return None
    if not wcs.has_celestial:
        return None
    if wcs.naxis > 2:
        # Only the celestial pair on the two image axes survives dropping length-1 axes.
        if sorted((wcs.wcs.lng, wcs.wcs.lat)) != [0, 1]:
            return None
        wcs = wcs.celestial
    return wcs


def _checked_wcs(wcs, name):
    """A copy of a user-given WCS, which must be 2-D and celestial."""
    if not isinstance(wcs, WCS):
        raise TypeError(f"{name}: the WCS must be an astropy.wcs.WCS, got {type(wcs).__name__}")
    if wcs.naxis != 2 or not wcs.has_celestial:
        raise ValueError(
            f"{name}: the WCS must be 2-D and celestial, got {wcs.naxis} axes of types "
            f"{list(wcs.wcs.ctype)}"
        )
    return wcs.deepcopy()


def _clean_header(header, *, strip_wcs):
    """Copy of a header without layout keywords (and WCS keywords when a WCS is kept)."""
    header = header.copy()
    for key in list(dict.fromkeys(header.keys())):
        if _LAYOUT_KEYS.match(key) or (strip_wcs and _WCS_KEYS.match(key)):
            del header[key]
    return header


def write_image(ccd, path, *, overwrite=False, history=None):
    """Write an image with its WCS, unit, mask and uncertainty to a FITS file, atomically.

    The science image goes in the primary HDU (header, WCS and BUNIT), the mask in a
    uint8 extension MASK and the standard-deviation uncertainty in an extension UNCERT
    (with UTYPE); `read_image` and ``CCDData.read`` read the file back.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData` or `~astropy.nddata.NDData`
        The image. An NDData without a unit is written without BUNIT.
    path : str or os.PathLike
        The FITS file to write (``.fits``, ``.fits.gz`` ...).
    overwrite : bool, optional
        Replace an existing file. Default False.
    history : str or list of str, optional
        HISTORY cards to add after those of ``ccd.meta['HISTORY']``.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    TypeError
        ``ccd`` is not NDData, or its data are not real numbers.
    """
    if not isinstance(ccd, NDData):
        raise TypeError(f"write_image: expected CCDData or NDData, got {type(ccd).__name__}")
    path = Path(path)
    if np.asarray(ccd.data).dtype.kind not in "biuf":
        raise TypeError(f"{path}: FITS cannot hold image data of dtype {ccd.data.dtype}")
    hdul = _to_hdulist(ccd, history=history, name=str(path))
    with atomic_target(path, overwrite=overwrite) as tmp:
        hdul.writeto(tmp, overwrite=True, output_verify="exception")


def _to_hdulist(ccd, *, history, name):
    header = _meta_to_header(ccd.meta)
    wcs = ccd.wcs
    if wcs is not None and not isinstance(wcs, WCS):
        raise TypeError(f"{name}: the WCS must be an astropy.wcs.WCS, got {type(wcs).__name__}")
    for key in list(dict.fromkeys(header.keys())):
        # Layout keywords (BZERO, NAXISn ...) would rescale or reshape the data; stale WCS
        # keywords would override the WCS. BUNIT stays only when the unit is unknown.
        stale_layout = _LAYOUT_KEYS.match(key) and not (key == "BUNIT" and ccd.unit is None)
        if stale_layout or (wcs is not None and _WCS_KEYS.match(key)):
            del header[key]
    unit = ccd.unit if ccd.unit is not None else u.dimensionless_unscaled
    uncertainty = ccd.uncertainty
    if uncertainty is not None and not isinstance(uncertainty, StdDevUncertainty):
        uncertainty = uncertainty.represent_as(StdDevUncertainty)
    out = CCDData(ccd.data, unit=unit, wcs=wcs, meta=header, mask=ccd.mask,
                  uncertainty=uncertainty, copy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        hdul = out.to_hdu(hdu_mask=MASK_EXTNAME, hdu_uncertainty=UNCERT_EXTNAME, wcs_relax=True)
    primary = hdul[0].header
    if ccd.unit is not None and unit == u.dimensionless_unscaled:
        # An empty BUNIT says "dimensionless" (read back without MissingUnitWarning);
        # a missing BUNIT says "unknown".
        primary["BUNIT"] = ("", "dimensionless")
    for line in [history] if isinstance(history, str) else (history or []):
        primary.add_history(str(line))
    return hdul


def _meta_to_header(meta):
    if isinstance(meta, fits.Header):
        return meta.copy()
    header = fits.Header()
    for key, value in (meta or {}).items():
        commentary = {"HISTORY": header.add_history, "COMMENT": header.add_comment}
        if str(key).upper() in commentary:
            for line in [value] if isinstance(value, str) else value:
                commentary[str(key).upper()](str(line))
            continue
        with warnings.catch_warnings():
            # Keys longer than 8 characters become HIERARCH cards, as intended.
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            try:
                header[key] = value
            except (ValueError, TypeError):
                # Values FITS cannot hold (dicts, lists) are kept as JSON text.
                header[key] = json.dumps(value, default=_json_default)
    return header


# --------------------------------------------------------------------------------------
# Catalogs
# --------------------------------------------------------------------------------------


def _catalog_format(path):
    name = Path(path).name.lower()
    for suffix, fmt in sorted(_CATALOG_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ValueError(
        f"{path}: unknown catalog format; use one of {', '.join(_CATALOG_FORMATS)}"
    )


def _path_column_names(table, path_columns):
    """Names of the path columns: those listed that exist, and any ending in ``_path``."""
    if isinstance(path_columns, str):
        path_columns = (path_columns,)
    names = [name for name in path_columns if name in table.colnames]
    return names + [n for n in table.colnames if n.endswith("_path") and n not in names]


def _map_path_column(column, func):
    """A copy of a string column with func applied to its non-empty, unmasked entries."""
    mask = np.ma.getmaskarray(column)
    values = []
    for i, value in enumerate(column):
        if mask[i]:
            values.append("")
            continue
        value = value.decode() if isinstance(value, bytes) else str(value)
        values.append(func(i, value) if value.strip() else value)
    if mask.any():
        return MaskedColumn(values, name=column.name, mask=mask, dtype=str)
    return Column(values, name=column.name, dtype=str)


def read_catalog(path, *, path_columns=("path",), allow_outside=False):
    """Read a catalog of images (ECSV or FITS table) with its paths made absolute.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.ecsv``, ``.fits``, ``.fit`` or ``.fits.gz`` table.
    path_columns : sequence of str, optional
        Columns that hold file paths (those that exist are used); columns whose name
        ends in ``_path`` (``lr_path``, ``hr_path`` ...) are path columns too.
    allow_outside : bool, optional
        Accept paths that resolve outside the catalog's folder. Default False: a
        catalog cannot point at arbitrary files through ``..``, absolute paths or
        symbolic links.

    Returns
    -------
    table : `~astropy.table.Table`
        The catalog; relative paths are resolved against the catalog's folder and every
        path is absolute, with symbolic links resolved.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        ``path`` does not exist or is a folder.
    OSError
        The file cannot be parsed as a table.
    ValueError
        Unknown suffix, or a path leaves the catalog's folder (naming the row).
    """
    path = _check_readable_file(path, "catalog")
    fmt = _catalog_format(path)
    try:
        table = Table.read(path, format=fmt)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise OSError(f"{path}: cannot read the catalog as {fmt} ({exc})") from None
    root = path.resolve().parent
    for name in _path_column_names(table, path_columns):

        def resolve(row, value, name=name):
            resolved = (root / Path(value).expanduser()).resolve()
            if not allow_outside and not resolved.is_relative_to(root):
                raise ValueError(
                    f"{path}: row {row}, column {name!r}: the path {value!r} resolves to "
                    f"{resolved}, outside the catalog's folder {root}; pass "
                    "allow_outside=True to accept it"
                )
            return str(resolved)

        table.replace_column(name, _map_path_column(table[name], resolve))
    return table


def write_catalog(table, path, *, overwrite=False, relative_to=None, path_columns=("path",)):
    """Write a catalog (ECSV or FITS by suffix) atomically, with portable paths.

    Paths that lie inside the catalog's folder are written relative to it, so that the
    folder can be moved as a whole; other paths are written absolute.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The catalog.
    path : str or os.PathLike
        The file to write: ``.ecsv``, ``.fits``, ``.fit`` or ``.fits.gz``.
    overwrite : bool, optional
        Replace an existing file. Default False.
    relative_to : str or os.PathLike, optional
        Folder that the relative paths in ``table`` refer to. By default they already
        refer to the catalog's folder and are written unchanged.
    path_columns : sequence of str, optional
        As in `read_catalog`.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Unknown suffix.
    """
    if not isinstance(table, Table):
        raise TypeError(f"write_catalog: expected an astropy Table, got {type(table).__name__}")
    path = Path(path)
    fmt = _catalog_format(path)
    root = path.parent.resolve()
    base = None if relative_to is None else Path(relative_to).resolve()
    table = table.copy()

    def portable(row, value):
        target = Path(value).expanduser()
        if not target.is_absolute():
            if base is None:
                return target.as_posix()
            target = base / target
        target = target.resolve()
        return target.relative_to(root).as_posix() if target.is_relative_to(root) else str(target)

    for name in _path_column_names(table, path_columns):
        table.replace_column(name, _map_path_column(table[name], portable))
    with atomic_target(path, overwrite=overwrite) as tmp:
        table.write(tmp, format=fmt, overwrite=True)


# --------------------------------------------------------------------------------------
# xarray
# --------------------------------------------------------------------------------------


def _wcs_to_string(wcs):
    return wcs.to_header(relax=True).tostring(sep="\n")


def _wcs_from_string(text, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return _wcs_from_header(fits.Header.fromstring(text, sep="\n"), name)


def to_dataarray(images, *, name="data", unit=None):
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

    Returns
    -------
    da : `xarray.DataArray`
        float32 data; masked pixels are NaN (a DataArray has no mask; `from_dataarray`
        masks non-finite pixels again). Uncertainties are not carried. ``attrs["unit"]``
        is the unit string and ``attrs["wcs"]`` the WCS header (as text) of the first
        image when it has one; when the images have different WCSs, a string coordinate
        ``wcs`` along ``image`` holds each header. Coordinates: ``image`` (index) and
        ``object`` (``meta['OBJECT']``) when an image has one.

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
    ccds = [read_image(im, unit=unit) for im in images]

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


def from_dataarray(da):
    """Split a DataArray made by `to_dataarray` back into CCDData images.

    Parameters
    ----------
    da : `xarray.DataArray`
        Dims ``(image, y, x)`` (any names; the first is the image axis) or ``(y, x)``.

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
    data = np.asarray(da.values, dtype=np.float32)
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
                             mask=bad if bad.any() else None))
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


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _decode_attrs(attrs):
    attrs = dict(attrs)
    keys = json.loads(attrs.pop(_JSON_ATTRS_KEY, "[]"))
    for key in keys:
        attrs[key] = json.loads(attrs[key])
    return attrs


def save_dataset(ds, path, *, overwrite=False):
    """Save an xarray Dataset (or DataArray) to netCDF (``.nc``) or zarr (``.zarr``).

    The write is atomic (temporary file or folder, then rename). Attributes that the
    formats cannot hold (dicts, lists, booleans, None) are stored as JSON and restored
    by `open_dataset`.

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
        raise TypeError(f"save_dataset: expected an xarray Dataset, got {type(ds).__name__}")
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


def open_dataset(path, *, chunks="auto"):
    """Open a dataset saved by `save_dataset`, lazily (dask-backed).

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


# --------------------------------------------------------------------------------------
# WCS resampling
# --------------------------------------------------------------------------------------


def _check_factor(factor):
    if isinstance(factor, (bool, np.bool_)) or not isinstance(
        factor, (int, float, np.integer, np.floating)
    ) or factor != int(factor) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    return int(factor)


def _resample_wcs(wcs, up, down):
    """WCS of an image whose pixels are split ``up`` times and merged ``down`` times.

    A pixel at 0-based coordinate ``x`` becomes ``x' = (x + 0.5) * zoom - 0.5`` with
    ``zoom = up / down``; in FITS 1-based terms ``CRPIX' = (CRPIX - 0.5) * zoom + 0.5``.
    Pixel offsets from CRPIX scale as ``u' = zoom * u``, so the linear matrix is divided
    by ``zoom``, and the SIP polynomials (offsets in pixels, ``u + f(u, v)``) need
    ``f'(u', v') = zoom * f(u'/zoom, v'/zoom)``, i.e. ``A'_pq = A_pq * zoom**(1-p-q)``,
    the same for B, AP and BP.
    """
    if not isinstance(wcs, WCS):
        raise TypeError(f"expected an astropy.wcs.WCS, got {type(wcs).__name__}")
    _checked_wcs(wcs, "WCS")
    zoom = up / down
    new = wcs.deepcopy()
    new.wcs.crpix = (np.asarray(wcs.wcs.crpix) - 0.5) * zoom + 0.5
    if wcs.wcs.has_cd():
        new.wcs.cd = np.asarray(wcs.wcs.cd) / zoom
    else:
        new.wcs.cdelt = np.asarray(wcs.wcs.cdelt) / zoom

    if wcs.sip is not None:
        def rescale(coefficients):
            if coefficients is None:
                return None
            p, q = np.indices(coefficients.shape)
            return coefficients * zoom ** (1.0 - p - q)

        sip = wcs.sip
        new.sip = Sip(rescale(sip.a), rescale(sip.b), rescale(sip.ap), rescale(sip.bp),
                      new.wcs.crpix)
    # Lookup-table distortions live on the detector grid and cannot be rescaled here.
    dropped = [kind for kind, value in (("CPDIS", wcs.cpdis1 or wcs.cpdis2),
                                        ("D2IM", wcs.det2im1 or wcs.det2im2)) if value]
    if dropped:
        warnings.warn(f"dropping the {' and '.join(dropped)} lookup-table distortion, which "
                      "cannot be resampled", WCSResampleWarning, stacklevel=3)
        new.cpdis1 = new.cpdis2 = new.det2im1 = new.det2im2 = None
    if wcs.pixel_shape is not None:
        new.pixel_shape = tuple(n * up // down for n in wcs.pixel_shape)
    new.wcs.set()
    return new


def upsample_wcs(wcs, factor):
    """WCS of an image upsampled ``factor`` times (each pixel split in factor x factor).

    Every output pixel centre maps to the sky position of the part of the input pixel
    it came from: output pixel ``i`` (0-based) sits at input coordinate
    ``(i + 0.5) / factor - 0.5``. CRPIX, CD or CDELT, SIP coefficients and
    ``pixel_shape`` are updated.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        A 2-D celestial WCS.
    factor : int
        Positive integer.

    Returns
    -------
    new_wcs : `~astropy.wcs.WCS`
        A new object; ``wcs`` is not changed.

    Raises
    ------
    ValueError
        ``factor`` is not a positive integer or ``wcs`` is not 2-D celestial.

    Warns
    -----
    WCSResampleWarning
        Lookup-table distortions (CPDIS, D2IM) are dropped.
    """
    return _resample_wcs(wcs, _check_factor(factor), 1)


def downsample_wcs(wcs, factor):
    """WCS of an image binned by summing ``factor`` x ``factor`` pixel blocks.

    The inverse of `upsample_wcs`: output pixel ``i`` sits at input coordinate
    ``factor * i + (factor - 1) / 2``. ``pixel_shape`` is divided with the remainder
    dropped, as when blocks that do not fit are cut off.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        A 2-D celestial WCS.
    factor : int
        Positive integer.

    Returns
    -------
    new_wcs : `~astropy.wcs.WCS`
    """
    return _resample_wcs(wcs, 1, _check_factor(factor))


def describe_image(source, *, hdu=None):
    """A short summary of an image, as shown by ``lensenhance info``.

    Parameters
    ----------
    source : anything `read_image` accepts
    hdu : int or str, optional

    Returns
    -------
    dict
        ``shape``, ``dtype`` (as stored in the file), ``unit``, ``wcs centre`` (RA, Dec in
        degrees, or "none"), ``pixel scale`` (arcsec), ``NaN pixels``, ``masked pixels``.
    """
    from astropy.wcs.utils import proj_plane_pixel_scales

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MissingUnitWarning)
        ccd = read_image(source, hdu=hdu)
    no_unit = any(issubclass(w.category, MissingUnitWarning) for w in caught)
    stored_dtype = _stored_dtype(source, hdu) or ccd.data.dtype
    if ccd.wcs is not None:
        ny, nx = ccd.shape
        centre = ccd.wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2).icrs
        scales = proj_plane_pixel_scales(ccd.wcs) * 3600
        wcs_centre = f"RA {centre.ra.deg:.6f} deg, Dec {centre.dec.deg:.6f} deg"
        pixel_scale = " x ".join(f"{s:.4g}" for s in scales) + " arcsec"
    else:
        wcs_centre = pixel_scale = "none (no WCS)"
    unit_text = "none (no BUNIT; read as dimensionless)" if no_unit else (
        str(ccd.unit) if ccd.unit != u.dimensionless_unscaled else "dimensionless")
    return {
        "shape": str(ccd.shape),
        "dtype": np.dtype(stored_dtype).newbyteorder("=").name,
        "unit": unit_text,
        "WCS centre": wcs_centre,
        "pixel scale": pixel_scale,
        "NaN pixels": int(np.isnan(ccd.data).sum()),
        "masked": int(np.asarray(ccd.mask).sum()) if ccd.mask is not None else 0,
    }


def _stored_dtype(source, hdu):
    """The dtype of the image as stored in a FITS file (read_image converts to float32)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    with fits.open(source, memmap=False, lazy_load_hdus=True) as hdul:
        for index, item in enumerate(hdul):
            if hdu is not None and hdu not in (index, item.name):
                continue
            if getattr(item, "data", None) is not None and item.data.ndim >= 2:
                return item.data.dtype
    return None
