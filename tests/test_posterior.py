"""Posterior models through the Enhancer: uncertainty, samples, seeds, sigma handling."""

import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning

from lensenhance import Enhancer
from lensenhance.diffusion import NoiseSchedule
from lensenhance.nn.raunet import RAUNet
from lensenhance.nn.weights import export_weights, read_weights_metadata
from lensenhance.predict.posterior import (
    PosteriorPredictor,
    estimate_sigma,
    load_posterior,
    residual_condition,
)
from lensenhance.predict.predictors import NetworkPredictor

pytest.importorskip("diffusers")

TINY_UNET = {"channels": [8, 16], "attention_levels": [], "norm_groups": 4,
             "attention_head_dim": 8}


@pytest.fixture(scope="module")
def tiny_files(tiny_posterior):
    return tiny_posterior


def _image(seed=0, size=24, sigma=0.05):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    clean = np.exp(-((y - size / 2) ** 2 + (x - size / 2) ** 2) / 20.0) + 0.01
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    return noisy.astype(np.float32), np.full(clean.shape, sigma, np.float32)


@pytest.fixture(scope="module")
def enhancer(tiny_files):
    return Enhancer(load_posterior(tiny_files[1], n_samples=4, steps=2), device="cpu")


def test_load_posterior_reads_the_metadata(tiny_files):
    predictor = load_posterior(tiny_files[1], n_samples=3, steps=2)
    assert predictor.std_scale == 1.5
    assert predictor.snr_range == (5.0, 50.0)
    assert predictor.needs_sigma and not predictor.exact_tiling
    assert "n_samples=3" in repr(predictor)
    assert read_weights_metadata(tiny_files[1])["task"] == "posterior"


def test_base_model_checked_by_hash(tiny_files, tmp_path):
    import shutil

    from lensenhance.nn.unet import DiffusionUNet

    shutil.copy(tiny_files[0], tmp_path / "base.safetensors")
    RAUNet(channels=(4, 8))  # different random weights
    export_weights(RAUNet(channels=(4, 8)), tmp_path / "base.safetensors", task="denoise",
                   overwrite=True)
    unet = DiffusionUNet(sample_size=16, cond_channels=3, **TINY_UNET)
    path = export_weights(unet, tmp_path / "post.safetensors", task="posterior", metadata={
        "schedule": NoiseSchedule().to_dict(), "scale": 1, "base_model": "base.safetensors",
        "base_sha256": "0" * 64})
    with pytest.raises(ValueError, match="not the one it was trained on"):
        load_posterior(path)


@pytest.mark.parametrize("kind", ["ccddata", "quantity", "fits"])
def test_uncertainty_type_unit_and_shape(enhancer, kind, tmp_path):
    noisy, sigma = _image()
    if kind == "ccddata":
        image = CCDData(noisy, unit="electron/s", uncertainty=StdDevUncertainty(sigma))
    elif kind == "quantity":
        image = CCDData(noisy * u.electron / u.s, uncertainty=StdDevUncertainty(sigma))
    else:
        image = tmp_path / "in.fits"
        CCDData(noisy, unit="electron/s", uncertainty=StdDevUncertainty(sigma)).write(image)
    out = enhancer.enhance(image) if kind != "fits" else enhancer.enhance(str(image))
    out = out if isinstance(out, CCDData) else out
    assert isinstance(out.uncertainty, StdDevUncertainty)
    assert out.unit == u.electron / u.s
    assert out.shape == noisy.shape == out.uncertainty.array.shape
    assert np.all(out.uncertainty.array > 0)
    assert "diffusion samples" in out.meta["UNCTYPE"]


def test_samples_are_a_dataarray_in_the_unit_and_seeded(enhancer):
    noisy, sigma = _image()
    ccd = CCDData(noisy, unit="electron/s", uncertainty=StdDevUncertainty(sigma))
    out, samples = enhancer.enhance(ccd, return_samples=True, seed=3)
    assert isinstance(samples, xr.DataArray)
    assert samples.dims == ("sample", "y", "x") and samples.shape == (4, *noisy.shape)
    assert u.Unit(samples.attrs["unit"]) == u.electron / u.s
    # The mean and std are those of the samples.
    np.testing.assert_allclose(samples.mean("sample"), out.data, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(samples.std("sample", ddof=1), out.uncertainty.array,
                               rtol=1e-3, atol=1e-7)
    again, samples_again = enhancer.enhance(ccd, return_samples=True, seed=3)
    np.testing.assert_array_equal(samples, samples_again)
    _, other = enhancer.enhance(ccd, return_samples=True, seed=4)
    assert not np.allclose(samples, other)


def test_sigma_estimated_and_recorded_when_absent(enhancer):
    noisy, sigma = _image(sigma=0.05)
    out = enhancer.enhance(CCDData(noisy, unit="electron/s"))
    assert out.meta["LESIGEST"] == pytest.approx(0.05, rel=0.3)
    assert isinstance(out.uncertainty, StdDevUncertainty)


def test_estimate_sigma_of_pure_noise():
    rng = np.random.default_rng(1)
    image = 3.0 + 0.2 * rng.standard_normal((200, 200))
    image[90:110, 90:110] += 50  # a source does not inflate it
    assert estimate_sigma(image) == pytest.approx(0.2, rel=0.05)


def test_sigma_of_wrong_shape_is_refused(enhancer, tmp_path):
    noisy, sigma = _image()
    path = tmp_path / "bad.fits"
    fits.HDUList([fits.PrimaryHDU(noisy, header=fits.Header({"BUNIT": "electron/s"})),
                  fits.ImageHDU(sigma[:10], name="UNCERT")]).writeto(path)
    with pytest.raises(ValueError, match="bad.fits"):
        enhancer.enhance(str(path))


def test_all_zero_sigma_is_refused(enhancer):
    noisy, _ = _image()
    ccd = CCDData(noisy, unit="electron/s", uncertainty=StdDevUncertainty(np.zeros_like(noisy)))
    with pytest.raises(ValueError, match="zero at every good pixel"):
        enhancer.enhance(ccd)


def test_negative_sigma_pixels_are_masked(enhancer):
    noisy, sigma = _image()
    sigma[3, 4] = -1.0
    out = enhancer.enhance(CCDData(noisy, unit="electron/s",
                                   uncertainty=StdDevUncertainty(sigma)))
    assert out.mask[3, 4] and np.isnan(out.data[3, 4])
    assert out.mask.sum() == 1


def test_outside_the_trained_snr_range_warns_and_says_so(enhancer):
    noisy, sigma = _image(sigma=0.05)
    ccd = CCDData(noisy, unit="electron/s", uncertainty=StdDevUncertainty(sigma * 1e3))
    with pytest.warns(AstropyUserWarning, match="outside the trained range"):
        out = enhancer.enhance(ccd)
    assert "outside the trained" in out.meta["LEWARN"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AstropyUserWarning)
        enhancer.enhance(CCDData(noisy, unit="electron/s", uncertainty=StdDevUncertainty(sigma)))


def test_samples_do_not_depend_on_batching(tiny_files):
    base = load_posterior(tiny_files[1], n_samples=4, steps=2, sample_batch=16)
    one = load_posterior(tiny_files[1], n_samples=4, steps=2, sample_batch=1)
    x = torch.randn(2, 1, 16, 16)
    sigma = torch.full_like(x, 0.1)
    a = base(x, sigma=sigma, seed=5)
    b = one(x, sigma=sigma, seed=5)
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-4, atol=1e-5)
    # Each image's samples are its own: the second alone gives the same.
    c = base(x[1:], sigma=sigma[1:], seed=5, origins=[(1, 0, 0)])
    torch.testing.assert_close(a.samples[:, 1:], c.samples, rtol=1e-4, atol=1e-5)


def test_a_pass_holds_at_most_its_pixel_budget(tiny_files, monkeypatch):
    """A large tile's samples are drawn a few at a time (bounded memory), unchanged."""
    from lensenhance.predict import posterior

    predictor = load_posterior(tiny_files[1], n_samples=4, steps=2, sample_batch=16)
    x = torch.randn(2, 1, 16, 16)
    sigma = torch.full_like(x, 0.1)
    whole = predictor(x, sigma=sigma, seed=3)
    passes = []
    unet = predictor.unet
    monkeypatch.setattr(predictor, "unet", _Recorder(unet, passes))
    monkeypatch.setattr(posterior, "_PASS_PIXELS", 2 * 32 * 32)  # one sample of both
    small = predictor(x, sigma=sigma, seed=3)
    assert passes and max(passes) <= 2 * 32 * 32
    torch.testing.assert_close(small.samples, whole.samples, rtol=1e-4, atol=1e-5)


class _Recorder(torch.nn.Module):
    """The network, recording the output pixels of each call."""

    def __init__(self, net, passes):
        super().__init__()
        self.net, self.passes = net, passes
        self.divisor = net.divisor

    def forward(self, x, *args, **kwargs):
        self.passes.append(x.shape[0] * x.shape[-2] * x.shape[-1])
        return self.net(x, *args, **kwargs)


def test_residual_condition_upsamples_by_nearest():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    sigma = torch.zeros_like(x)
    cond, unit = residual_condition(x, sigma, torch.zeros(1, 1, 4, 4), 2)
    assert cond.shape == (1, 3, 4, 4)
    assert cond[0, 0, 1, 1] == x[0, 0, 0, 0] and cond[0, 0, 3, 3] == x[0, 0, 1, 1]
    assert float(unit.min()) > 0  # floored


def test_posterior_predictor_bad_options(tiny_files):
    base = RAUNet(channels=(4, 8))
    from lensenhance.nn.unet import DiffusionUNet

    unet = DiffusionUNet(sample_size=16, cond_channels=3, **TINY_UNET)
    for bad, match in [({"n_samples": 1}, "n_samples"), ({"steps": 0}, "steps"),
                       ({"sampler": "ddpm"}, "deterministic"), ({"std_scale": 0}, "std_scale")]:
        with pytest.raises(ValueError, match=match):
            PosteriorPredictor(base, unet, schedule=NoiseSchedule(), scale=1, **bad)


def test_denoiser_takes_sigma_through_the_enhancer(tiny_files):
    enhancer = Enhancer(str(tiny_files[0]), scale=1, device="cpu")
    assert isinstance(enhancer.predictor, NetworkPredictor)
    assert enhancer.predictor.needs_sigma and enhancer.predictor.exact_tiling
    assert enhancer.predictor.tile_alignment > 1  # aligned tiles make the U-Net exact
    noisy, sigma = _image()
    out = enhancer.enhance(CCDData(noisy, unit="electron/s",
                                   uncertainty=StdDevUncertainty(sigma)))
    assert out.uncertainty is not None and out.shape == noisy.shape
    # Without an uncertainty the sigma is estimated for the network, and no
    # uncertainty is claimed for the output.
    out = enhancer.enhance(CCDData(noisy, unit="electron/s"))
    assert out.uncertainty is None and "LESIGEST" in out.meta


def test_cli_enhance_with_a_diffusion_model_writes_the_uncertainty(tiny_files, tmp_path):
    from click.testing import CliRunner

    from lensenhance.cli import cli

    noisy, sigma = _image()
    source = tmp_path / "cutout.fits"
    CCDData(noisy, unit="electron/s", uncertainty=StdDevUncertainty(sigma)).write(source)
    out_dir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-q", "enhance", str(source), "--model",
                                      str(tiny_files[1]), "--n-samples", "3", "--steps", "2",
                                      "--out", str(out_dir)])
    assert result.exit_code == 0, result.output
    (written,) = out_dir.glob("*.fits")
    ccd = CCDData.read(written)
    assert isinstance(ccd.uncertainty, StdDevUncertainty)
    assert ccd.uncertainty.array.shape == noisy.shape
    assert "3 diffusion samples" in ccd.header["UNCTYPE"]


def test_publish_posterior_checks_the_base_and_stores_the_calibration(
        tiny_files, tmp_path, monkeypatch):
    import json
    import shutil

    from lensenhance import pretrained as models
    from lensenhance import publish
    from lensenhance.nn.weights import update_weights_metadata

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(publish, "WEIGHTS_DIR", weights)
    base_run, post_run = tmp_path / "base_run", tmp_path / "post_run"
    for run, source in ((base_run, tiny_files[0]), (post_run, tiny_files[1])):
        run.mkdir()
        shutil.copy(source, run / "weights.safetensors")
        (run / "history.json").write_text(json.dumps({"step": 2, "wall_time_s": 1.0}))
    update_weights_metadata(base_run / "weights.safetensors",
                            {"command": "lensenhance train denoiser --steps 2",
                             "data_preset": "model_ii"})
    publish.publish_denoiser(base_run, "tiny-denoise")
    # The run was trained around the tiny base as it was before its metadata changed.
    with pytest.raises(ValueError, match="other weights than 'tiny-denoise'"):
        publish.publish_posterior(post_run, "tiny-posterior", base="tiny-denoise")
    assert not (weights / "tiny-posterior.safetensors").exists()
    update_weights_metadata(post_run / "weights.safetensors", {
        "base_sha256": models.file_sha256(weights / "tiny-denoise.safetensors"),
        "command": "lensenhance train posterior --task denoise"})
    card = publish.publish_posterior(post_run, "tiny-posterior", base="tiny-denoise")
    assert card["base_model"] == "tiny-denoise" and card["scale"] == 1
    assert card["calibration"]["std_scale"] == 1.0
    meta = read_weights_metadata(weights / "tiny-posterior.safetensors")
    assert meta["base_model"] == "tiny-denoise" and meta["calibration"]["std_scale"] == 1.0
    # Loaded by name: the base comes from the registry.
    enhancer = Enhancer.from_pretrained("tiny-posterior", n_samples=2, steps=1, device="cpu")
    noisy, sigma = _image()
    out = enhancer.enhance(CCDData(noisy, unit="adu", uncertainty=StdDevUncertainty(sigma)))
    assert out.meta["LEMODEL"] == "tiny-posterior"
    # Figures from a benchmark JSON complete the card.
    figures = {"psnr": {"mean": 40.0, "se": 0.5, "n": 3}, "ssim": {"mean": 0.9, "se": 0.01,
                                                                   "n": 3}}
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"n": 3, "command": "lensenhance benchmark denoise -n 3",
                                 "rows": {"tiny-posterior": {"figures": figures,
                                                             "seconds_per_image": 0.1}}}))
    card = publish.add_benchmark_figures("tiny-posterior", bench)
    assert card["metrics"]["n"] == 3 and models.validate_card(card, raise_errors=False) == []
