"""Tests of lensenhance.predict.normalization."""

import dataclasses

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData

from lensenhance.predict.normalization import Normalization, fit_normalization

SKY, NOISE = 10.0, 0.5


def lens_image(shape=(64, 64), *, noise=NOISE, seed=0):
    """Sky + noise + a bright Gaussian lens and a faint ring (arc) around it."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape) - (np.array(shape)[:, None, None] - 1) / 2
    r = np.hypot(x, y)
    image = SKY + 40.0 * np.exp(-0.5 * (r / 3.0) ** 2) + 8.0 * np.exp(-0.5 * ((r - 12) / 1.5) ** 2)
    return (image + rng.normal(0, noise, shape)).astype(np.float32)


def test_apply_invert_round_trip():
    norm = Normalization(offset=10.0, scale=4.0, method="fixed")
    data = lens_image()
    normed = norm.apply(data)
    assert normed.dtype == np.float32
    np.testing.assert_allclose(normed, (data - 10) / 4, rtol=1e-6)
    np.testing.assert_allclose(norm.invert(normed), data, rtol=1e-6)
    np.testing.assert_allclose(norm.invert_std(np.full(3, 0.5)), 2.0)
    assert np.isnan(norm.apply(np.array([np.nan]))).all()


@pytest.mark.parametrize("meta_type", [dict, fits.Header])
def test_meta_round_trip(meta_type, tmp_path):
    norm = fit_normalization(lens_image())
    meta = norm.to_meta(meta_type())
    assert set(meta.keys()) >= {"LENORMOF", "LENORMSC", "LENORMMT"}
    assert Normalization.from_meta(meta) == norm
    if meta_type is fits.Header:
        # Header-safe: survives a FITS file.
        path = tmp_path / "n.fits"
        fits.PrimaryHDU(np.zeros((2, 2)), meta).writeto(path)
        assert Normalization.from_meta(fits.getheader(path)) == norm


def test_from_meta_missing_key():
    with pytest.raises(KeyError, match="LENORMSC"):
        Normalization.from_meta({"LENORMOF": 1.0, "LENORMMT": "fixed"})


def test_normalization_validation_repr_frozen():
    with pytest.raises(ValueError, match="scale"):
        Normalization(0.0, 0.0)
    with pytest.raises(ValueError, match="offset"):
        Normalization(np.nan, 1.0)
    with pytest.raises(ValueError, match="method"):
        Normalization(0.0, 1.0, "magic")
    norm = Normalization(np.float32(1.5), np.float64(2.0), "sigma_clip")
    assert repr(norm) == "Normalization(offset=1.5, scale=2, method='sigma_clip')"
    assert type(norm.offset) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        norm.scale = 3.0


@pytest.mark.parametrize("method", ["sigma_clip", "background2d"])
def test_fit_lens_image_values_order_one(method):
    data = lens_image((96, 96))
    norm = fit_normalization(data, method=method, box_size=32)
    assert norm.method == method
    # The offset is the sky, not pulled up by the lens.
    assert abs(norm.offset - SKY) < 0.3 * NOISE
    normed = norm.apply(data)
    assert 1.0 < np.nanmax(normed) < 10.0
    assert abs(np.median(normed)) < 0.2
    np.testing.assert_allclose(norm.invert(normed), data, rtol=1e-5)


def test_fit_ignores_nan_and_masked_pixels():
    data = lens_image()
    reference = fit_normalization(data)
    corrupted = data.copy()
    corrupted[:4] = np.nan
    corrupted[-4:] = 1e9
    mask = np.zeros(data.shape, bool)
    mask[-4:] = True
    clean = data.copy()
    clean[:4] = np.nan
    clean[-4:] = np.nan
    expected = fit_normalization(clean)
    got = fit_normalization(corrupted, mask=mask)
    assert got == expected
    assert abs(got.offset - reference.offset) < 0.1 * NOISE
    # The mask of an NDData is used as well.
    assert fit_normalization(CCDData(corrupted, unit="adu", mask=mask)) == expected


def test_fit_constant_and_zero_images():
    constant = np.full((16, 16), 5.0, dtype=np.float32)
    norm = fit_normalization(constant)
    assert norm.offset == 5.0 and 0 < norm.scale < 1e-5
    np.testing.assert_array_equal(norm.apply(constant), 0.0)
    np.testing.assert_array_equal(norm.invert(norm.apply(constant)), constant)
    zero = fit_normalization(np.zeros((8, 8)))
    assert zero.offset == 0.0 and zero.scale == 1.0


def test_fit_pure_noise_uses_positive_scale():
    rng = np.random.default_rng(1)
    data = rng.normal(-3.0, 2.0, (64, 64))
    norm = fit_normalization(data)
    assert abs(norm.offset + 3.0) < 0.2
    # 99.5th percentile of a Gaussian: about 2.58 sigma.
    assert 4.0 < norm.scale < 6.5
    below = fit_normalization(np.where(data > -3.0, -3.0, data))  # nothing above the sky
    assert below.scale > 0


def test_fit_small_values_keep_their_scale():
    """Data in tiny units (erg/s/cm2/A) are not swamped by an absolute floor."""
    data = lens_image() * 1e-20
    norm = fit_normalization(data * u.erg)
    assert 1e-21 < norm.scale < 1e-18
    assert 1.0 < np.max(norm.apply(data)) < 10.0


def test_fit_fixed_and_overrides():
    norm = fit_normalization(lens_image(), method="fixed", offset=1.0, scale=2.0)
    assert norm == Normalization(1.0, 2.0, "fixed")
    with pytest.raises(ValueError, match="offset= and scale="):
        fit_normalization(lens_image(), method="fixed", offset=1.0)
    partial = fit_normalization(lens_image(), offset=0.0)
    assert partial.offset == 0.0 and partial.scale > SKY


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "median"}, "method"),
        ({"box_size": 0}, "box_size"),
        ({"percentile": 0}, "percentile"),
    ],
)
def test_fit_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_normalization(lens_image(), **kwargs)


def test_fit_no_good_pixels_and_bad_mask():
    with pytest.raises(ValueError, match="no finite"):
        fit_normalization(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="no finite"):
        fit_normalization(np.ones((4, 4)), mask=np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="mask shape"):
        fit_normalization(np.ones((4, 4)), mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="2-D"):
        fit_normalization(np.ones(16), method="background2d")


def test_scale_floor_of_a_flat_image_ignores_a_hot_pixel():
    from lensenhance.predict.normalization import fit_normalization

    flat = np.full((64, 64), 100.0)
    hot = flat.copy()
    hot[5, 5] = 1e30
    expected = fit_normalization(flat).scale
    assert fit_normalization(hot).scale == pytest.approx(expected)
    assert expected == pytest.approx(np.finfo(np.float32).eps * 100.0)
