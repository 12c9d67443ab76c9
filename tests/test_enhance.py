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


def test_dataarray_keeps_its_dims_name_coords_attrs_and_float64(nearest):
    import xarray as xr

    image = lens_like().astype(np.float64)
    wcs = tan_wcs(image.shape)
    stored = le.io.to_dataarray([CCDData(image, unit="adu", wcs=wcs)]).attrs["wcs"]
    da = xr.DataArray(image, dims=("row", "col"), name="flux",
                      coords={"row": np.arange(24) * 2.0, "col": np.arange(20)},
                      attrs={"unit": "adu", "telescope": "HSC", "wcs": stored})
    out = nearest.enhance(da)
    assert out.dims == ("row", "col") and out.name == "flux" and out.dtype == np.float64
    assert out.attrs["telescope"] == "HSC" and out.attrs["LEMODEL"] == "nearest"
    # Pixel coordinates and the WCS describe the new grid: the same sky at the same place.
    np.testing.assert_allclose(out.coords["row"].values[:3], [-0.5, 0.5, 1.5])
    new_wcs = le.io.from_dataarray(out)[0].wcs
    np.testing.assert_allclose(new_wcs.pixel_to_world_values(10.5, 20.5),
                               wcs.pixel_to_world_values(5, 10), atol=1e-10)
    bands = xr.DataArray(np.stack([image, 2 * image]), dims=("band", "y", "x"),
                         coords={"band": ["g", "r"]}, attrs={"unit": "adu"})
    out = nearest.enhance(bands)
    assert out.dims == ("band", "y", "x") and list(out.coords["band"].values) == ["g", "r"]
    assert out.coords["LENORMSC"].dims == ("band",)  # per-image provenance along the stack


def test_dict_meta_wcs_is_resampled_too(nearest):
    image = lens_like()
    header = tan_wcs(image.shape).to_header()
    ccd = CCDData(image, unit="adu", meta=dict(header))  # no wcs=: the WCS is in the meta
    out = nearest.enhance(ccd)
    assert out.meta["CRPIX1"] == pytest.approx((header["CRPIX1"] - 0.5) * 2 + 0.5)
    from astropy.wcs import WCS

    resampled = WCS(fits.Header({k: v for k, v in out.meta.items() if k != "HISTORY"}))
    np.testing.assert_allclose(resampled.pixel_to_world_values(10.5, 20.5),
                               WCS(header).pixel_to_world_values(5, 10), atol=1e-10)


def test_stack_input_checks(nearest):
    masked = np.ma.MaskedArray(np.stack([lens_like(), lens_like(seed=1)]))
    masked[0, 3, 3] = np.ma.masked
    out = nearest.enhance(masked)
    assert np.ma.isMaskedArray(out) and out.mask[0, 6:8, 6:8].all() and out.mask.sum() == 4
    with pytest.raises(ValueError, match="empty stack"):
        nearest.enhance(np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match="hdu=1 applies only to FITS"):
        nearest.enhance(lens_like(), hdu=1)
    with pytest.raises(TypeError, match="numpy.asarray"):
        nearest.enhance([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="seed"):
        nearest.enhance(lens_like(), seed="a")


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


# --------------------------------------------------------------------------------------
# The engine: tiles, dask, honest pixels (issue 9)
# --------------------------------------------------------------------------------------

import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

from astropy.nddata import StdDevUncertainty  # noqa: E402

from lensenhance.nn import build_sr_model, export_weights  # noqa: E402


def tiny_edsr(scale=2, channels=8):
    torch.manual_seed(0)
    return build_sr_model("edsr", scale=scale, n_blocks=1, channels=channels).eval()


@pytest.fixture(scope="module")
def edsr_x2():
    return Enhancer.from_pretrained("edsr-x2", device="cpu")


def test_tiled_enhancer_equals_whole_and_records_provenance():
    image = lens_like((60, 50))
    enh = Enhancer(tiny_edsr(), tile_size=30, device="cpu")
    tiled = enh.enhance(CCDData(image, unit="adu"))
    whole = enh.enhance(CCDData(image, unit="adu"), tile_size=None)
    np.testing.assert_allclose(tiled.data, whole.data, rtol=1e-5, atol=1e-5)
    meta = tiled.meta
    assert meta["LEMODEL"] == "EDSR" and len(meta["LEWSHA"]) == 64
    assert meta["LEVERS"] == le.__version__ and meta["LETILE"] == 30
    assert meta["LENORMMT"] == "sigma_clip" and meta["LENORMSC"] > 0


def test_local_cluster_equals_serial():
    from distributed import Client, LocalCluster

    image = lens_like((50, 44))
    ccd = CCDData(image, unit="adu", uncertainty=StdDevUncertainty(np.ones_like(image)))
    enh = Enhancer(tiny_edsr(), tile_size=28, n_draws=2, device="cpu")
    serial = enh.enhance(ccd)
    threads = enh.enhance(ccd, parallel=2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):
        clustered = enh.enhance(ccd, parallel="current-scheduler")
    for other in (threads, clustered):
        np.testing.assert_array_equal(other.data, serial.data)
        np.testing.assert_array_equal(other.uncertainty.array, serial.uncertainty.array)


def test_uncertainty_in_gives_uncertainty_out_scaled_with_the_flux(nearest):
    image = lens_like()
    sigma = np.full(image.shape, 2.0, np.float32)
    out = nearest.enhance(CCDData(image, unit="electron",
                                  uncertainty=StdDevUncertainty(sigma)))
    assert isinstance(out.uncertainty, StdDevUncertainty)
    assert out.meta["UNCTYPE"] == "MC propagation of input noise (8 draws)"
    # a pixel copied into 4 shares 1/4 of the flux and of its noise (8 draws: +-25 %)
    assert 0.35 < out.uncertainty.array.mean() < 0.65
    brighter = nearest.enhance(CCDData(10 * image, unit="electron",
                                       uncertainty=StdDevUncertainty(10 * sigma)))
    np.testing.assert_allclose(brighter.uncertainty.array, 10 * out.uncertainty.array,
                               rtol=1e-4)
    assert nearest.enhance(CCDData(image, unit="electron")).uncertainty is None


def test_uncertainty_is_written_and_read_back(tmp_path, nearest):
    image = lens_like()
    source = tmp_path / "in.fits"
    le.io.write_image(CCDData(image, unit="electron",
                              uncertainty=StdDevUncertainty(np.ones_like(image))), source)
    target = nearest.enhance_file(source, tmp_path / "out.fits")
    back = le.io.read_image(target)
    assert back.uncertainty is not None and back.shape == (48, 40)
    assert fits.getheader(target)["UNCTYPE"].startswith("MC propagation")


def distance_map(shape_out, s, y, x):
    yy, xx = np.mgrid[: shape_out[0], : shape_out[1]]
    return np.maximum(np.abs((yy + 0.5) / s - 0.5 - y), np.abs((xx + 0.5) / s - 0.5 - x))


def test_hot_pixel_changes_nothing_beyond_a_few_pixels(edsr_x2):
    image = lens_like((48, 48))
    clean = edsr_x2.enhance(image)
    hot = image.copy()
    hot[20, 30] = 1e30
    out = edsr_x2.enhance(hot)
    far = distance_map(out.shape, 2, 20, 30) > 3
    assert np.isnan(out[~far]).sum() == 4 and np.isfinite(out[far]).all()
    # The fill differs from the clean value by about the noise (1, so 1/4 per output
    # pixel); the network spreads that difference by a few pixels only.
    change = np.abs(out - clean)
    assert change[far].max() < 0.25 * 0.25
    assert change[distance_map(out.shape, 2, 20, 30) > 6].max() < 0.04 * 0.25


@pytest.mark.parametrize("kind", ["nan", "masked_array", "ccd_mask"])
def test_bad_pixel_neighbourhoods_are_untouched(edsr_x2, kind):
    image = lens_like((40, 40))
    clean = edsr_x2.enhance(image)
    bad = np.zeros(image.shape, bool)
    bad[10:13, 25:27] = True
    if kind == "nan":
        source = np.where(bad, np.nan, image).astype(np.float32)
    elif kind == "masked_array":
        source = np.ma.MaskedArray(np.where(bad, 1e6, image), mask=bad)
    else:
        source = CCDData(np.where(bad, -1e4, image), unit="adu", mask=bad)
    out = edsr_x2.enhance(source)
    data = out.data if isinstance(out, CCDData) else np.ma.getdata(out)
    if kind == "masked_array":
        assert isinstance(out, np.ma.MaskedArray) and out.mask.sum() == 6 * 4
    # Chebyshev distance (input pixels) of each output pixel from the bad region
    distance = np.min([distance_map(data.shape, 2, y, x) for y, x in zip(*np.nonzero(bad))],
                      axis=0)
    assert np.isnan(data[distance < 0.5]).all() and np.isfinite(data[distance > 0.5]).all()
    change = np.abs(data - clean)
    assert change[distance > 4].max() < 0.25 * 0.25  # output noise: 1/4
    assert change[distance > 8].max() < 0.04 * 0.25


def test_alternate_wcs_ltv_and_sections(tmp_path, nearest):
    image = lens_like()
    header = tan_wcs(image.shape).to_header()
    header.update(CTYPE1A="LINEAR", CTYPE2A="LINEAR", CRPIX1A=1.0, CRPIX2A=1.0,
                  CRVAL1A=100.0, CRVAL2A=200.0, CDELT1A=1.0, CDELT2A=1.0,
                  LTV1=-100.0, LTV2=-200.0, LTM1_1=1.0, LTM2_2=1.0,
                  DATASEC="[1:20,1:24]", BUNIT="adu")
    path = tmp_path / "alt.fits"
    fits.writeto(path, image, header)
    with pytest.warns(le.io.WCSResampleWarning, match="DATASEC"):
        out = nearest.enhance(path)
    assert "DATASEC" not in out.meta
    old, new = WCS(header, key="A"), WCS(out.meta, key="A")
    x, y = np.array([0.0, 7.0, 19.0]), np.array([0.0, 11.0, 23.0])
    np.testing.assert_allclose(new.pixel_to_world_values((x + 0.5) * 2 - 0.5, (y + 0.5) * 2 - 0.5),
                               old.pixel_to_world_values(x, y), atol=1e-9)
    # IRAF: image = LTM . physical + LTV, 1-based
    physical = (np.array([1.0, 20.0]) - header["LTV1"]) / header["LTM1_1"]
    np.testing.assert_allclose(out.meta["LTM1_1"] * physical + out.meta["LTV1"],
                               (np.array([1.0, 20.0]) - 0.5) * 2 + 0.5)
    written = tmp_path / "out.fits"
    le.io.write_image(out, written)
    back = fits.getheader(written)
    assert back["CRPIX1A"] == pytest.approx(1.5) and back["CDELT1A"] == pytest.approx(0.5)


@pytest.mark.parametrize("unit,factor", [
    ("adu", 0.25), ("electron/s", 0.25), ("Jy", 0.25), ("count", 0.25), ("", 0.25),
    ("Jy/pix", 0.25), ("MJy/sr", 1.0), ("erg/(s cm2 arcsec2)", 1.0), ("Jy/beam", 1.0),
    ("K", 1.0)])
def test_units_split_or_not(nearest, unit, factor):
    image = lens_like()
    out = nearest.enhance(CCDData(image, unit=unit))
    np.testing.assert_allclose(out.data[::2, ::2], factor * image, rtol=1e-5, atol=1e-4)
    assert out.meta["LEFLUX"] == factor


def test_magnitudes_are_refused_and_unknown_units_warn(tmp_path, nearest):
    with pytest.raises(ValueError, match="magnitudes"):
        nearest.enhance(CCDData(lens_like(), unit="mag"))
    path = tmp_path / "odd.fits"
    fits.writeto(path, lens_like(), fits.Header({"BUNIT": "furlongs per fortnight"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nearest.enhance(path)
    assert any("odd.fits" in str(w.message) and "flux per pixel" in str(w.message)
               for w in caught)


def test_float64_is_kept_and_huge_values_stay_finite(nearest):
    image = lens_like().astype(np.float64) * 1e40  # beyond float32
    out = nearest.enhance(image)
    assert out.dtype == np.float64 and np.isfinite(out).all()
    np.testing.assert_allclose(block_sum(out, 2), image, rtol=1e-5)
    assert nearest.enhance(lens_like()).dtype == np.float32


def test_bad_options_give_clear_errors(nearest):
    with pytest.raises(ValueError, match="unknown device"):
        Enhancer(NearestUpsample(2), scale=2, device="tpu:7")
    with pytest.raises(ValueError, match="too small"):
        Enhancer(tiny_edsr(), tile_size=8)
    with pytest.raises(ValueError, match="overlap"):
        Enhancer(tiny_edsr(), tile_size=40, overlap=40)
    with pytest.raises(ValueError, match="parallel"):
        nearest.enhance(lens_like(), parallel="sometimes")
    with pytest.raises(ValueError, match="samples"):
        nearest.enhance(lens_like(), return_samples=True)


def test_weights_file_and_repr(tmp_path):
    path = export_weights(tiny_edsr(), tmp_path / "mine.safetensors")
    enh = Enhancer(path, tile_size=64)
    assert enh.scale == 2 and enh.name == "mine"
    text = repr(enh)
    assert "'mine'" in text and "tile_size=64" in text and "halo=" in text
    assert "batch_size=8" in text
    out = enh.enhance(lens_like())
    assert out.shape == (48, 40)
    from lensenhance.pretrained import file_sha256

    assert enh.enhance(CCDData(lens_like(), unit="adu")).meta["LEWSHA"] == file_sha256(path)


_MEMORY_SCRIPT = """
import resource, sys, numpy as np, torch
torch.set_num_threads(1)
from lensenhance.enhance import Enhancer
from lensenhance.nn import build_sr_model
torch.manual_seed(0)
net = build_sr_model("edsr", scale=2, n_blocks=1, channels=16).eval()
enh = Enhancer(net, tile_size=int(sys.argv[3]) or None, device="cpu")
enh.enhance(np.ones((40, 40), np.float32))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
enh.enhance_file(sys.argv[1], sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024)
"""


@pytest.mark.slow
def test_memory_stays_bounded_with_tiles(tmp_path):
    side = 1536
    rng = np.random.default_rng(0)
    source = tmp_path / "big.fits"
    fits.writeto(source, rng.normal(10, 1, (side, side)).astype(np.float32),
                 fits.Header({"BUNIT": "adu"}))
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(source),
                             str(tmp_path / "out.fits"), "128"],
                            capture_output=True, text=True, timeout=600, check=True)
    growth_mb = float(result.stdout.split()[-1])
    # input 9 MB, its normalised copy 9 MB, output 38 MB (mapped); the whole-image run
    # needs > 1 GB of activations
    assert growth_mb < 250, result.stdout
    out = fits.getdata(tmp_path / "out.fits")
    assert out.shape == (2 * side, 2 * side) and np.isfinite(out).all()


# -- Enhancer.open: a model as the command line names it ---------------------------------


def test_open_baseline_and_its_refusals():
    from lensenhance.enhance import Enhancer

    enh = Enhancer.open("bicubic", scale=4, device="cpu")
    assert enh.scale == 4 and enh.name == "bicubic"
    with pytest.raises(ValueError, match="apply to diffusion models, not bicubic"):
        Enhancer.open("bicubic", n_samples=4)


def test_open_deterministic_model_refuses_sampling_options():
    from lensenhance.enhance import Enhancer
    from lensenhance.predict.loading import is_probabilistic

    assert not is_probabilistic("fsrcnn-x2")
    for options in ({"n_samples": 4}, {"steps": 3}):
        with pytest.raises(ValueError, match="deterministic network"):
            Enhancer.open("fsrcnn-x2", device="cpu", **options)


def test_open_posterior_file_takes_sampling_options(tiny_posterior):
    from lensenhance.enhance import Enhancer
    from lensenhance.predict.loading import is_probabilistic

    base, post = tiny_posterior
    assert is_probabilistic(str(post)) and not is_probabilistic(str(base))
    enh = Enhancer.open(str(post), device="cpu", n_samples=3, steps=2)
    assert (enh.predictor.n_samples, enh.predictor.steps) == (3, 2)
    with pytest.raises(ValueError, match="apply to diffusion models"):
        Enhancer.open(str(base), device="cpu", n_samples=3)


def test_enhance_file_reads_a_camera_uint16_image(tmp_path, nearest):
    path = tmp_path / "camera.fits"
    fits.writeto(path, np.full((8, 6), 1000, np.uint16), fits.Header({"BUNIT": "adu"}))
    out = nearest.enhance_file(path, tmp_path / "out.fits")
    np.testing.assert_allclose(fits.getdata(out), 250.0)


def test_from_pretrained_names_its_options_and_errors_name_the_option():
    import inspect

    options = inspect.signature(Enhancer.from_pretrained).parameters
    assert {"device", "tile_size", "overlap", "self_ensemble", "n_samples", "steps",
            "batch_size"} <= set(options)
    with pytest.raises(ValueError, match="tile_size.*'big'"):
        Enhancer.from_pretrained("fsrcnn-x2", tile_size="big")
    with pytest.raises(ValueError, match="batch_size"):
        Enhancer.from_pretrained("fsrcnn-x2", batch_size=0)
    # one loader: a shipped name works in the constructor too, as from_pretrained
    by_name, pretrained = Enhancer("fsrcnn-x2"), Enhancer.from_pretrained("fsrcnn-x2")
    assert by_name.scale == pretrained.scale == 2
    assert by_name.predictor.weights_hash() == pretrained.predictor.weights_hash()
    with pytest.raises(ValueError, match="neither a weights file nor a shipped model"):
        Enhancer("no-such-model")
    with pytest.raises(ValueError, match="n_samples apply to diffusion models only"):
        Enhancer.from_pretrained("fsrcnn-x2", n_samples=4)
    with pytest.raises(ValueError, match="not an enhancer"):
        Enhancer.from_pretrained("thetae-resnet")


def test_repr_of_a_diffusion_enhancer_shows_its_sampling():
    enh = Enhancer.from_pretrained("diffusion-denoise", device="cpu", n_samples=4, steps=3)
    assert "n_samples=4 steps=3" in repr(enh) and "scale=1" in repr(enh)
