"""The shipped denoisers and diffusion models on a small fixed set, against their cards.

A few held-out images (the benchmark's seed, or the shipped HSC sample) and few samples:
the figures must land near the card's (the card's come from many more images), and the
posterior's intervals must cover roughly as the card says. These are smoke runs of the
real weights, not the benchmark.
"""

import numpy as np
import pytest

import lensenhance as le
from lensenhance.benchmark._runs import run_enhancer
from lensenhance.evaluate.scoring import light_mask, posterior_figures

SIMULATED = [name for task in ("denoise", "posterior") for name in le.list_pretrained(task=task)
             if le.model_card(name).get("preset") == "model_ii"]
HSC = [name for task in ("denoise", "posterior") for name in le.list_pretrained(task=task)
       if le.model_card(name).get("preset") == "hsc_wide_dud"]
SR = [name for name in le.list_pretrained(task="posterior")
      if le.model_card(name).get("scale") == 2]


@pytest.fixture(scope="module")
def simulated_set():
    from lensenhance.benchmark.sr import BENCHMARK_SEED
    from lensenhance.training.posterior import snr_pairs

    return snr_pairs(6, seed=BENCHMARK_SEED, progress=False)


def _enhancer(name):
    options = {"n_samples": 8} if le.model_card(name)["task"] == "posterior" else {}
    return le.Enhancer.from_pretrained(name, device="cpu", **options)


def _check_against_card(name, figures):
    card = le.model_card(name)["metrics"]
    # Six images against the card's n: within a few of the card's standard errors.
    assert figures["psnr"]["mean"] > card["psnr"]["mean"] - max(3.0, 4 * card["psnr"]["se"])
    if "calibration_light" in card and "calibration_light" in figures:
        expected = card["calibration_light"]["coverage_68"]
        assert abs(figures["calibration_light"]["coverage_68"] - expected) < 0.12


@pytest.mark.slow
@pytest.mark.parametrize("name", SIMULATED)
def test_simulated_denoisers_match_their_cards(name, simulated_set):
    data = simulated_set
    out = run_enhancer(_enhancer(name), data["low"], data["low_sigma"], samples=False)
    figures = posterior_figures(data["clean"], out["mean"], out["std"])
    _check_against_card(name, figures)
    assert out["mean"].shape == data["clean"].shape


@pytest.mark.slow
@pytest.mark.parametrize("name", HSC)
def test_hsc_denoisers_on_the_shipped_sample(name):
    from astropy.io import fits

    from lensenhance.data import hsc_sample

    table = hsc_sample()
    wide = np.stack([fits.getdata(p).astype(np.float32) for p in table["path"]])
    deep = np.stack([fits.getdata(p).astype(np.float32) for p in table["target_path"]])
    out = run_enhancer(_enhancer(name), wide, None)  # no sigma: estimated
    # The HSC posterior is of the deep image itself: scored against it as it is.
    figures = posterior_figures(deep, out["mean"], out["std"])
    _check_against_card(name, figures)
    assert light_mask(deep).any()


@pytest.mark.slow
@pytest.mark.parametrize("name", SR)
def test_diffusion_sr_smoke_and_flux(name):
    from lensenhance.training.data import simulated_pairs

    ds = simulated_pairs(2, preset="model_i", scale=2, seed=11, progress=False)
    lr = ds["lr"].values.astype(np.float32)
    out = run_enhancer(_enhancer(name), lr, ds["lr_sigma"].values, samples=True)
    assert out["mean"].shape == ds["hr"].shape and out["samples"].shape[1] == 8
    # Flux is kept: the mean summed over 2x2 blocks is close to the observed image.
    binned = out["mean"].reshape(2, 75, 2, 75, 2).sum(axis=(2, 4))
    assert np.abs(binned - lr).mean() < 2 * ds["lr_sigma"].values.mean()
