"""Tests of the per-bin calibration and of TARP against its paper's toy case."""

import numpy as np
import pytest

from lensenhance.evaluate.calibration_bins import (
    binned_calibration,
    decile_edges,
    tarp_coverage,
)


def _toy(width, seed=0, n_cases=200, n_samples=300, n_dims=5):
    """Lemos et al. (2023), section 4.1: Gaussian posteriors of known width.

    Means uniform in [-5, 5], log-widths uniform in [-5, -1]; the truth is drawn from the
    true posterior and the samples from one ``width`` times as wide.
    """
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-5, 5, (n_cases, n_dims))
    sigma = np.exp(rng.uniform(-5, -1, (n_cases, n_dims)))
    samples = rng.normal(centre, width * sigma, (n_samples, n_cases, n_dims))
    truth = rng.normal(centre, sigma)
    return samples, truth


@pytest.mark.parametrize("references", ["prior", "box"])
def test_tarp_is_on_the_diagonal_for_a_calibrated_posterior(references):
    result = tarp_coverage(*_toy(1.0), references=references, n_bootstrap=50)
    low, high = result["atc_interval"]
    assert low < 0 < high and abs(result["atc"]) < 0.03
    assert result["max_deviation"] < 0.1
    assert result["ecp"][0] == 0 and result["ecp"][-1] >= 0.99
    assert result["n_references"] == (16 if references == "prior" else 1)


@pytest.mark.parametrize("references", ["prior", "box"])
@pytest.mark.parametrize(("width", "sign"), [(0.5, -1), (2.0, 1)])
def test_tarp_sees_over_and_under_confident_posteriors(width, sign, references):
    result = tarp_coverage(*_toy(width), references=references, n_bootstrap=50)
    low, high = result["atc_interval"]
    assert sign * low > 0 and sign * high > 0 and abs(result["atc"]) > 0.05


def test_tarp_in_the_box_reads_the_sky_and_in_flux_units_the_lens():
    """A noise-free sky hardly varies from image to image; a posterior as wide there as
    the x2 models' (half the pixels, as in a 150x150 cutout) saturates the per-pixel box
    (each pixel scaled to the truths' range), while in flux units with other images'
    truths as references the lens, an exact Bayesian posterior here, decides."""
    rng = np.random.default_rng(5)
    n_cases, half = 100, 200
    sky = 1e-4 + rng.normal(0, 1e-5, (n_cases, half))
    sky_mean = sky + rng.normal(0, 2e-4, sky.shape)  # wider than the sky ever varies
    # the lens: prior N(1, 0.5^2), data = truth + N(0, 0.05^2), its exact posterior
    lens = rng.normal(1.0, 0.5, (n_cases, half))
    gain = 0.5**2 / (0.5**2 + 0.05**2)
    lens_mean = 1.0 + gain * (lens + rng.normal(0, 0.05, lens.shape) - 1.0)
    truth = np.concatenate([sky, lens], axis=1)
    mean = np.concatenate([sky_mean, lens_mean], axis=1)
    width = np.concatenate([np.full(half, 2e-4), np.full(half, 0.05 * np.sqrt(gain))])
    samples = mean + rng.normal(size=(16, *truth.shape)) * width
    box = tarp_coverage(samples, truth, references="box", n_bootstrap=20)
    prior = tarp_coverage(samples, truth, references="prior", n_bootstrap=20)
    assert box["atc"] > 0.1
    low, high = prior["atc_interval"]
    assert low < 0 < high and abs(prior["atc"]) < 0.03


def test_tarp_of_a_large_image_saturates_when_its_faint_half_is_too_wide():
    """A joint check over a whole cutout is strict: over 22,500 pixels the distances add
    up each pixel's error, and a spread 1.3x too wide on half of them (68 % coverage about
    0.80 there) puts every sample farther than the truth, however calibrated the other
    half is. With a few pixels the same posterior barely moves TARP."""
    rng = np.random.default_rng(4)

    def atc(n_dims):
        centre = rng.normal(0, 3, (100, n_dims))
        sigma = rng.uniform(0.3, 1.0, (100, n_dims))
        error = np.where(np.arange(n_dims) < n_dims // 2, 1 / 1.3, 1.0)  # faint half
        truth = centre + rng.normal(size=centre.shape) * sigma * error
        samples = centre + rng.normal(size=(16, *centre.shape)) * sigma
        return tarp_coverage(samples, truth, n_bootstrap=10)["atc"]

    assert atc(150 * 150) > 0.1  # near the saturated 0.125
    assert abs(atc(8)) < 0.05


def test_tarp_flattens_images_and_checks_its_input():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(20, 4, 4))
    samples = truth[None] + rng.normal(size=(8, 20, 4, 4))
    assert tarp_coverage(samples, truth, n_bootstrap=5)["n_cases"] == 20
    with pytest.raises(ValueError, match="samples must be"):
        tarp_coverage(samples[:, :5], truth)
    samples[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tarp_coverage(samples, truth)
    with pytest.raises(ValueError, match="'prior' or 'box'"):
        tarp_coverage(samples[:, :, 1:], truth[:, 1:], references="uniform")


def test_binned_calibration_finds_the_bin_whose_std_is_wrong():
    rng = np.random.default_rng(3)
    brightness = rng.uniform(0, 10, 200_000)
    std = np.ones_like(brightness)
    truth = rng.normal(0.0, 1.0, brightness.shape)
    # Faint pixels (below 1) really scatter twice as much as their std says.
    truth[brightness < 1] *= 2
    rows = binned_calibration(truth, np.zeros_like(truth), std, by=brightness)
    assert len(rows) == 10 and sum(r["n_pixels"] for r in rows) == brightness.size
    assert rows[0]["coverage_68"] == pytest.approx(0.38, abs=0.02)
    for row in rows[1:]:
        assert row["coverage_68"] == pytest.approx(0.68, abs=0.02)
        assert row["coverage_95"] == pytest.approx(0.95, abs=0.01)
        assert row["ece"] < 0.02


def test_binned_calibration_by_label_and_small_bins():
    truth = np.random.default_rng(4).normal(size=(3, 20, 20))
    labels = np.broadcast_to(np.array([0, 1, 1])[:, None, None], truth.shape)
    rows = binned_calibration(truth, 0 * truth, 1.0, by=labels)
    assert [r["label"] for r in rows] == [0, 1] and rows[1]["n_pixels"] == 800
    rows = binned_calibration(truth, 0 * truth, 1.0, by=labels, min_pixels=500)
    assert np.isnan(rows[0]["coverage_68"]) and np.isfinite(rows[1]["coverage_68"])
    edges = decile_edges(np.arange(101.0))
    assert edges[0] == 0 and edges[-1] == 100 and len(edges) == 11


def test_snr_above_the_background_bins_pixels_by_the_signal_the_model_sees():
    """A sky lifted by 5 sigma: counted from zero every pixel is bright; above the
    background the sky is in the lowest bin, where its intervals are judged."""
    from lensenhance.evaluate.scoring import calibration_by_bin, format_calibration_bins

    rng = np.random.default_rng(5)
    truths = np.full((4, 32, 32), 5.0)
    truths[:, 10:20, 10:20] += 50.0  # a source
    means = truths + rng.normal(size=truths.shape)
    stds = np.ones_like(truths)
    backgrounds = np.full((4, 1, 1), 5.0)
    bins = calibration_by_bin(truths, means, stds, backgrounds=backgrounds)
    from_zero = {row["low"]: row["n_pixels"] for row in bins["snr"]}
    above = {row["low"]: row["n_pixels"] for row in bins["snr_background"]}
    n_sky = 4 * (32 * 32 - 100)
    assert from_zero.get(0.0, 0) < 50 and above[0.0] > 0.6 * n_sky  # |noise| < 1: 68 %
    assert above[30.0] == 4 * 100
    lines = format_calibration_bins({"calibration_bins": bins})
    assert any("above the input's background" in line for line in lines)
    assert "snr_background" not in calibration_by_bin(truths, means, stds)


def test_arc_bin_is_the_coverage_of_exactly_the_arc_pixels():
    """Arc pixels: light pixels where the source is at least the lens light; their bin is
    the coverage of those pixels alone (here over-confident, elsewhere calibrated)."""
    from scipy.stats import norm

    from lensenhance.evaluate.scoring import (
        arc_mask,
        calibration_by_bin,
        format_calibration_bins,
        light_mask,
        posterior_figures,
    )

    rng = np.random.default_rng(6)
    y, x = np.mgrid[:32, :32] - 15.5
    lens = np.broadcast_to(100.0 * np.exp(-(x**2 + y**2) / 20.0), (3, 32, 32))
    ring = 80.0 * np.exp(-((np.hypot(x, y) - 9.0) ** 2) / 4.0)
    truths = lens + ring + 1.0
    arcs = arc_mask(truths, lens)
    assert arcs.any() and not (arcs & ~light_mask(truths)).any()
    assert np.array_equal(arcs, light_mask(truths) & (truths - lens >= lens))
    stds = np.ones_like(truths)
    means = truths + rng.normal(size=truths.shape) * np.where(arcs, 3.0, 1.0)
    bins = calibration_by_bin(truths, means, stds, arcs=arcs)
    (row,) = bins["arc"]
    inside = np.abs(truths - means)[arcs]  # in units of std (1)
    assert row["n_pixels"] == arcs.sum()
    assert row["coverage_68"] == pytest.approx(np.mean(inside <= norm.ppf(0.84)))
    assert row["coverage_95"] == pytest.approx(np.mean(inside <= norm.ppf(0.975)))
    assert row["coverage_68"] < 0.35
    lines = format_calibration_bins({"calibration_bins": bins})
    assert (f"68% coverage on lensed-arc pixels (source >= lens light): "
            f"{row['coverage_68']:.2f} ({arcs.sum()} px)") in " ".join(lines)
    # no lens light: every light pixel; too few pixels: NaN; passed on by posterior_figures
    assert np.array_equal(arc_mask(truths, 0 * truths), light_mask(truths))
    few = np.zeros_like(arcs)
    few[0, 0, :3] = True
    assert np.isnan(calibration_by_bin(truths, means, stds, arcs=few)["arc"][0]["coverage_68"])
    figures = posterior_figures(truths, means, stds, arcs=arcs)
    assert figures["calibration_bins"]["arc"] == bins["arc"]
    assert "arc" not in calibration_by_bin(truths, means, stds)


def test_an_exact_posterior_holds_bins_of_its_prediction_not_of_the_truth():
    """Why per-decile-of-truth coverage is not a calibration target on its own: with a
    Gaussian prior N(0, 1) and noise 0.5 the exact posterior (mean 0.8 x, std 0.45)
    covers 68 % in every decile of its mean, but extreme truths are shrunk past their
    interval (about 0.57) and middle ones over-covered (about 0.74)."""
    rng = np.random.default_rng(6)
    truth = rng.normal(size=200_000)
    gain = 1 / (1 + 0.5**2)
    mean = gain * (truth + rng.normal(0, 0.5, truth.shape))
    std = np.full(truth.shape, np.sqrt(gain) * 0.5)
    by_mean = [r["coverage_68"] for r in binned_calibration(truth, mean, std, by=mean)]
    by_truth = [r["coverage_68"] for r in binned_calibration(truth, mean, std, by=truth)]
    assert all(0.66 < c < 0.70 for c in by_mean)
    assert min(by_truth) < 0.60 and max(by_truth) > 0.72


def test_the_benchmarks_bin_the_light_by_the_mean_and_by_the_truth():
    """`calibration_by_bin` reports both decile rows; on an exact posterior of positive
    images (prior 10 + N(0, 1) per pixel, noise 0.5) only the mean's row is flat."""
    from lensenhance.evaluate.scoring import calibration_by_bin, format_calibration_bins

    rng = np.random.default_rng(7)
    truths = 10.0 + rng.normal(size=(8, 64, 64))
    gain = 1 / (1 + 0.5**2)
    means = 10.0 + gain * (truths - 10.0 + rng.normal(0, 0.5, truths.shape))
    stds = np.full(truths.shape, np.sqrt(gain) * 0.5)
    bins = calibration_by_bin(truths, means, stds)
    by_mean = [row["coverage_68"] for row in bins["mean_brightness"]]
    by_truth = [row["coverage_68"] for row in bins["brightness"]]
    assert len(by_mean) == 10 and all(0.62 < c < 0.74 for c in by_mean)
    assert min(by_truth) < 0.62
    lines = format_calibration_bins({"calibration_bins": bins})
    assert any("decile of the mean's brightness" in line for line in lines)


def test_the_benchmarks_bin_by_the_means_snr_against_the_input_noise():
    """With the input's noise, a row of the mean's SNR against it: each pixel lands in
    the bin of ``|mean| / noise``, and the line names each bin's pixel count."""
    from lensenhance.evaluate.scoring import SNR_EDGES, calibration_by_bin, format_calibration_bins

    rng = np.random.default_rng(8)
    noise = np.array([0.5, 2.0]).reshape(2, 1, 1)  # two depths
    means = np.exp(rng.uniform(np.log(0.05), np.log(500.0), (2, 64, 64)))
    stds = np.full(means.shape, 0.3)
    truths = means + stds * rng.standard_normal(means.shape)
    bins = calibration_by_bin(truths, means, stds, noise=noise)
    q = means / noise
    expected = [int(((q >= lo) & (q < hi)).sum()) for lo, hi in zip(SNR_EDGES[:-1], SNR_EDGES[1:])]
    assert [row["n_pixels"] for row in bins["snr_noise"]] == expected
    assert all(abs(row["coverage_68"] - 0.68) < 0.05 for row in bins["snr_noise"])
    line = [x for x in format_calibration_bins({"calibration_bins": bins})
            if "against the input's noise" in x]
    assert len(line) == 1 and line[0].endswith("(pixels " + " ".join(map(str, expected)) + ")")
    assert "snr_noise" not in calibration_by_bin(truths, means, stds)
