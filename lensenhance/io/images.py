"""FITS images: `read_image` (any image form -> CCDData) and `write_image` (atomic).

File layout written by `write_image` (the one `CCDData.write` also uses)::

    HDU 0  PRIMARY  science image, header + WCS + BUNIT, HISTORY cards
    HDU 1  MASK     uint8, 1 = masked            (only when the image has a mask)
    HDU 2  UNCERT   standard deviation, UTYPE    (only when it has an uncertainty)

so that ``astropy.io.fits.getdata(path)`` and DS9 show the science image. Reading also
takes a standard deviation from an ``ERR`` extension (the SCI/ERR layout of HST and
JWST) when there is no UNCERT.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, StdDevUncertainty
from astropy.wcs import WCS, FITSFixedWarning

from .._atomic import atomic_target
from ._common import MissingUnitWarning, _check_readable_file, _json_default
from .wcs import _WCS_KEYS, _checked_wcs, _wcs_from_header

MASK_EXTNAME = "MASK"
UNCERT_EXTNAME = "UNCERT"
SCI_EXTNAME = "SCI"
#: Other names of a standard-deviation extension beside the science image (HST, JWST
#: and many pipelines write ERR), read when there is no UNCERT.
ERR_EXTNAMES = ("ERR",)
# Extensions that hold the noise in another form: not read, and said so.
_OTHER_NOISE_EXTNAMES = ("VAR", "VARIANCE", "IVAR", "INVVAR", "WHT", "WEIGHT", "RMS")
_UNCERTAINTY_KEY = "UTYPE"

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)

# Header keywords that describe the array layout or the primary celestial WCS. They are
# removed from CCDData.meta on reading because the CCDData carries them itself (shape,
# ``wcs``, ``unit``); left in meta they would go stale once the image is resampled.
_LAYOUT_KEYS = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|EXTNAME|EXTVER|"
    r"BZERO|BSCALE|BUNIT|BLANK|CHECKSUM|DATASUM)$"
)


# --------------------------------------------------------------------------------------
# read_image / write_image
# --------------------------------------------------------------------------------------


def read_image(source, *, hdu=None, unit=None, dtype=np.float32, memmap=False):
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
    dtype : {numpy.float32, numpy.float64, None}, optional
        The data type of the result; None keeps float64 data as float64 and makes
        anything else float32.
    memmap : bool, optional
        For a FITS file: map the file instead of reading it, and keep the mapped
        (read-only) array when it is stored as floats of ``dtype`` without scaling, so
        that a large image is only read where it is used.

    Returns
    -------
    ccd : `~astropy.nddata.CCDData`
        float32 data (a copy, unless ``memmap``) with its unit; ``wcs`` is the celestial 2-D WCS
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
        return _read_fits_file(source, hdu=hdu, unit=unit, dtype=dtype, memmap=memmap)
    name = _describe(source)
    if hdu is not None and not isinstance(source, fits.HDUList):
        raise ValueError(f"{name}: hdu={hdu!r} applies only to FITS files and HDULists")
    if isinstance(source, fits.HDUList):
        return _from_hdulist(source, hdu=hdu, unit=unit, name=name, dtype=dtype)
    if isinstance(source, _IMAGE_HDUS):
        return _from_hdu(source, unit=unit, name=name, dtype=dtype)
    if isinstance(source, NDData):
        return _from_nddata(source, unit=unit, name=name, dtype=dtype)
    if isinstance(source, tuple):
        return _from_tuple(source, unit=unit, name=name, dtype=dtype)
    if isinstance(source, u.Quantity):
        data = source.value if unit is None else source.to_value(unit)
        return _make_ccd(data, name=name, unit=source.unit if unit is None else unit,
                         dtype=dtype)
    if isinstance(source, (np.ndarray, list)):
        return _make_ccd(source, name=name, unit=unit, dtype=dtype)
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


class _ScaledMemmapError(Exception):
    """astropy cannot map integer data scaled by BZERO/BSCALE/BLANK: read it instead."""


def _read_fits_file(path, *, hdu, unit, dtype, memmap):
    path = _check_readable_file(path, "FITS file")
    try:
        # a mapped file is mapped read-only, so that its pages can be handed back
        # (`lensenhance.predict.scratch.release_mapped_pages`) as a large image is read
        hdul = fits.open(path, memmap=bool(memmap), mode="denywrite" if memmap else "readonly")
        hdul.verify("silentfix+ignore")
    except (OSError, ValueError, TypeError) as exc:
        # Replace astropy's deep traceback by one line naming the file.
        raise OSError(f"{path}: not a readable FITS file ({exc})") from None
    try:
        with hdul:
            return _from_hdulist(hdul, hdu=hdu, unit=unit, name=str(path), dtype=dtype,
                                 keep=bool(memmap))
    except _ScaledMemmapError:
        # Scaled integers (a camera's uint16, BLANK) are read whole, then scaled.
        return _read_fits_file(path, hdu=hdu, unit=unit, dtype=dtype, memmap=False)


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
    return (hdu.is_image and hdu.name not in (MASK_EXTNAME, UNCERT_EXTNAME, *ERR_EXTNAMES)
            and _image_ndim(shape) == 2 and 0 not in shape)


class _NoSuchHDU(KeyError):
    """A KeyError whose message reads as a sentence (KeyError's own str quotes it)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _from_hdulist(hdul, *, hdu, unit, name, dtype=np.float32, keep=False):
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
            raise _NoSuchHDU(
                f"{name}: no HDU {hdu!r}; available: {_hdu_summary(hdul)}"
            ) from None
        index = hdul.index(science)
    if not isinstance(science, _IMAGE_HDUS):
        raise ValueError(f"{name}: HDU {_hdu_label(index, science)} holds no image data")

    # MASK and UNCERT belong to the image only in the layout write_image produces (and
    # ERR, its standard deviation, in the SCI/ERR layout of HST and JWST).
    mask = uncertainty = None
    if index == 0 or science.name == SCI_EXTNAME:
        if MASK_EXTNAME in hdul and science.name != MASK_EXTNAME:
            mask = _hdu_data(hdul[MASK_EXTNAME], name) != 0
        noise = next((extname for extname in (UNCERT_EXTNAME, *ERR_EXTNAMES)
                      if extname in hdul and science.name != extname), None)
        if noise is not None:
            uncertainty = _uncertainty_from_hdu(hdul[noise], name)
        else:
            other = [h.name for h in hdul if h.name in _OTHER_NOISE_EXTNAMES]
            if other:
                warnings.warn(f"{name}: HDU {other[0]!r} looks like the image's noise but "
                              "is not read (only a standard deviation in an UNCERT or ERR "
                              "HDU is); pass it as uncertainty= (e.g. "
                              "StdDevUncertainty(sqrt(variance))) to use it", UserWarning,
                              stacklevel=4)
    return _from_hdu(science, unit=unit, name=name, mask=mask, uncertainty=uncertainty,
                     fobj=hdul, dtype=dtype, keep=keep)


def _hdu_data(hdu, name):
    try:
        data = hdu.data
    except (OSError, ValueError, TypeError) as exc:
        if "memory-mapped" in str(exc) and hdu.header.get("BITPIX", -32) > 0:
            raise _ScaledMemmapError from None
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
    uncertainty = kinds[kind](_hdu_data(hdu, name))
    if isinstance(uncertainty, StdDevUncertainty):
        return uncertainty.array  # a negative sigma stays visible (and is masked)
    return uncertainty.represent_as(StdDevUncertainty).array


def _from_hdu(hdu, *, unit, name, mask=None, uncertainty=None, fobj=None, dtype=np.float32,
              keep=False):
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
        dtype=dtype,
        keep=keep,
    )


def _from_tuple(source, *, unit, name, dtype=np.float32):
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
            dtype=dtype,
        )
    return _make_ccd(array, name=name, unit=unit, wcs=_checked_wcs(second, name), dtype=dtype)


def _from_nddata(nd, *, unit, name, dtype=np.float32):
    uncertainty = None
    if nd.uncertainty is not None:
        try:
            # represent_as goes through the variance and would hide a negative sigma.
            std = nd.uncertainty if isinstance(nd.uncertainty, StdDevUncertainty) else \
                nd.uncertainty.represent_as(StdDevUncertainty)
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
        dtype=dtype,
    )


def _squeeze_leading(array):
    array = np.asanyarray(array)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def _make_ccd(data, *, name, unit=None, wcs=None, meta=None, mask=None, uncertainty=None,
              dtype=np.float32, keep=False):
    """Validate shapes and build the CCDData; the single place every source ends in.

    ``keep``: use ``data`` (a mapped file) as it is when it already has the wanted type.
    """
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
    if np.ma.isMaskedArray(data):
        extra = np.ma.getmaskarray(data)
        mask = extra if mask is None else np.logical_or(mask, extra)
        data = np.ma.getdata(data)
    target = _target_dtype(data.dtype, dtype)
    if keep and data.dtype.kind == "f" and data.dtype.itemsize == target.itemsize:
        data = np.asarray(data)  # the mapped file, read-only
    else:
        data = np.array(data, dtype=target)  # a copy: files close, callers mutate

    if mask is not None:
        mask = np.array(_squeeze_leading(mask), dtype=bool)
        if mask.shape == ():
            mask = np.full(data.shape, bool(mask))
        _check_same_shape(mask, data, "mask", name)
    if uncertainty is not None:
        uncertainty = _squeeze_leading(uncertainty)
        if not (keep and uncertainty.dtype.kind == "f"):
            uncertainty = np.array(uncertainty, dtype=_target_dtype(uncertainty.dtype, dtype))
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


def _target_dtype(stored, dtype):
    if dtype is None:
        wide = stored.kind == "f" and stored.itemsize == 8  # any byte order
        return np.dtype(np.float64 if wide else np.float32)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32, float64 or None, got {dtype}")
    return dtype


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

    Examples
    --------
    The unit, the uncertainty and the mask come back as they went in:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.nddata import CCDData, StdDevUncertainty
    >>> ccd = CCDData(np.ones((4, 4)), unit="electron/s", mask=np.eye(4, dtype=bool),
    ...               uncertainty=StdDevUncertainty(np.full((4, 4), 0.1)))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_image(ccd, Path(folder) / "image.fits")
    ...     back = read_image(Path(folder) / "image.fits")
    ...     try:
    ...         write_image(ccd, Path(folder) / "image.fits")
    ...     except FileExistsError:
    ...         print("not overwritten")
    not overwritten
    >>> back.unit, int(back.mask.sum()), back.uncertainty.array.dtype  # float32 by default
    (Unit("electron / s"), 4, dtype('float32'))
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
        degrees, or "none"), ``pixel scale`` (arcsec), ``NaN pixels``, ``inf pixels``,
        ``masked``.
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
    if isinstance(ccd.unit, u.UnrecognizedUnit):
        unit_text += " (not a unit astropy knows: taken as flux per pixel when enhancing)"
    return {
        "shape": str(ccd.shape),
        "dtype": np.dtype(stored_dtype).newbyteorder("=").name,
        "unit": unit_text,
        "WCS centre": wcs_centre,
        "pixel scale": pixel_scale,
        "NaN pixels": int(np.isnan(ccd.data).sum()),
        "inf pixels": int(np.isinf(ccd.data).sum()),
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


@contextlib.contextmanager
def create_image(path, *, shape, dtype=np.float32, unit=None, wcs=None, meta=None,
                 mask=False, uncertainty=False, overwrite=False, history=None):
    """Create a FITS file in the layout of `write_image` and fill its arrays in place.

    For images too large to hold in memory: the file is created (atomically, under a
    temporary name) with zero-filled data, and the context yields its arrays as
    writable memory maps; when the block ends without an error the file is synced and
    moved onto ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file to write (uncompressed).
    shape : tuple of int
        ``(ny, nx)``.
    dtype : numpy.float32 or numpy.float64, optional
        Type of the science and uncertainty arrays.
    unit, wcs, meta
        As for a `~astropy.nddata.CCDData`.
    mask, uncertainty : bool, optional
        Add the MASK (uint8) and UNCERT (standard deviation) extensions.
    overwrite : bool, optional
        Replace an existing file.
    history : str or list of str, optional
        HISTORY cards.

    Yields
    ------
    types.SimpleNamespace
        ``data``, ``mask`` and ``uncertainty``: memory-mapped arrays (or None).
    """
    from types import SimpleNamespace

    path = Path(path)
    ny, nx = (int(n) for n in shape)
    dtype = np.dtype(dtype)
    tiny = np.zeros((1, 1), dtype)
    template = CCDData(tiny, unit=unit if unit is not None else u.dimensionless_unscaled,
                       wcs=wcs, meta=meta, mask=np.zeros((1, 1), bool) if mask else None,
                       uncertainty=StdDevUncertainty(tiny.copy()) if uncertainty else None)
    hdul = _to_hdulist(template, history=history, name=str(path))
    if unit is None:
        hdul[0].header.remove("BUNIT", ignore_missing=True)
    with atomic_target(path, overwrite=overwrite) as tmp:
        layout = {}
        with open(tmp, "wb") as handle:
            for hdu in hdul:
                header = hdu.header.copy()
                header["NAXIS1"], header["NAXIS2"] = nx, ny
                handle.write(header.tostring().encode("ascii"))
                offset = handle.tell()
                stored = hdu.data.dtype.newbyteorder(">")
                size = -(-ny * nx * stored.itemsize // 2880) * 2880  # FITS blocks
                handle.truncate(offset + size)  # sparse zeros
                handle.seek(offset + size)
                layout[hdu.name] = (offset, stored)
        arrays = {name: np.memmap(tmp, dtype=stored, mode="r+", offset=offset, shape=(ny, nx))
                  for name, (offset, stored) in layout.items()}
        names = list(layout)
        yield SimpleNamespace(data=arrays[names[0]], mask=arrays.get(MASK_EXTNAME),
                              uncertainty=arrays.get(UNCERT_EXTNAME))
        for array in arrays.values():
            array.flush()
        del arrays
