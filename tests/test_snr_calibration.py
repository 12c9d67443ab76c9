"""The signal-dependent std factor: per-bin coverage, monotone in the raw std, free of the
data's units, held-out only."""

import numpy as np
import pytest
import torch

from lensenhance.evaluate.snr_calibration import fit_snr_calibration
from lensenhance.evaluate.uncertainty import interval_coverage
from lensenhance.predict.snr_factor import snr_std_factor


def _overconfident_where_faint(n=200_000, seed=0, power=-0.3):
    """Predicted std s; the true error is s * (r / 3)**power with r = |mean| / s."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.5, 2.0, n)
    mean = std * np.exp(rng.uniform(np.log(0.1), np.log(100.0), n))
    wrong = (np.abs(mean) / std / 3.0) ** power
    truth = mean + std * wrong * rng.standard_normal(n)
    return truth, mean, std


def _calibrated(mean, std, table, background=0.0):
    return snr_std_factor(torch.from_numpy(mean - background), torch.from_numpy(std), table,
                          torch.as_tensor(-background)).numpy() * std


def test_each_snr_bin_covers_after_the_fit_on_other_pixels():
    truth, mean, std = _overconfident_where_faint(seed=0)
    table = fit_snr_calibration(truth, mean, std, n_bins=8)
    group = table["groups"][2]  # no background: every pixel is in the middle group
    assert not group["pooled"] and np.all(np.diff(group["snr"]) > 0)
    assert group["std_scale"] == group["unbounded"]  # a falling factor needs no bound
    test_truth, test_mean, test_std = _overconfident_where_faint(seed=1)
    calibrated = _calibrated(test_mean, test_std, table)
    snr = np.abs(test_mean) / test_std
    edges = np.quantile(snr, np.linspace(0, 1, 9))
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (snr >= low) & (snr <= high)
        one_factor = interval_coverage(test_truth[inside], test_mean[inside],
                                       test_std[inside])[0.68]
        binned = interval_coverage(test_truth[inside], test_mean[inside],
                                   calibrated[inside])[0.68]
        assert abs(binned - 0.68) < 0.03, (low, high, one_factor, binned)


@pytest.mark.parametrize("power", [-0.3, 0.6, 2.0])
def test_the_calibrated_std_never_falls_as_the_raw_std_grows(power):
    truth, mean, std = _overconfident_where_faint(seed=2, power=power)
    table = fit_snr_calibration(truth, mean, std, n_bins=8)
    raw = np.geomspace(1e-3, 1e3, 2000)
    for m in (0.01, 1.0, 50.0):
        for background in (0.0, 0.5 * m, 3.0 * m):
            calibrated = _calibrated(np.full_like(raw, m), raw, table, background)
            assert np.all(np.diff(calibrated) >= -1e-12 * calibrated[1:]), (power, m)
    if power == 2.0:  # the factor would rise faster than the SNR: bounded
        group = table["groups"][2]
        assert group["std_scale"] != group["unbounded"]


def _sky_and_lens(n=120_000, seed=0):
    """Pixels of images with a background level 1: an empty sky near zero whose std is
    too wide (true error 0.5 s) and bright pixels whose std is too narrow (error 2 s),
    both at the same SNRs, so that no factor of the SNR alone can hold both."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.01, 0.05, n)
    sky = np.arange(n) % 2 == 0
    snr = np.exp(rng.uniform(np.log(0.3), np.log(5.0), n))
    # the sky within 0.25 of zero (u < -1), the lens at 10-40 (|u| < 0.2)
    mean = np.where(sky, snr * std * rng.choice([-1.0, 1.0], n), rng.uniform(10.0, 40.0, n))
    std = np.where(sky, std, np.abs(mean) / snr)
    truth = mean + std * np.where(sky, 0.5, 2.0) * rng.standard_normal(n)
    return truth, mean, std, sky


def test_the_sky_and_the_lens_each_cover_where_the_snr_alone_cannot():
    truth, mean, std, _ = _sky_and_lens(seed=0)
    table = fit_snr_calibration(truth, mean, std, background=1.0, n_bins=6)
    lens = table["groups"][2]  # far above the background
    assert not table["groups"][0]["pooled"] and not lens["pooled"]
    test_truth, test_mean, test_std, sky = _sky_and_lens(seed=1)
    calibrated = _calibrated(test_mean, test_std, table, background=1.0)
    for part in (sky, ~sky):
        coverage = interval_coverage(test_truth[part], test_mean[part], calibrated[part])
        assert abs(coverage[0.68] - 0.68) < 0.02, coverage
    assert lens["std_scale"][0] > 1.5  # the lens group widens, the sky's narrows
    assert table["groups"][0]["std_scale"][0] < 0.7


@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (3.0, 0.01), (-2.0, 250.0)])
def test_the_factor_is_the_same_in_normalised_units(offset, scale):
    """The Enhancer applies the table to normalised outputs, ``(x - offset) / scale``, with
    the data zero at ``-offset / scale``: the factor must not depend on the units."""
    truth, mean, std, _ = _sky_and_lens(n=20_000, seed=2)
    table = fit_snr_calibration(truth, mean, std, background=1.0, n_bins=4)
    data_units = snr_std_factor(mean - 1.0, std, table, -1.0)
    # data = norm * scale + offset, and the background is the normalisation's offset
    scale_d = scale
    norm_mean = (mean - 1.0) / scale_d
    norm_zero = -1.0 / scale_d
    np.testing.assert_allclose(snr_std_factor(norm_mean, std / scale_d, table, norm_zero),
                               data_units, rtol=1e-12)


def _two_depths(n=120_000, seed=0):
    """Pixels of images of two depths (input noise 1 or 4): the spread is too wide where
    the mean stands less than 3 sigma above the noise (true error 0.5 s) and too narrow
    above (2 s), at the same SNRs against the spread, so that no factor of ``r`` can
    hold both but one of ``q = |mean| / noise`` can."""
    rng = np.random.default_rng(seed)
    noise = rng.choice([1.0, 4.0], n)
    q = np.exp(rng.uniform(np.log(0.05), np.log(300.0), n))
    mean = q * noise
    std = mean / np.exp(rng.uniform(np.log(0.3), np.log(30.0), n))
    truth = mean + std * np.where(q < 3.0, 0.5, 2.0) * rng.standard_normal(n)
    return truth, mean, std, noise, q < 3.0


@pytest.mark.parametrize("context", ["noise", "both"])
def test_groups_of_the_snr_against_the_noise_hold_where_the_background_cannot(context):
    truth, mean, std, noise, faint = _two_depths(seed=0)
    table = fit_snr_calibration(truth, mean, std, noise=noise, n_bins=6,
                                context=None if context == "noise" else context)
    assert table["context"] == context and table["q_edges"] == [0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
    assert ("u_edges" in table) == (context == "both")
    assert len(table["groups"]) == (35 if context == "both" else 7)
    by_background = fit_snr_calibration(truth, mean, std, n_bins=6)
    assert by_background["context"] == "background"
    test_truth, test_mean, test_std, test_noise, faint = _two_depths(seed=1)
    calibrated = snr_std_factor(test_mean, test_std, table, noise=test_noise) * test_std
    one_group = snr_std_factor(test_mean, test_std, by_background) * test_std
    for part in (faint, ~faint):
        coverage = interval_coverage(test_truth[part], test_mean[part], calibrated[part])
        assert abs(coverage[0.68] - 0.68) < 0.02, coverage
        missed = interval_coverage(test_truth[part], test_mean[part], one_group[part])
        assert abs(missed[0.68] - 0.68) > 0.1, missed
    with pytest.raises(ValueError, match="give noise"):
        snr_std_factor(test_mean, test_std, table)


@pytest.mark.parametrize("context", ["noise", "both"])
def test_with_noise_groups_the_calibrated_std_never_falls_as_the_raw_std_grows(context):
    truth, mean, std, noise, _ = _two_depths(seed=3)
    table = fit_snr_calibration(truth, mean, std, background=0.5, noise=noise, n_bins=8,
                                context=context)
    raw = np.geomspace(1e-3, 1e3, 2000)
    for m in (0.1, 5.0, 200.0):
        for sigma in (1.0, 4.0):
            calibrated = snr_std_factor(np.full_like(raw, m - 0.5), raw, table, -0.5,
                                        noise=sigma) * raw
            assert np.all(np.diff(calibrated) >= -1e-12 * calibrated[1:]), (m, sigma)


def test_both_groups_index_each_pair_of_a_background_and_a_noise_group():
    from lensenhance.predict.snr_factor import snr_context, snr_groups

    rng = np.random.default_rng(4)
    mean = np.exp(rng.uniform(np.log(0.01), np.log(100.0), 5000)) - 1.0
    std, noise, zero = np.full(5000, 0.2), rng.choice([0.5, 2.0], 5000), -1.0
    u_edges, q_edges = [-1.0, -0.2, 0.2, 1.0], [0.3, 1.0, 3.0, 10.0, 30.0]
    both, r = snr_groups("both", u_edges, q_edges, mean, std, zero, noise)
    u_group, _ = snr_groups("background", u_edges, None, mean, std, zero)
    q_group, _ = snr_groups("noise", None, q_edges, mean, std, zero, noise)
    np.testing.assert_array_equal(both, u_group * 6 + q_group)
    np.testing.assert_array_equal(r, snr_context(mean, std, zero)[1])
    assert len(np.unique(both)) > 12
    with pytest.raises(ValueError, match="give noise"):
        fit_snr_calibration(mean, mean, std, context="both")
    with pytest.raises(ValueError, match="context must be"):
        fit_snr_calibration(mean, mean, std, noise=noise, context="sky")


@pytest.mark.parametrize("context", ["noise", "both"])
def test_a_sparse_bright_group_is_fitted_with_the_next_fainter_one(context):
    """The brightest cores are few: with too few pixels above 100 sigma that group takes
    the table of the pixels above 30 sigma (as if the edge at 100 were not there), not the
    table of all pixels; with enough it has its own."""
    truth, mean, std, noise, _ = _two_depths(seed=5)
    q = mean / noise
    few = (q <= 100) | (np.cumsum(q > 100) <= 300)
    edges = [0.3, 1.0, 3.0, 10.0, 30.0]
    for keep, sparse in ((few, True), (np.ones_like(few), False)):
        args = (truth[keep], mean[keep], std[keep])
        kw = dict(noise=noise[keep], n_bins=6, context=context)
        table = fit_snr_calibration(*args, q_edges=edges + [100.0], **kw)
        without = fit_snr_calibration(*args, q_edges=edges, **kw)
        # no background: every pixel is in the middle u group (the only one of "noise")
        row = 2 if context == "both" else 0
        top, below = table["groups"][row * 7 + 6], table["groups"][row * 7 + 5]
        assert not top["pooled"] and not below["pooled"]
        assert (top["std_scale"] == below["std_scale"]) == sparse
        if sparse:
            assert top["fitted_on"] == [row * 7 + 5, row * 7 + 6]
            assert top["std_scale"] == without["groups"][row * 6 + 5]["std_scale"]
        else:
            assert top["fitted_on"] == [row * 7 + 6]


@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (3.0, 0.01)])
def test_the_noise_groups_are_the_same_in_normalised_units(offset, scale):
    truth, mean, std, noise, _ = _two_depths(n=20_000, seed=2)
    table = fit_snr_calibration(truth, mean, std, noise=noise, n_bins=4)
    data_units = snr_std_factor(mean, std, table, noise=noise)
    norm_mean, norm_zero = (mean - offset) / scale, -offset / scale
    np.testing.assert_allclose(
        snr_std_factor(norm_mean, std / scale, table, norm_zero, noise=noise / scale),
        data_units, rtol=1e-12)


def test_too_few_pixels_per_bin_are_refused():
    truth, mean, std = _overconfident_where_faint(n=1000)
    with pytest.raises(ValueError, match="too few"):
        fit_snr_calibration(truth, mean, std, n_bins=8)


def test_the_calibration_set_is_not_the_benchmark_set():
    from lensenhance.benchmark.denoise import CALIBRATION_SEED, TUNING_SEED
    from lensenhance.benchmark.sr import BENCHMARK_SEED
    from lensenhance.pretrained import list_pretrained, model_card

    assert CALIBRATION_SEED not in (BENCHMARK_SEED, TUNING_SEED)
    for name in list_pretrained(task="posterior"):
        calibration = model_card(name)["calibration"]
        assert "snr_bins" not in calibration or "groups" in calibration["snr_bins"], name
        for fitted in [calibration, *calibration.get("by_steps", {}).values()]:
            assert str(CALIBRATION_SEED) in fitted["set"] or "HSC train pairs held back" \
                in fitted["set"], name
            assert str(BENCHMARK_SEED) not in fitted["set"]
