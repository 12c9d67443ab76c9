"""Tests of lensenhance.io: FITS images, catalogs, xarray datasets, WCS resampling."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, StdDevUncertainty, VarianceUncertainty
from astropy.table import Table
from astropy.wcs import WCS

from lensenhance import io
from lensenhance.io import MissingUnitWarning

SHAPE = (12, 16)  # (ny, nx): not square, so that swapped axes would show


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


def make_header(kind="cd"):
    """A small celestial header: CD matrix, CDELT+PC, CDELT+CROTA or CD+SIP."""
    header = fits.Header()
    header.update(
        CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.1, CRVAL2=2.2,
        CRPIX1=7.3, CRPIX2=5.9, CUNIT1="deg", CUNIT2="deg",
    )
    if kind in ("cd", "sip"):
        header.update(CD1_1=-5e-5, CD1_2=1e-6, CD2_1=2e-6, CD2_2=5e-5)
    elif kind == "pc":
        header.update(CDELT1=-5e-5, CDELT2=4e-5, PC1_1=0.98, PC1_2=0.17, PC2_1=-0.17,
                      PC2_2=0.98)
    elif kind == "crota":
        header.update(CDELT1=-5e-5, CDELT2=5e-5, CROTA2=12.0)
    if kind == "sip":
        header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
        # Quadratic and cubic terms large enough (0.1-1 pixel at the edges) that a wrong
        # power of the factor would move pixels by far more than the test tolerance.
        header.update(
            A_ORDER=3, A_2_0=2e-3, A_1_1=-1e-3, A_0_2=5e-4, A_3_0=1e-4, A_1_2=-5e-5,
            B_ORDER=3, B_2_0=-1e-3, B_1_1=2e-3, B_0_2=1e-3, B_2_1=8e-5, B_0_3=-6e-5,
            AP_ORDER=2, AP_1_0=1e-6, AP_2_0=-2e-3, AP_1_1=1e-3, AP_0_2=-5e-4,
            BP_ORDER=2, BP_0_1=-1e-6, BP_2_0=1e-3, BP_1_1=-2e-3, BP_0_2=-1e-3,
        )
    return header


def make_data():
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) * 0.5 - 3.0


@pytest.fixture
def header():
    header = make_header("sip")
    header["BUNIT"] = "electron/s"
    header["OBJECT"] = "lens-7"
    return header


@pytest.fixture
def fits_path(tmp_path, header):
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(make_data(), header).writeto(path)
    return path


def assert_same_sky(wcs_a, wcs_b, *, shape=SHAPE, atol=1e-10):
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    np.testing.assert_allclose(wcs_a.pixel_to_world_values(x, y),
                               wcs_b.pixel_to_world_values(x, y), rtol=0, atol=atol)


# --------------------------------------------------------------------------------------
# read_image: every input form
# --------------------------------------------------------------------------------------


def _source(kind, fits_path, header):
    data = make_data()
    wcs = WCS(header)
    unit = u.electron / u.s
    return {
        "str": str(fits_path),
        "pathlike": Path(fits_path),
        "hdulist": fits.HDUList([fits.PrimaryHDU(data, header)]),
        "primaryhdu": fits.PrimaryHDU(data, header),
        "imagehdu": fits.ImageHDU(data, header, name="SCI"),
        "compimagehdu": fits.CompImageHDU(data, header, quantize_level=0.0),
        "nddata": NDData(data, unit=unit, wcs=wcs),
        "ccddata": CCDData(data, unit=unit, wcs=wcs),
        "array_header": (data, header),
        "array_wcs": (data * unit, wcs),
        "quantity": data * unit,
        "ndarray_unit": data,
    }[kind]


@pytest.mark.parametrize(
    "kind",
    ["str", "pathlike", "hdulist", "primaryhdu", "imagehdu", "compimagehdu", "nddata",
     "ccddata", "array_header", "array_wcs", "quantity", "ndarray_unit"],
)
def test_read_image_input_forms(kind, fits_path, header):
    source = _source(kind, fits_path, header)
    unit = "electron/s" if kind == "ndarray_unit" else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingUnitWarning)
        ccd = io.read_image(source, unit=unit)
    assert isinstance(ccd, CCDData)
    assert ccd.data.dtype == np.float32
    np.testing.assert_array_equal(ccd.data, make_data())
    assert ccd.unit == u.electron / u.s
    if kind in ("quantity", "ndarray_unit"):
        assert ccd.wcs is None
    else:
        assert ccd.wcs.pixel_shape == SHAPE[::-1]
        assert ccd.wcs.sip is not None
        assert_same_sky(ccd.wcs, WCS(header))


@pytest.mark.parametrize("kind", ["ndarray", "ccddata", "hdulist", "quantity"])
def test_read_image_returns_a_copy(kind):
    data = make_data()
    source = {
        "ndarray": data,
        "ccddata": CCDData(data, unit="adu", copy=False),
        "hdulist": fits.HDUList([fits.PrimaryHDU(data)]),
        "quantity": u.Quantity(data, u.adu, copy=False),
    }[kind]
    ccd = io.read_image(source, unit="adu")
    ccd.data[0, 0] = 1e6
    assert data[0, 0] == make_data()[0, 0]


def test_read_image_ignores_foreign_mask_extensions(tmp_path):
    """HSC-like files (IMAGE, MASK bit planes, VARIANCE in extensions) keep no mask."""
    path = tmp_path / "hsc_like.fits"
    fits.HDUList([
        fits.PrimaryHDU(),
        fits.ImageHDU(make_data(), name="IMAGE"),
        fits.ImageHDU(np.full(SHAPE, 32, dtype=np.int32), name="MASK"),
    ]).writeto(path)
    ccd = io.read_image(path, unit="adu")
    assert ccd.mask is None
    np.testing.assert_array_equal(ccd.data, make_data())


def test_read_image_plain_array_warns_missing_unit():
    with pytest.warns(MissingUnitWarning, match="ndarray"):
        ccd = io.read_image(np.ones((4, 5), dtype=np.int16))
    assert ccd.unit == u.dimensionless_unscaled
    assert ccd.data.dtype == np.float32


def test_read_image_file_without_bunit_warns_naming_file(tmp_path):
    path = tmp_path / "nounit.fits"
    fits.PrimaryHDU(np.ones((4, 5))).writeto(path)
    with pytest.warns(MissingUnitWarning, match="nounit.fits"):
        io.read_image(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingUnitWarning)
        assert io.read_image(path, unit="adu").unit == u.adu


def test_read_image_unit_argument_overrides_and_converts(fits_path):
    assert io.read_image(fits_path, unit="adu").unit == u.adu
    ccd = io.read_image(np.ones((3, 3)) * u.mJy, unit="Jy")
    assert ccd.unit == u.Jy
    np.testing.assert_allclose(ccd.data, 1e-3)


def test_read_image_meta_drops_layout_and_wcs_keys(fits_path):
    ccd = io.read_image(fits_path)
    assert ccd.meta["OBJECT"] == "lens-7"
    for key in ("NAXIS1", "BITPIX", "BUNIT", "CD1_1", "A_2_0", "CRPIX1", "CTYPE1"):
        assert key not in ccd.meta


def test_read_image_bzero_bscale(tmp_path):
    values = np.arange(20, dtype=np.float64).reshape(4, 5) * 0.5 + 10
    hdu = fits.PrimaryHDU(values.copy())
    hdu.scale("int16", bscale=0.5, bzero=10.0)
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    assert fits.getheader(path)["BITPIX"] == 16
    ccd = io.read_image(path, unit="adu")
    np.testing.assert_array_equal(ccd.data, values.astype(np.float32))
    assert "BSCALE" not in ccd.meta and "BZERO" not in ccd.meta

    path = tmp_path / "uint16.fits"
    fits.PrimaryHDU(np.array([[0, 40000], [65535, 1]], dtype=np.uint16)).writeto(path)
    np.testing.assert_array_equal(io.read_image(path, unit="adu").data, [[0, 40000],
                                                                           [65535, 1]])


def test_read_image_hdu_selection(tmp_path, header):
    path = tmp_path / "multi.fits"
    table = fits.BinTableHDU(Table({"a": [1, 2]}), name="EVENTS")
    fits.HDUList([
        fits.PrimaryHDU(),
        table,
        fits.ImageHDU(make_data(), header, name="IMG1"),
        fits.ImageHDU(make_data() * 2, header, name="IMG2"),
    ]).writeto(path)
    # Default: the first HDU with a 2-D image, skipping the empty primary and the table.
    np.testing.assert_array_equal(io.read_image(path).data, make_data())
    np.testing.assert_array_equal(io.read_image(path, hdu="IMG2").data, make_data() * 2)
    np.testing.assert_array_equal(io.read_image(path, hdu=3).data, make_data() * 2)
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(io.read_image(hdul, hdu="img2").data, make_data() * 2)
    with pytest.raises(KeyError, match=r"multi\.fits.*NOPE.*IMG1"):
        io.read_image(path, hdu="NOPE")
    with pytest.raises(KeyError, match=r"multi\.fits.*EVENTS"):
        io.read_image(path, hdu=7)
    with pytest.raises(ValueError, match=r"multi\.fits.*EVENTS.*no image data"):
        io.read_image(path, hdu="EVENTS")
    with pytest.raises(ValueError, match=r"multi\.fits.*no image data"):
        io.read_image(path, hdu=0)


def test_read_image_squeezes_leading_unit_axis(tmp_path):
    header = make_header("cd")
    header.update(CTYPE3="FREQ", CRVAL3=1.4e9, CDELT3=1e6, CRPIX3=1.0, CUNIT3="Hz")
    path = tmp_path / "cube1.fits"
    fits.PrimaryHDU(make_data()[np.newaxis], header).writeto(path)
    ccd = io.read_image(path, unit="Jy")
    assert ccd.shape == SHAPE
    assert ccd.wcs.naxis == 2 and ccd.wcs.has_celestial
    assert_same_sky(ccd.wcs, WCS(make_header("cd")))


# --------------------------------------------------------------------------------------
# read_image: bad inputs
# --------------------------------------------------------------------------------------


def test_read_image_missing_file(tmp_path):
    path = tmp_path / "nope.fits"
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        io.read_image(path)


def test_read_image_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path.name)):
        io.read_image(tmp_path)


@pytest.mark.parametrize("content", ["text", "empty", "truncated_header", "truncated_data"])
def test_read_image_corrupt_file(tmp_path, content):
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(np.ones((100, 100), dtype=np.float32)).writeto(good)
    raw = good.read_bytes()
    path = tmp_path / f"{content}.fits"
    path.write_bytes({
        "text": b"this is not a FITS file\n" * 200,
        "empty": b"",
        "truncated_header": raw[:1000],
        "truncated_data": raw[: 2880 + 8000],
    }[content])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's own note that the file looks truncated
        with pytest.raises(OSError, match=f"{content}.fits") as info:
            io.read_image(path, unit="adu")
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "data, match",
    [
        (np.ones(5), "1-D"),
        (np.ones((2, 4, 4)), "3-D"),
        (np.ones((1, 2, 4, 4)), "3-D"),
        (np.ones((0, 5)), "empty"),
    ],
)
def test_read_image_bad_shapes(tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        io.read_image(data, unit="adu")
    path = tmp_path / "bad.fits"
    fits.PrimaryHDU(data).writeto(path)
    with pytest.raises(ValueError, match="bad.fits"):
        io.read_image(path, unit="adu")


@pytest.mark.parametrize("source", [42, {"data": 1}, b"x", (np.ones((3, 3)), "hdr"),
                                    (np.ones((3, 3)),), None])
def test_read_image_wrong_type(source):
    with pytest.raises(TypeError):
        io.read_image(source, unit="adu")


def test_read_image_bad_wcs_and_hdu_arguments():
    linear = WCS(naxis=2)
    linear.wcs.ctype = ["LINEAR", "LINEAR"]
    with pytest.raises(ValueError, match="celestial"):
        io.read_image((np.ones((3, 3)), linear), unit="adu")
    with pytest.raises(ValueError, match="hdu="):
        io.read_image(np.ones((3, 3)), hdu=1, unit="adu")
    with pytest.raises(ValueError, match="mask"):
        io.read_image(NDData(np.ones((3, 3)), mask=np.zeros((2, 2), bool), unit="adu"))


# --------------------------------------------------------------------------------------
# write_image and round trips
# --------------------------------------------------------------------------------------


def make_ccd(kind="sip"):
    data = make_data()
    meta = fits.Header()
    meta["OBJECT"] = "lens-7"
    meta["HISTORY"] = "simulated"
    return CCDData(
        data,
        unit="electron/s",
        wcs=WCS(make_header(kind)),
        mask=data > 40,
        uncertainty=StdDevUncertainty(np.full(SHAPE, 0.25, dtype=np.float32)),
        meta=meta,
    )


@pytest.mark.parametrize("kind", ["cd", "pc", "sip"])
def test_write_read_round_trip(tmp_path, kind):
    ccd = make_ccd(kind)
    path = tmp_path / "out.fits"
    io.write_image(ccd, path, history=["enhanced x2", "by lensenhance"])
    back = io.read_image(path)
    np.testing.assert_array_equal(back.data, ccd.data)
    np.testing.assert_array_equal(back.mask, ccd.mask)
    assert isinstance(back.uncertainty, StdDevUncertainty)
    np.testing.assert_array_equal(back.uncertainty.array, 0.25)
    assert back.unit == u.electron / u.s
    assert back.meta["OBJECT"] == "lens-7"
    assert list(back.meta["HISTORY"]) == ["simulated", "enhanced x2", "by lensenhance"]
    assert_same_sky(back.wcs, ccd.wcs)
    assert (back.wcs.sip is not None) == (kind == "sip")

    # DS9 and plain astropy see the science image first; CCDData reads the file too.
    np.testing.assert_array_equal(fits.getdata(path), ccd.data)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "MASK", "UNCERT"]
        assert hdul["MASK"].data.dtype == np.uint8
        assert hdul["UNCERT"].header["UTYPE"] == "StdDevUncertainty"
    other = CCDData.read(path)
    np.testing.assert_array_equal(other.mask, ccd.mask)


def test_write_plain_image_and_dimensionless(tmp_path):
    path = tmp_path / "plain.fits"
    io.write_image(CCDData(np.ones((3, 4)), unit=u.dimensionless_unscaled), path,
                   history="one line")
    with fits.open(path) as hdul:
        assert len(hdul) == 1
        assert list(hdul[0].header["HISTORY"]) == ["one line"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingUnitWarning)
        back = io.read_image(path)
    assert back.unit == u.dimensionless_unscaled
    assert back.wcs is None and back.mask is None and back.uncertainty is None


def test_write_image_converts_variance_and_dict_meta(tmp_path):
    ccd = CCDData(np.ones((3, 4)), unit="adu", uncertainty=VarianceUncertainty(np.full((3, 4),
                                                                                       4.0)),
                  meta={"OBJECT": "x", "HISTORY": ["a", "b"], "LONGKEYWORD": 3,
                        "BZERO": 32768, "BSCALE": 2, "NAXIS3": 5, "BUNIT": "Jy",
                        "PARAMS": {"theta_E": 1.2}})
    path = tmp_path / "var.fits"
    io.write_image(ccd, path)
    back = io.read_image(path)
    # Stale layout keywords of the meta do not rescale the data; the unit is the CCD's.
    np.testing.assert_array_equal(back.data, 1.0)
    assert back.unit == u.adu
    np.testing.assert_allclose(back.uncertainty.array, 2.0)
    assert list(back.meta["HISTORY"]) == ["a", "b"]
    assert back.meta["LONGKEYWORD"] == 3
    assert back.meta["PARAMS"] == '{"theta_E": 1.2}'


def test_rewritten_wcs_replaces_stale_header_keys(tmp_path, fits_path):
    """An upsampled image written from a read one must carry the new WCS, not the old."""
    ccd = io.read_image(fits_path)
    up = CCDData(np.kron(ccd.data, np.ones((2, 2), np.float32)) / 4, unit=ccd.unit,
                 wcs=io.upsample_wcs(ccd.wcs, 2), meta=ccd.meta)
    path = tmp_path / "up.fits"
    io.write_image(up, path)
    back = io.read_image(path)
    np.testing.assert_allclose(back.wcs.wcs.crpix, up.wcs.wcs.crpix)
    np.testing.assert_allclose(back.wcs.sip.a, up.wcs.sip.a)
    assert_same_sky(back.wcs, up.wcs, shape=up.shape)


def test_write_image_refuses_overwrite(tmp_path):
    path = tmp_path / "exists.fits"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="exists.fits"):
        io.write_image(make_ccd(), path)
    assert path.read_bytes() == b"keep me"
    io.write_image(make_ccd(), path, overwrite=True)
    np.testing.assert_array_equal(fits.getdata(path), make_data())
    assert sorted(os.listdir(tmp_path)) == ["exists.fits"]


@pytest.mark.parametrize("existing", [False, True])
def test_write_image_failure_leaves_no_partial_file(tmp_path, monkeypatch, existing):
    path = tmp_path / "target.fits"
    if existing:
        path.write_bytes(b"old content")

    def failing_writeto(self, name, **kwargs):
        Path(name).write_bytes(b"SIMPLE  =  partial")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", failing_writeto)
    with pytest.raises(OSError, match="disk full"):
        io.write_image(make_ccd(), path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == (["target.fits"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old content"


def test_write_image_unsupported_dtype_writes_nothing(tmp_path):
    path = tmp_path / "complex.fits"
    with pytest.raises(TypeError, match="complex.fits.*complex128"):
        io.write_image(CCDData(np.ones((3, 3), dtype=complex), unit="adu"), path)
    assert os.listdir(tmp_path) == []


def test_write_image_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="CCDData"):
        io.write_image(np.ones((3, 3)), tmp_path / "a.fits")
    with pytest.raises(FileNotFoundError, match="missing"):
        io.write_image(make_ccd(), tmp_path / "missing" / "a.fits")


# --------------------------------------------------------------------------------------
# WCS resampling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cd", "pc", "crota", "sip"])
@pytest.mark.parametrize("factor", [2, 4])
def test_upsample_wcs_preserves_sky_positions(kind, factor):
    wcs = WCS(make_header(kind))
    wcs.pixel_shape = SHAPE[::-1]
    new = io.upsample_wcs(wcs, factor)
    assert new.pixel_shape == (SHAPE[1] * factor, SHAPE[0] * factor)
    assert wcs.pixel_shape == SHAPE[::-1]  # the input is not changed

    j, i = np.mgrid[0 : SHAPE[0] * factor, 0 : SHAPE[1] * factor]  # output pixels
    expected = wcs.pixel_to_world_values((i + 0.5) / factor - 0.5, (j + 0.5) / factor - 0.5)
    np.testing.assert_allclose(new.pixel_to_world_values(i, j), expected, rtol=0, atol=1e-9)

    if kind == "sip":
        # The inverse polynomials (AP, BP) scale the same way: pixel positions found from
        # sky positions map through the same affine relation.
        sky = wcs.pixel_to_world(np.array([0.0, 5.5, 15.0]), np.array([0.0, 7.2, 11.0]))
        old_x, old_y = wcs.world_to_pixel(sky)
        new_x, new_y = new.world_to_pixel(sky)
        np.testing.assert_allclose(new_x, (old_x + 0.5) * factor - 0.5, atol=1e-6)
        np.testing.assert_allclose(new_y, (old_y + 0.5) * factor - 0.5, atol=1e-6)
        np.testing.assert_allclose(new.sip.ap[2, 0], wcs.sip.ap[2, 0] / factor)
        np.testing.assert_allclose(new.sip.ap[1, 0], wcs.sip.ap[1, 0])


@pytest.mark.parametrize("kind", ["cd", "pc", "sip"])
@pytest.mark.parametrize("factor", [2, 3])
def test_downsample_wcs_block_centres_and_inverse(kind, factor):
    wcs = WCS(make_header(kind))
    wcs.pixel_shape = (SHAPE[1] * factor + 1, SHAPE[0] * factor)
    down = io.downsample_wcs(wcs, factor)
    assert down.pixel_shape == (SHAPE[1], SHAPE[0])  # a remainder column is dropped
    j, i = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    centre = (factor - 1) / 2
    expected = wcs.pixel_to_world_values(factor * i + centre, factor * j + centre)
    np.testing.assert_allclose(down.pixel_to_world_values(i, j), expected, rtol=0, atol=1e-9)

    again = io.downsample_wcs(io.upsample_wcs(wcs, factor), factor)
    np.testing.assert_allclose(again.wcs.crpix, wcs.wcs.crpix, rtol=1e-14)
    np.testing.assert_allclose(again.pixel_scale_matrix, wcs.pixel_scale_matrix, rtol=1e-14)
    if kind == "sip":
        np.testing.assert_allclose(again.sip.a, wcs.sip.a, rtol=1e-12)
        np.testing.assert_allclose(again.sip.bp, wcs.sip.bp, rtol=1e-12)
    assert_same_sky(again, wcs)


@pytest.mark.parametrize("factor", [0, -2, 1.5, True, "2", None])
def test_resample_wcs_rejects_bad_factor(factor):
    with pytest.raises(ValueError, match="factor"):
        io.upsample_wcs(WCS(make_header()), factor)


def test_resample_wcs_rejects_bad_wcs():
    linear = WCS(naxis=2)
    linear.wcs.ctype = ["LINEAR", "LINEAR"]
    cube = WCS(naxis=3)
    cube.wcs.ctype = ["RA---TAN", "DEC--TAN", "FREQ"]
    for wcs in (linear, cube):
        with pytest.raises(ValueError, match="celestial"):
            io.upsample_wcs(wcs, 2)
        with pytest.raises(ValueError, match="celestial"):
            io.downsample_wcs(wcs, 2)
    with pytest.raises(TypeError):
        io.upsample_wcs(make_header(), 2)


# --------------------------------------------------------------------------------------
# Catalogs
# --------------------------------------------------------------------------------------


@pytest.fixture
def catalog_dir(tmp_path):
    folder = tmp_path / "cat"
    (folder / "sub").mkdir(parents=True)
    return folder


@pytest.mark.parametrize("suffix", [".ecsv", ".fits", ".fits.gz"])
def test_read_catalog_resolves_paths(catalog_dir, suffix):
    table = Table({
        "path": ["a.fits", "sub/b.fits"],
        "lr_path": ["sub/lr_a.fits", "./lr_b.fits"],
        "label": ["x", "y"],
    })
    path = catalog_dir / f"catalog{suffix}"
    table.write(path, format="ascii.ecsv" if suffix == ".ecsv" else "fits")
    out = io.read_catalog(path)
    root = catalog_dir.resolve()
    assert list(out["path"]) == [str(root / "a.fits"), str(root / "sub" / "b.fits")]
    assert list(out["lr_path"]) == [str(root / "sub" / "lr_a.fits"), str(root / "lr_b.fits")]
    assert list(out["label"]) == ["x", "y"]


@pytest.mark.parametrize("escape", ["dotdot", "absolute", "symlink"])
def test_read_catalog_refuses_escaping_paths(catalog_dir, tmp_path, escape):
    outside = tmp_path / "secret.fits"
    outside.write_bytes(b"")
    if escape == "symlink":
        (catalog_dir / "link.fits").symlink_to(outside)
    bad = {"dotdot": "../secret.fits", "absolute": str(outside), "symlink": "link.fits"}[escape]
    path = catalog_dir / "catalog.ecsv"
    Table({"hr_path": ["ok.fits", bad]}).write(path)
    with pytest.raises(ValueError, match=r"catalog\.ecsv.*row 1.*hr_path.*(secret|link)"):
        io.read_catalog(path)
    out = io.read_catalog(path, allow_outside=True)
    assert out["hr_path"][1] == str(outside.resolve())


def test_read_catalog_extra_path_columns_and_masked(catalog_dir):
    path = catalog_dir / "catalog.ecsv"
    table = Table({"target": ["t.fits", "u.fits"]}, masked=True)
    table["target"].mask = [False, True]
    table.write(path)
    out = io.read_catalog(path, path_columns=("target", "absent"))
    assert out["target"][0] == str(catalog_dir.resolve() / "t.fits")
    assert out["target"].mask[1]


def test_read_catalog_errors(catalog_dir):
    with pytest.raises(FileNotFoundError, match="none.ecsv"):
        io.read_catalog(catalog_dir / "none.ecsv")
    with pytest.raises(IsADirectoryError):
        io.read_catalog(catalog_dir)
    bad = catalog_dir / "bad.ecsv"
    bad.write_text("# %ECSV 1.0\n# ---\n# garbage: [\nx\n1\n")
    with pytest.raises(OSError, match="bad.ecsv"):
        io.read_catalog(bad)
    other = catalog_dir / "table.csv"
    other.write_text("path\na.fits\n")
    with pytest.raises(ValueError, match="table.csv"):
        io.read_catalog(other)


@pytest.mark.parametrize("suffix", [".ecsv", ".fits"])
def test_write_catalog_relative_paths_round_trip(catalog_dir, tmp_path, suffix):
    root = catalog_dir.resolve()
    elsewhere = str((tmp_path / "elsewhere.fits").resolve())
    table = Table({
        "path": [str(root / "sub" / "a.fits"), elsewhere, "already/relative.fits"],
        "flux": [1.0, 2.0, 3.0],
    })
    path = catalog_dir / f"out{suffix}"
    io.write_catalog(table, path)
    raw = Table.read(path)
    assert list(raw["path"]) == ["sub/a.fits", elsewhere, "already/relative.fits"]
    back = io.read_catalog(path, allow_outside=True)
    assert list(back["path"]) == [str(root / "sub" / "a.fits"), elsewhere,
                                  str(root / "already" / "relative.fits")]
    with pytest.raises(FileExistsError, match=f"out{suffix}"):
        io.write_catalog(table, path)
    io.write_catalog(table, path, overwrite=True)


def test_write_catalog_relative_to(catalog_dir):
    path = catalog_dir / "out.ecsv"
    io.write_catalog(Table({"path": ["sub/x.fits", "../y.fits"]}), path,
                     relative_to=catalog_dir / "sub")
    # sub/sub/x.fits lies inside the catalog folder; sub/../y.fits is its y.fits.
    assert list(Table.read(path)["path"]) == ["sub/sub/x.fits", "y.fits"]


# --------------------------------------------------------------------------------------
# xarray
# --------------------------------------------------------------------------------------


def test_to_from_dataarray_round_trip():
    ccds = [make_ccd("sip"), make_ccd("sip")]
    ccds[1].data = ccds[1].data * 2
    ccds[1].meta["OBJECT"] = "lens-8"
    da = io.to_dataarray(ccds)
    assert da.dims == ("image", "y", "x")
    assert da.shape == (2, *SHAPE)
    assert da.attrs["unit"] == "electron / s"
    assert "CRPIX1" in da.attrs["wcs"]
    assert "wcs" not in da.coords  # one shared WCS
    assert list(da["object"].values) == ["lens-7", "lens-8"]
    assert np.isnan(da.values[0][ccds[0].mask]).all()

    back = io.from_dataarray(da)
    assert len(back) == 2
    for ccd, out in zip(ccds, back):
        np.testing.assert_array_equal(out.data[~ccd.mask], ccd.data[~ccd.mask])
        np.testing.assert_array_equal(out.mask, ccd.mask)
        assert out.unit == ccd.unit
        assert out.meta["OBJECT"] == ccd.meta["OBJECT"]
        assert_same_sky(out.wcs, ccd.wcs)


def test_to_dataarray_different_wcs_and_arrays():
    first, second = make_ccd("cd"), make_ccd("pc")
    da = io.to_dataarray([first, second])
    assert "wcs" in da.coords
    back = io.from_dataarray(da)
    assert_same_sky(back[1].wcs, second.wcs)

    cube = np.ones((3, 4, 5), dtype=np.float64)
    with pytest.warns(MissingUnitWarning):
        da = io.to_dataarray(cube)
    assert da.shape == (3, 4, 5) and da.dtype == np.float32 and da.attrs["unit"] == ""
    assert "wcs" not in da.attrs
    assert io.to_dataarray(cube * u.adu).attrs["unit"] == "adu"
    assert io.to_dataarray(np.ones((4, 5)), unit="adu").shape == (1, 4, 5)
    assert io.from_dataarray(da[0])[0].shape == (4, 5)


def test_to_dataarray_rejects_mismatches():
    with pytest.raises(ValueError, match="shape"):
        io.to_dataarray([np.ones((3, 3)), np.ones((3, 4))], unit="adu")
    with pytest.raises(ValueError, match="unit"):
        io.to_dataarray([np.ones((3, 3)) * u.adu, np.ones((3, 3)) * u.Jy])
    with pytest.raises(ValueError, match="no images"):
        io.to_dataarray([])


@pytest.mark.parametrize("suffix, module", [(".nc", "h5netcdf"), (".zarr", "zarr")])
def test_save_open_dataset_round_trip(tmp_path, suffix, module):
    pytest.importorskip(module)
    dask_array = pytest.importorskip("dask.array")
    da = io.to_dataarray([make_ccd("sip"), make_ccd("sip")])
    ds = da.to_dataset()
    ds.attrs.update(config={"preset": "model_i", "scale": 2}, noise=True, seed=None,
                    bands=["g", "r"], pixel_scale=0.05, n_images=2,
                    weights=np.array([0.5, 1.5]))
    path = tmp_path / f"set{suffix}"
    io.write_dataset(ds, path)
    with io.read_dataset(path) as back:
        assert isinstance(back["data"].data, dask_array.Array)
        assert back.attrs["config"] == {"preset": "model_i", "scale": 2}
        assert back.attrs["noise"] is True and back.attrs["seed"] is None
        assert back.attrs["bands"] == ["g", "r"]
        assert back.attrs["pixel_scale"] == 0.05 and back.attrs["n_images"] == 2
        np.testing.assert_array_equal(back.attrs["weights"], [0.5, 1.5])
        assert back["data"].attrs == da.attrs
        np.testing.assert_array_equal(back["data"].values, da.values)
        images = io.from_dataarray(back["data"])
        assert_same_sky(images[0].wcs, make_ccd("sip").wcs)
        assert images[1].meta["OBJECT"] == "lens-7"

    with pytest.raises(FileExistsError, match=f"set{suffix}"):
        io.write_dataset(ds, path)
    io.write_dataset(ds.isel(image=[0]), path, overwrite=True)
    with io.read_dataset(path) as back:
        assert back.sizes["image"] == 1
    assert sorted(os.listdir(tmp_path)) == [f"set{suffix}"]


def test_save_dataset_failure_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("h5netcdf")
    import xarray as xr

    def failing(self, path, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("interrupted")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", failing)
    with pytest.raises(OSError, match="interrupted"):
        io.write_dataset(io.to_dataarray([make_ccd()]), tmp_path / "x.nc")
    assert os.listdir(tmp_path) == []


def test_dataset_errors(tmp_path):
    da = io.to_dataarray([make_ccd()])
    with pytest.raises(ValueError, match="x.h5"):
        io.write_dataset(da, tmp_path / "x.h5")
    with pytest.raises(FileNotFoundError, match="none.nc"):
        io.read_dataset(tmp_path / "none.nc")
    with pytest.raises(TypeError):
        io.write_dataset({"a": 1}, tmp_path / "x.nc")


# --------------------------------------------------------------------------------------
# The io package: dtype, memory maps, streamed writing, every WCS in a header
# --------------------------------------------------------------------------------------


def test_io_package_reexports_the_old_names():
    for name in ("read_image", "write_image", "read_catalog", "write_catalog", "to_dataarray",
                 "from_dataarray", "write_dataset", "read_dataset", "upsample_wcs",
                 "downsample_wcs", "describe_image", "MissingUnitWarning",
                 "WCSResampleWarning"):
        assert hasattr(io, name)


def test_read_image_keeps_float64_and_maps_files(tmp_path):
    data = np.arange(12.0).reshape(3, 4) * 1e40
    path = tmp_path / "f64.fits"
    fits.writeto(path, data, fits.Header({"BUNIT": "adu"}))
    kept = io.read_image(path, dtype=None, memmap=True)
    assert kept.data.dtype.itemsize == 8 and np.array_equal(kept.data, data)
    masked = io.read_image(np.ma.MaskedArray(np.ones((3, 3)), mask=np.eye(3, dtype=bool)),
                           unit="adu")
    assert masked.mask.sum() == 3


def test_create_image_streams_the_write_image_layout(tmp_path):
    path = tmp_path / "big.fits"
    wcs = WCS(make_header("cd"))
    with io.create_image(path, shape=(30, 20), unit="electron", wcs=wcs, mask=True,
                         uncertainty=True, meta={"OBJECT": "x"}) as arrays:
        arrays.data[:] = 1.5
        arrays.mask[2, 3] = 1
        arrays.uncertainty[:] = 0.5
        assert not path.exists()  # atomic: only a temporary file so far
    ccd = io.read_image(path)
    assert ccd.shape == (30, 20) and ccd.unit == u.electron and ccd.meta["OBJECT"] == "x"
    assert ccd.mask.sum() == 1 and np.allclose(ccd.uncertainty.array, 0.5)
    assert_same_sky(ccd.wcs, wcs, shape=(30, 20))
    with pytest.raises(FileExistsError):
        with io.create_image(path, shape=(2, 2)):
            pass


def test_resample_header_wcs_handles_alternates_ltv_and_refuses_the_rest():
    header = fits.Header()
    header.update(CTYPE1B="RA---TAN", CTYPE2B="DEC--TAN", CRPIX1B=5.0, CRPIX2B=6.0,
                  CRVAL1B=10.0, CRVAL2B=20.0, CD1_1B=-1e-4, CD2_2B=1e-4, LTV1=-10.0,
                  CTYPE1C="RA---TAN", CTYPE2C="DEC--TAN", CTYPE3C="FREQ", CRPIX3C=1.0,
                  DETSEC="[1:10,1:10]")
    with pytest.warns(io.WCSResampleWarning) as caught:
        new = io.resample_header_wcs(header, 2, name="img.fits")
    messages = " ".join(str(w.message) for w in caught)
    assert "img.fits" in messages and "'C'" in messages and "DETSEC" in messages
    assert not any(key.endswith("C") and key[:5] in ("CTYPE", "CRPIX") for key in new)
    assert new["LTV1"] == pytest.approx(-20.5) and new["LTM1_1"] == 2.0
    # LTV2 was absent (0): it is not 0 on the new grid (physical y of a pixel centre)
    assert new["LTV2"] == pytest.approx(-0.5) and new["LTM2_2"] == 2.0
    x, y = np.array([0.0, 3.0]), np.array([0.0, 7.0])
    np.testing.assert_allclose(
        WCS(new, key="B").pixel_to_world_values((x + 0.5) * 2 - 0.5, (y + 0.5) * 2 - 0.5),
        WCS(header, key="B").pixel_to_world_values(x, y), atol=1e-10)


@pytest.mark.parametrize("kind", ["uint16", "bscale", "blank"])
def test_scaled_integer_files_are_read_even_when_mapped(tmp_path, kind):
    # Camera images store integers with BZERO/BSCALE/BLANK, which astropy cannot map.
    path = tmp_path / f"{kind}.fits"
    if kind == "uint16":
        fits.writeto(path, np.full((6, 5), 40000, np.uint16), fits.Header({"BUNIT": "adu"}))
        expected = np.full((6, 5), 40000.0)
    else:
        hdu = fits.PrimaryHDU(np.arange(30, dtype=np.int16).reshape(6, 5))
        hdu.header["BUNIT"] = "adu"
        if kind == "bscale":
            hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 10.0
            expected = np.arange(30).reshape(6, 5) * 0.5 + 10.0
        else:
            hdu.header["BLANK"] = 7
            expected = np.arange(30, dtype=float).reshape(6, 5)
            expected[1, 2] = np.nan
        hdu.writeto(path)
    for memmap in (False, True):
        ccd = io.read_image(path, memmap=memmap)
        np.testing.assert_array_equal(ccd.data, expected.astype(np.float32))


def test_old_dataset_names_warn_and_still_work(tmp_path):
    import lensenhance as le

    da = io.to_dataarray([make_ccd()])
    with pytest.warns(DeprecationWarning, match="write_dataset"):
        le.save_dataset(da, tmp_path / "x.nc")
    with pytest.warns(DeprecationWarning, match="xarray.open_dataset"):
        with le.open_dataset(tmp_path / "x.nc") as back:
            np.testing.assert_array_equal(back["data"].values, da.values)
    assert "open_dataset" not in le.__all__ and "read_dataset" in le.__all__
