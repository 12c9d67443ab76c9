"""A predictor written from the `Predictor` docs alone runs through the whole engine."""

import numpy as np
import pytest
import torch
from astropy.nddata import CCDData, StdDevUncertainty

from lensenhance import Enhancer
from lensenhance.predict.predictors import Prediction, Predictor
from lensenhance.simulate.simulator import tan_wcs


class Replicate(Predictor):
    """x2 by repeating each pixel (flux per pixel divided by 4 is the Enhancer's job),
    with a constant 'std' of 0.5 in normalised units."""

    scale = 2
    halo = 0
    name = "replicate-x2"
    uncertainty_type = "a constant, for the test"

    def predict(self, x, *, sigma=None, seed=0, origins=None):
        mean = x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        return Prediction(mean, std=torch.full_like(mean, 0.5))

    def gives_std(self, has_sigma):
        return True


def test_incomplete_predictor_is_refused():
    class NoPredict(Predictor):
        scale = 2

    with pytest.raises(TypeError, match="abstract"):
        NoPredict()


def test_documented_predictor_runs_through_the_enhancer():
    rng = np.random.default_rng(0)
    data = rng.gamma(2.0, 1.0, (24, 20)).astype(np.float32)
    ccd = CCDData(data, unit="electron/s", wcs=tan_wcs(data.shape, 0.1),
                  uncertainty=StdDevUncertainty(np.full(data.shape, 0.1, np.float32)))
    out = Enhancer(Replicate(), progress=False).enhance(ccd)
    assert out.shape == (48, 40)
    # each input pixel's flux is split over its 4 output pixels
    np.testing.assert_allclose(out.data[::2, ::2], data / 4, rtol=1e-5)
    np.testing.assert_allclose(out.data.sum(), data.sum(), rtol=1e-5)
    # the output pixel (0, 0) centre lies a quarter input pixel from input pixel (0, 0)'s
    sky_in = ccd.wcs.pixel_to_world(-0.25, -0.25)
    sky_out = out.wcs.pixel_to_world(0, 0)
    assert sky_in.separation(sky_out).arcsec < 1e-6
    assert out.uncertainty is not None and np.all(out.uncertainty.array > 0)
    assert "a constant" in str(out.meta.get("UNCTYPE", ""))


def test_settings_hold_what_a_run_depends_on():
    settings = Replicate().settings()
    assert settings["name"] == "replicate-x2" and settings["scale"] == 2
    assert settings["n_samples"] == 0 and settings["weights_sha256"] is None
