"""WCS: reading a celestial WCS from a header, and resampling it with the pixels.

`upsample_wcs` and `downsample_wcs` resample one `~astropy.wcs.WCS`;
`resample_header_wcs` resamples every WCS a FITS header holds (the primary one, the
alternates A-Z and IRAF's LTV/LTM physical transform) and removes with a warning what
it cannot resample, so that no stale pixel keyword survives.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning, Sip

from .._validation import check_int
from ._common import WCSResampleWarning

_WCS_KEYS = re.compile(
    r"^(WCSAXES|WCSNAME|RADESYS|RADECSYS|EQUINOX|EPOCH|LONPOLE|LATPOLE|MJDREF|"
    r"(CRPIX|CRVAL|CDELT|CTYPE|CUNIT|CROTA)\d+|(CD|PC|PV|PS)\d+_\d+|"
    r"(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+))$"
)


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



def _wcs_to_string(wcs):
    return wcs.to_header(relax=True).tostring(sep="\n")


def _wcs_from_string(text, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return _wcs_from_header(fits.Header.fromstring(text, sep="\n"), name)


def _check_factor(factor):
    return check_int(factor, "factor", integral_floats=True)


def _resample_wcs(wcs, up, down, *, celestial=True):
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
    if celestial:
        _checked_wcs(wcs, "WCS")
    elif wcs.pixel_n_dim != 2:
        raise ValueError(f"cannot resample a WCS with {wcs.pixel_n_dim} pixel axes")
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


    Examples
    --------
    The split pixels are half the size, and the image's corner stays where it was:

    >>> from astropy.wcs import WCS
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = [150, 2], [50.5, 50.5], [-1e-4, 1e-4]
    >>> fine = upsample_wcs(wcs, 2)
    >>> fine.wcs.cdelt.tolist(), fine.wcs.crpix.tolist()
    ([-5e-05, 5e-05], [100.5, 100.5])
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



# Keywords of one WCS description; {a} is its alternate letter ('' for the primary).
_ALT_WCS_KEYS = (r"^(WCSAXES|WCSNAME|RADESYS|EQUINOX|LONPOLE|LATPOLE|MJDREF|RESTFRQ|"
                 r"RESTWAV|SPECSYS|(CRPIX|CRVAL|CDELT|CTYPE|CUNIT|CRDER|CSYER|CNAME)\d+|"
                 r"(CD|PC|PV|PS)\d+_\d+){a}$")
# IRAF's physical-to-image transform: image = LTM . physical + LTV (1-based pixels).
_IRAF_KEYS = re.compile(r"^(LTV[12]|LTM[12]_[12])$")
# Pixel sections of the detector; they describe the old grid and cannot be rescaled
# into anything a reader would trust.
_SECTION_KEYS = ("DATASEC", "TRIMSEC", "BIASSEC", "DETSEC", "CCDSEC", "AMPSEC", "CCDSUM")


def _alternate_keys(header, key):
    pattern = re.compile(_ALT_WCS_KEYS.format(a=key.strip()))
    keys = [k for k in dict.fromkeys(header.keys()) if pattern.match(k)]
    if not key.strip():  # the primary WCS also has SIP, CROTA and old-style keywords
        keys += [k for k in dict.fromkeys(header.keys()) if _WCS_KEYS.match(k)]
    return list(dict.fromkeys(keys))


def resample_header_wcs(header, factor, *, name="header"):
    """Resample every WCS a FITS header holds for an image upsampled ``factor`` times.

    The primary WCS (when still in the header), each alternate WCS ``A``-``Z``
    (``CRPIX1A`` ...) and IRAF's physical transform (``LTV1``, ``LTM1_1`` ...) are
    rewritten so that every new pixel maps to the position of the part of the old pixel
    it came from, as `upsample_wcs` does; a 2-axis WCS need not be celestial. What
    cannot be resampled (a WCS that is not 2-axis or that wcslib cannot read, and the
    pixel sections ``DATASEC``, ``DETSEC`` ...) is removed with a warning, so that no
    stale pixel keyword survives.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        The header (not modified).
    factor : int
        The upsampling factor.
    name : str, optional
        Names the image in warnings.

    Returns
    -------
    `~astropy.io.fits.Header`
        A resampled copy.

    Warns
    -----
    WCSResampleWarning
        For every WCS or keyword removed.
    """
    factor = _check_factor(factor)
    header = header.copy()
    if factor == 1:
        return header
    for key in [" ", *map(chr, range(ord("A"), ord("Z") + 1))]:
        keys = _alternate_keys(header, key)
        if not keys:
            continue
        label = "the primary WCS" if key == " " else f"the alternate WCS {key!r}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(header, key=key, relax=True)
            new = _resample_wcs(wcs, factor, 1, celestial=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                cards = new.to_header(relax=True, key=key)
        except Exception as exc:  # wcslib raises many types for what it cannot read
            for k in keys:
                del header[k]
            warnings.warn(f"{name}: removed {label}, which cannot be resampled ({exc})",
                          WCSResampleWarning, stacklevel=2)
            continue
        for k in keys:
            del header[k]
        for card in cards.cards:
            # wcslib adds reference-time cards (MJDREF ...) without the alternate's
            # letter; only the WCS's own keywords are written back.
            own = card.keyword.endswith(key) if key.strip() else card.keyword in keys or \
                bool(re.match(_ALT_WCS_KEYS.format(a=""), card.keyword))
            if own:
                header[card.keyword] = (card.value, card.comment)
    ltm = {k: header[k] for k in dict.fromkeys(header.keys()) if _IRAF_KEYS.match(k)}
    for k, value in ltm.items():
        if k.startswith("LTV"):
            # x'_1 = (x_1 - 0.5) * s + 0.5 applied to image = LTM . p + LTV
            header[k] = (float(value) - 0.5) * factor + 0.5
        else:
            header[k] = float(value) * factor
    if any(k.startswith("LTM") for k in ltm) or any(k.startswith("LTV") for k in ltm):
        for axis in (1, 2):  # absent terms (LTM diagonal 1, LTV 0) change too
            if f"LTM{axis}_{axis}" not in header:
                header[f"LTM{axis}_{axis}"] = float(factor)
            if f"LTV{axis}" not in header:
                header[f"LTV{axis}"] = (0.0 - 0.5) * factor + 0.5
    removed = [k for k in _SECTION_KEYS if k in header]
    for k in removed:
        del header[k]
    if removed:
        warnings.warn(f"{name}: removed the pixel sections {', '.join(removed)}, which "
                      "describe the old pixel grid", WCSResampleWarning, stacklevel=2)
    return header
