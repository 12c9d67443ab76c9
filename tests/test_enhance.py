import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs import WCS

import lensenhance as le
from lensenhance.enhance import Enhancer


class NearestUpsample(torch.nn.Module):
    """Splits each pixel into s x s copies: the exact flux bookkeeping is easy to check."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x.repeat_interleave(self.scale, -1).repeat_interleave(self.scale, -2)


def lens_like(shape=(24, 20), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    ring = np.exp(-((np.hypot(x - shape[1] / 2, y - shape[0] / 2) - 6) ** 2) / 4)
    return (100 * ring + 5 + rng.normal(0, 1, shape)).astype(np.float32)


def tan_wcs(shape, scale_deg=1e-5):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.2]
    w.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    w.wcs.cdelt = [-scale_deg, scale_deg]
    w.pixel_shape = shape[::-1]
    return w


@pytest.fixture
def nearest():
    return Enhancer(NearestUpsample(2), scale=2, name="nearest", device="cpu")


def block_sum(image, s):
    h, w = image.shape
    return image.reshape(h // s, s, w // s, s).sum(axis=(1, 3))


def test_flux_is_conserved_and_normalisation_undone(nearest):
    image = lens_like()
    out = nearest.enhance(image)
    assert isinstance(out, np.ndarray) and out.shape == (48, 40)
    np.testing.assert_allclose(block_sum(out, 2), image, rtol=1e-5, atol=1e-4)


def test_ccddata_keeps_unit_and_upsamples_wcs(nearest):
    image = lens_like()
    ccd = CCDData(image, unit="electron/s", wcs=tan_wcs(image.shape))
    out = nearest.enhance(ccd)
    assert isinstance(out, CCDData)
    assert out.unit == u.electron / u.s
    assert out.shape == (48, 40)
    # Output pixel (i, j) sits where input pixel ((i + 0.5)/2 - 0.5, ...) sits.
    j, i = np.meshgrid(np.arange(40), np.arange(48))
    sky_out = out.wcs.pixel_to_world(j, i)
    sky_in = ccd.wcs.pixel_to_world((j + 0.5) / 2 - 0.5, (i + 0.5) / 2 - 0.5)
    assert np.max(sky_out.separation(sky_in).deg) < 1e-9
    assert any("nearest" in str(card) for card in out.meta["HISTORY"])
    assert ccd.shape == image.shape  # the input is not modified


def test_surface_brightness_is_not_divided(nearest):
    image = lens_like()
    out = nearest.enhance(CCDData(image, unit="MJy/sr"))
    np.testing.assert_allclose(out.data[::2, ::2], image, rtol=1e-5, atol=1e-4)


def test_quantity_in_quantity_out(nearest):
    image = lens_like() * u.Jy
    out = nearest.enhance(image)
    assert isinstance(out, u.Quantity) and out.unit == u.Jy
    np.testing.assert_allclose(block_sum(out.value, 2), image.value, rtol=1e-5, atol=1e-4)


def test_masked_and_nan_pixels_stay_masked(nearest):
    image = lens_like()
    image[3, 4] = np.nan
    mask = np.zeros(image.shape, bool)
    mask[10, 10] = True
    out = nearest.enhance(CCDData(image, unit="adu", mask=mask))
    assert out.mask[6:8, 8:10].all() and out.mask[20:22, 20:22].all()
    assert out.mask.sum() == 8
    assert np.isfinite(out.data[~out.mask]).all()
    plain = nearest.enhance(image)
    assert np.isnan(plain[6:8, 8:10]).all()
    assert np.isfinite(plain).sum() == plain.size - 4


def test_fits_path_and_hdu(tmp_path, nearest):
    image = lens_like()
    hdu = fits.PrimaryHDU(image, header=tan_wcs(image.shape).to_header())
    hdu.header["BUNIT"] = "electron"
    path = tmp_path / "lens.fits"
    hdu.writeto(path)
    for source in (path, str(path), hdu, fits.HDUList([hdu])):
        out = nearest.enhance(source)
        assert isinstance(out, CCDData) and out.unit == u.electron
        assert out.wcs is not None and out.shape == (48, 40)


def test_stack_list_and_dataarray(nearest):
    stack = np.stack([lens_like(seed=k) for k in range(3)])
    out = nearest.enhance(stack)
    assert out.shape == (3, 48, 40)
    listed = nearest.enhance(list(stack))
    assert isinstance(listed, list) and len(listed) == 3
    np.testing.assert_allclose(listed[1], out[1])
    da = le.io.to_dataarray([CCDData(s, unit="adu") for s in stack])
    out_da = nearest.enhance(da)
    assert out_da.dims == ("image", "y", "x") and out_da.shape == (3, 48, 40)


def test_self_ensemble_matches_equivariant_model(nearest):
    image = lens_like()
    ensemble = Enhancer(NearestUpsample(2), scale=2, self_ensemble=True, device="cpu")
    np.testing.assert_allclose(ensemble.enhance(image), nearest.enhance(image), rtol=1e-5,
                               atol=1e-5)


def test_interpolation_baseline_is_smooth_and_keeps_flux():
    image = lens_like()
    out = Enhancer.interpolation("bicubic", scale=2).enhance(image)
    assert out.shape == (48, 40)
    assert abs(out.sum() - image.sum()) / image.sum() < 0.02


def test_repr_and_validation(nearest):
    assert "nearest" in repr(nearest) and "scale=2" in repr(nearest)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Enhancer(lambda x: x, scale=2)
    with pytest.raises(ValueError, match="scale"):
        Enhancer(NearestUpsample(2), scale=0)
    with pytest.raises(TypeError, match="cannot enhance"):
        nearest.enhance({"not": "an image"})
