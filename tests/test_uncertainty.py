import math

import numpy as np
import pytest
from scipy import integrate, stats

from lensenhance.evaluate.uncertainty import (
    calibration_summary,
    chi2_consistency,
    crps_ensemble,
    crps_gaussian,
    fit_std_scale,
    interval_coverage,
    pit_histogram,
    pit_values,
    regression_ece,
    sample_interval_coverage,
    sample_pit,
    spread_skill_ratio,
    zscore_stats,
)

N_PIXELS = 100_000


def binomial_tol(p, n, k=4.0):
    """``k`` standard errors of a fraction ``p`` estimated from ``n`` pixels."""
    return k * math.sqrt(p * (1 - p) / n)


@pytest.fixture(params=[(250, 400), (4, 125, 200)], ids=["2d", "3d"])
def shape(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def gaussian(shape, dtype):
    """Truth drawn from a heteroscedastic Gaussian prediction (mean, std)."""
    rng = np.random.default_rng(1)
    mean = rng.normal(0.0, 5.0, shape)
    std = rng.uniform(0.2, 3.0, shape)
    truth = mean + std * rng.standard_normal(shape)
    return tuple(a.astype(dtype) for a in (truth, mean, std))


# -- calibrated, over- and under-confident ------------------------------------------------

def test_calibrated(gaussian):
    truth, mean, std = gaussian
    n = truth.size
    coverage = interval_coverage(truth, mean, std)
    assert set(coverage) == {0.68, 0.95}
    for level, fraction in coverage.items():
        assert fraction == pytest.approx(level, abs=binomial_tol(level, n))
    ece = regression_ece(truth, mean, std)
    assert ece["ece"] < 0.02
    np.testing.assert_allclose(ece["levels"], np.arange(0.05, 1, 0.1))
    np.testing.assert_allclose(ece["observed"], ece["levels"], atol=0.01)
    z = zscore_stats(truth, mean, std)
    assert z["n"] == n
    assert z["mean"] == pytest.approx(0, abs=4 / math.sqrt(n))
    assert z["variance"] == pytest.approx(1, abs=4 * math.sqrt(2 / n))
    assert spread_skill_ratio(truth, mean, std) == pytest.approx(1, abs=0.02)
    fractions, edges = pit_histogram(truth, mean, std, bins=10)
    np.testing.assert_allclose(edges, np.linspace(0, 1, 11))
    assert fractions.sum() == pytest.approx(1)
    np.testing.assert_allclose(fractions, 0.1, atol=binomial_tol(0.1, n))


@pytest.mark.parametrize("factor", [0.5, 2.0], ids=["over-confident", "under-confident"])
def test_miscalibrated(gaussian, factor):
    truth, mean, std = gaussian
    n = truth.size
    reported = std * factor
    coverage = interval_coverage(truth, mean, reported)
    for level, fraction in coverage.items():
        # |r| <= z * factor * std_true happens with probability 2 Phi(z * factor) - 1
        expected = 2 * stats.norm.cdf(stats.norm.ppf((1 + level) / 2) * factor) - 1
        assert fraction == pytest.approx(expected, abs=binomial_tol(expected, n))
        assert (fraction < level) == (factor < 1)
    assert zscore_stats(truth, mean, reported)["variance"] == pytest.approx(
        factor**-2, rel=0.03)
    assert spread_skill_ratio(truth, mean, reported) == pytest.approx(factor, rel=0.02)
    # PIT = Phi(Z / factor), so P(PIT <= p) = Phi(factor * Phi^-1(p))
    levels = (np.arange(10) + 0.5) / 10
    expected_ece = np.mean(np.abs(stats.norm.cdf(factor * stats.norm.ppf(levels)) - levels))
    ece = regression_ece(truth, mean, reported)
    assert ece["ece"] > 0.05
    assert ece["ece"] == pytest.approx(expected_ece, abs=0.01)
    fractions, _ = pit_histogram(truth, mean, reported, bins=10)
    # too small a std piles the PIT at 0 and 1 (U shape), too large a std in the middle
    outer, middle = fractions[[0, -1]].mean(), fractions[4:6].mean()
    assert (outer > middle) == (factor < 1)


def test_pit_values_is_a_map(gaussian):
    truth, mean, std = gaussian
    mask = np.zeros(truth.shape, bool)
    mask[..., ::2] = True
    pit = pit_values(truth, mean, std, mask=mask)
    assert pit.shape == truth.shape and pit.dtype == np.float64
    assert np.isnan(pit[~mask]).all()
    expected = stats.norm.cdf((truth[mask].astype(float) - mean[mask]) / std[mask])
    np.testing.assert_allclose(pit[mask], expected, rtol=1e-6, atol=1e-12)


def test_scalar_std():
    rng = np.random.default_rng(2)
    truth = rng.normal(0, 2, N_PIXELS)
    coverage = interval_coverage(truth, np.zeros_like(truth), 2.0, levels=0.68)
    assert coverage[0.68] == pytest.approx(0.68, abs=binomial_tol(0.68, N_PIXELS))


# -- samples ------------------------------------------------------------------------------

@pytest.fixture
def ensemble():
    """Truth and ``m`` samples drawn from one Gaussian per pixel, samples on axis 0."""
    def make(m, n=20_000, seed=3):
        rng = np.random.default_rng(seed)
        mean = rng.normal(0, 5, n)
        std = rng.uniform(0.2, 3.0, n)
        truth = mean + std * rng.standard_normal(n)
        samples = mean + std * rng.standard_normal((m, n))
        return truth, samples, mean, std
    return make


def test_sample_interval_coverage(ensemble):
    m = 99
    truth, samples, _, _ = ensemble(m)
    coverage = sample_interval_coverage(truth, samples, levels=(0.5, 0.68, 0.95))
    for level, fraction in coverage.items():
        # the empirical interval of m samples covers about level * (m - 1) / (m + 1)
        expected = level * (m - 1) / (m + 1)
        assert fraction == pytest.approx(expected, abs=binomial_tol(expected, len(truth)))


def test_sample_interval_coverage_axis(ensemble):
    truth, samples, _, _ = ensemble(20, n=3000)
    expected = sample_interval_coverage(truth, samples)
    images = samples.reshape(20, 30, 100)
    assert sample_interval_coverage(truth.reshape(30, 100), np.moveaxis(images, 0, -1),
                                    axis=-1) == expected
    assert sample_interval_coverage(truth.reshape(30, 100), np.moveaxis(images, 0, 1),
                                    axis=1) == expected


def test_sample_pit_flat_for_calibrated_ensemble(ensemble):
    m = 9
    truth, samples, _, _ = ensemble(m)
    pit = sample_pit(truth, samples)
    # the values are the centres (k + 1/2) / (m + 1) of m + 1 equal cells
    np.testing.assert_allclose(np.unique(pit), (np.arange(m + 1) + 0.5) / (m + 1))
    fractions = np.histogram(pit, bins=m + 1, range=(0, 1))[0] / len(pit)
    np.testing.assert_allclose(fractions, 0.1, atol=binomial_tol(0.1, len(pit)))


def test_sample_pit_ties_and_extremes():
    truth = np.array([0.0, 0.0, 10.0, -10.0])
    samples = np.zeros((4, 4))
    pit = sample_pit(truth, samples)
    # all ties: half below, half above; all below: top cell; all above: bottom cell
    np.testing.assert_allclose(pit, [0.5, 0.5, 4.5 / 5, 0.5 / 5])


# -- CRPS ---------------------------------------------------------------------------------

def _crps_by_integration(y, mu, sigma):
    """CRPS as the integral of (F(x) - 1{x >= y})^2 over x."""
    below = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -np.inf, y)[0]
    above = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, np.inf)[0]
    return below + above


@pytest.mark.parametrize("y, mu, sigma", [(0.0, 0.0, 1.0), (0.0, 0.0, 3.0), (1.3, -0.4, 0.7),
                                          (-5.0, 2.0, 0.5)])
def test_crps_gaussian_closed_form(y, mu, sigma):
    value = crps_gaussian(np.array([y]), np.array([mu]), np.array([sigma]))
    assert value == pytest.approx(_crps_by_integration(y, mu, sigma), rel=1e-6)
    if y == mu:
        assert value == pytest.approx(sigma * (math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_crps_gaussian_tends_to_absolute_error():
    truth = np.array([1.0, -2.0, 3.5])
    mean = np.zeros(3)
    assert crps_gaussian(truth, mean, 1e-9) == pytest.approx(np.abs(truth).mean())


def test_crps_ensemble_matches_gaussian(ensemble):
    m = 200
    truth, samples, mean, std = ensemble(m, n=5000)
    gaussian = crps_gaussian(truth, mean, std)
    assert crps_ensemble(truth, samples) == pytest.approx(gaussian, rel=0.03)
    assert crps_ensemble(truth, samples, fair=True) == pytest.approx(gaussian, rel=0.03)


def test_crps_ensemble_fair_is_unbiased(ensemble):
    # With few members the standard form exceeds the Gaussian CRPS by std / (m sqrt(pi)).
    m = 4
    truth, samples, mean, std = ensemble(m, n=100_000)
    gaussian = crps_gaussian(truth, mean, std)
    bias = np.mean(std) / (m * math.sqrt(math.pi))
    assert bias > 0.2 * gaussian  # far outside the tolerances below
    assert crps_ensemble(truth, samples, fair=True) == pytest.approx(gaussian, rel=0.02)
    assert crps_ensemble(truth, samples) == pytest.approx(gaussian + bias, rel=0.02)


def test_crps_ensemble_matches_brute_force():
    rng = np.random.default_rng(4)
    truth = rng.normal(size=(3, 5))
    samples = rng.normal(size=(3, 5, 7)) * 2
    error = np.abs(samples - truth[..., None]).mean(-1)
    pairs = np.abs(samples[..., :, None] - samples[..., None, :]).sum((-1, -2))
    m = samples.shape[-1]
    assert crps_ensemble(truth, samples, axis=-1) == pytest.approx(
        np.mean(error - pairs / (2 * m * m)))
    assert crps_ensemble(truth, samples, axis=2, fair=True) == pytest.approx(
        np.mean(error - pairs / (2 * m * (m - 1))))


def test_crps_point_ensemble_is_absolute_error():
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(6, 8))
    point = rng.normal(size=(6, 8))
    samples = np.broadcast_to(point, (5, 6, 8))
    expected = np.mean(np.abs(truth - point))
    assert crps_ensemble(truth, samples) == pytest.approx(expected)
    assert crps_ensemble(truth, samples, fair=True) == pytest.approx(expected)
    assert crps_ensemble(truth, point[None]) == pytest.approx(expected)


# -- spread-skill with a finite ensemble ---------------------------------------------------

def test_spread_skill_finite_ensemble_correction(ensemble):
    m = 5
    truth, samples, _, _ = ensemble(m, n=100_000)
    mean, std = samples.mean(0), samples.std(0, ddof=1)
    # the ensemble mean's own error makes a perfect ensemble look over-confident
    assert spread_skill_ratio(truth, mean, std) == pytest.approx(math.sqrt(m / (m + 1)),
                                                                 rel=0.02)
    assert spread_skill_ratio(truth, mean, std, n_samples=m) == pytest.approx(1, rel=0.02)


def test_spread_skill_perfect_mean_is_infinite():
    truth = np.ones(4)
    assert spread_skill_ratio(truth, truth, 0.1) == math.inf


# -- chi-square ---------------------------------------------------------------------------

def test_chi2_consistency_pure_noise(shape):
    rng = np.random.default_rng(6)
    model = rng.gamma(2.0, 1.0, shape)
    sigma = rng.uniform(0.1, 1.0, shape)
    observed = model + sigma * rng.standard_normal(shape)
    result = chi2_consistency(observed, model, sigma)
    n = observed.size
    assert result["dof"] == n
    assert result["chi2_dof"] == pytest.approx(1, abs=4 * math.sqrt(2 / n))
    assert result["chi2_dof"] == pytest.approx(result["chi2"] / result["dof"])
    corrected = chi2_consistency(observed, model, sigma, dof_correction=10)
    assert corrected["dof"] == n - 10 and corrected["chi2"] == result["chi2"]
    # the model is off by more than the noise: well above 1
    assert chi2_consistency(observed + 2 * sigma, model, sigma)["chi2_dof"] > 4


def test_chi2_consistency_no_dof_left():
    with pytest.raises(ValueError, match="dof_correction"):
        chi2_consistency(np.zeros(3), np.zeros(3), 1.0, dof_correction=3)


# -- recalibration and summary -----------------------------------------------------------

@pytest.mark.parametrize("level", [0.68, 0.95])
def test_fit_std_scale_recovers_factor(gaussian, level):
    truth, mean, std = gaussian
    over_confident = std / 2
    scale = fit_std_scale(truth, mean, over_confident, level=level)
    assert scale == pytest.approx(2.0, rel=0.03)
    n = truth.size
    # on the pixels it was fitted to it covers ceil((n + 1) level) / n: at least level
    covered = interval_coverage(truth, mean, scale * over_confident, levels=level)[level]
    assert level <= covered <= level + 2 / n
    # on fresh pixels, the nominal level
    rng = np.random.default_rng(7)
    fresh = mean + std.astype(np.float64) * rng.standard_normal(truth.shape)
    coverage = interval_coverage(fresh, mean, scale * over_confident, levels=level)[level]
    assert coverage == pytest.approx(level, abs=binomial_tol(level, n))


@pytest.mark.parametrize("extra", [None, 0.0])
def test_fit_std_scale_at_two_levels_sits_between_them_for_heavy_tails(extra):
    # Student-t errors (3 dof): the 95 % factor is wider than the 68 % one
    rng = np.random.default_rng(3)
    error = rng.standard_t(3, 40_000)
    truth, mean, std = error, np.zeros_like(error), np.ones_like(error)
    alone = {lv: fit_std_scale(truth, mean, std, level=lv, extra_variance=extra)
             for lv in (0.68, 0.95)}
    both = fit_std_scale(truth, mean, std, level=(0.68, 0.95), extra_variance=extra)
    assert alone[0.68] < both < alone[0.95]
    assert both == pytest.approx(np.sqrt(alone[0.68] * alone[0.95]), rel=1e-6)
    covered = interval_coverage(truth, mean, both * std, levels=(0.68, 0.95))
    assert covered[0.68] > 0.68 and covered[0.95] < 0.95


def test_fit_std_scale_too_few_pixels():
    with pytest.raises(ValueError, match="too few"):
        fit_std_scale(np.zeros(10), np.ones(10), 1.0, level=0.95)


def test_calibration_summary_agrees(gaussian):
    truth, mean, std = gaussian
    mask = truth > np.median(truth)
    summary = calibration_summary(truth, mean, std, mask=mask, n_samples=8)
    coverage = interval_coverage(truth, mean, std, mask=mask)
    z = zscore_stats(truth, mean, std, mask=mask)
    assert summary == pytest.approx({
        "coverage_68": coverage[0.68], "coverage_95": coverage[0.95],
        "ece": regression_ece(truth, mean, std, mask=mask)["ece"],
        "z_mean": z["mean"], "z_var": z["variance"],
        "spread_skill": spread_skill_ratio(truth, mean, std, mask=mask, n_samples=8),
        "crps": crps_gaussian(truth, mean, std, mask=mask), "n_pixels": z["n"]})
    assert summary["n_pixels"] == np.count_nonzero(mask)
    assert all(isinstance(v, float) for k, v in summary.items() if k != "n_pixels")


# -- mask, NaN and errors -----------------------------------------------------------------

@pytest.fixture
def small():
    rng = np.random.default_rng(8)
    mean = rng.normal(0, 1, (20, 30))
    std = rng.uniform(0.5, 1.5, (20, 30))
    truth = mean + std * rng.standard_normal((20, 30))
    samples = mean + std * rng.standard_normal((16, 20, 30))
    return truth, mean, std, samples


def _all_figures(truth, mean, std, samples, mask=None):
    return {"coverage": interval_coverage(truth, mean, std, mask=mask),
            "sample_coverage": sample_interval_coverage(truth, samples, mask=mask),
            "ece": regression_ece(truth, mean, std, mask=mask)["ece"],
            "pit": pit_histogram(truth, mean, std, mask=mask)[0].tolist(),
            "z": zscore_stats(truth, mean, std, mask=mask),
            "ssr": spread_skill_ratio(truth, mean, std, mask=mask),
            "crps": crps_gaussian(truth, mean, std, mask=mask),
            "crps_ens": crps_ensemble(truth, samples, mask=mask),
            "chi2": chi2_consistency(truth, mean, std, mask=mask),
            "scale": fit_std_scale(truth, mean, std, mask=mask),
            "summary": calibration_summary(truth, mean, std, mask=mask)}


def test_mask_selects_pixels(small):
    truth, mean, std, samples = small
    mask = np.zeros(truth.shape, bool)
    mask[5:15, 10:25] = True
    # garbage (even zero std) outside the mask must not matter
    bad_mean, bad_std, bad_samples = mean.copy(), std.copy(), samples.copy()
    bad_mean[~mask] = 1e6
    bad_std[~mask] = 0.0
    bad_samples[:, ~mask] = -1e6
    masked = _all_figures(truth, bad_mean, bad_std, bad_samples, mask=mask)
    subset = _all_figures(truth[mask], mean[mask], std[mask], samples[:, mask])
    assert masked == subset


def test_nan_pixels_are_excluded(small):
    truth, mean, std, samples = small
    truth, mean, std, samples = truth.copy(), mean.copy(), std.copy(), samples.copy()
    truth[0, :5] = np.nan
    mean[1, :5] = np.nan
    std[2, :5] = np.nan
    samples[3, 3, :5] = np.nan  # one NaN sample drops its pixel from every sample-based figure
    finite = np.ones(truth.shape, bool)
    finite[:3, :5] = False
    # the sample-based figures see only the truth's and the samples' NaNs
    finite_samples = np.ones(truth.shape, bool)
    finite_samples[0, :5] = finite_samples[3, :5] = False
    with_nan = _all_figures(truth, mean, std, samples)
    dropped = _all_figures(truth[finite], mean[finite], std[finite], samples[:, finite])
    dropped["sample_coverage"] = sample_interval_coverage(truth[finite_samples],
                                                          samples[:, finite_samples])
    dropped["crps_ens"] = crps_ensemble(truth[finite_samples], samples[:, finite_samples])
    assert with_nan == dropped
    pit = pit_values(truth, mean, std)
    assert np.isnan(pit[~finite]).all() and np.isfinite(pit[finite]).all()
    assert np.isnan(sample_pit(truth, samples)[~finite_samples]).all()


@pytest.mark.parametrize("call", [
    lambda t, m, s, x: interval_coverage(t, m[:-1], s),
    lambda t, m, s, x: regression_ece(t, m, s[:, :-1]),
    lambda t, m, s, x: zscore_stats(t[None], m, s),
    lambda t, m, s, x: crps_gaussian(t, m.T, s),
    lambda t, m, s, x: chi2_consistency(t, m, s[0]),
])
def test_shape_mismatch(small, call):
    truth, mean, std, samples = small
    with pytest.raises(ValueError, match="shape"):
        call(truth, mean, std, samples)


@pytest.mark.parametrize("call", [
    lambda t, x: sample_interval_coverage(t, x[:, :-1]),
    lambda t, x: crps_ensemble(t, x[0]),
    lambda t, x: sample_pit(t, x, axis=1),
])
def test_samples_shape_mismatch(small, call):
    truth, _, _, samples = small
    with pytest.raises(ValueError, match="shape|axis"):
        call(truth, samples)


def test_bad_axis(small):
    truth, _, _, samples = small
    with pytest.raises(ValueError, match="axis must be an integer from -3 to 2"):
        crps_ensemble(truth, samples, axis=3)


@pytest.mark.parametrize("func", [interval_coverage, regression_ece, pit_values,
                                  pit_histogram, zscore_stats, crps_gaussian, fit_std_scale,
                                  calibration_summary])
@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_nonpositive_std(small, func, bad):
    truth, mean, std, _ = small
    std = std.copy()
    std[0, :3] = bad
    with pytest.raises(ValueError, match=r"std must be positive where used: 3 of 600 pixel"):
        func(truth, mean, std)


def test_nonpositive_sigma():
    with pytest.raises(ValueError, match="sigma must be positive where used: 1 of 3"):
        chi2_consistency(np.zeros(3), np.zeros(3), np.array([1.0, 0.0, 1.0]))


def test_spread_skill_allows_zero_but_not_negative_std(small):
    truth, mean, std, _ = small
    assert spread_skill_ratio(truth, mean, 0.0) == 0.0
    with pytest.raises(ValueError, match="std must not be negative: 1 of 600"):
        spread_skill_ratio(truth, mean, np.where(np.arange(600).reshape(20, 30) == 7, -1, std))


def test_empty_mask(small):
    truth, mean, std, samples = small
    empty = np.zeros(truth.shape, bool)
    with pytest.raises(ValueError, match="no pixel left to use: the mask selects none"):
        interval_coverage(truth, mean, std, mask=empty)
    with pytest.raises(ValueError, match="no pixel left to use: the mask selects none"):
        crps_ensemble(truth, samples, mask=empty)


def test_all_selected_pixels_nan(small):
    truth, mean, std, _ = small
    mask = np.zeros(truth.shape, bool)
    mask[0, :4] = True
    mean = mean.copy()
    mean[0, :4] = np.nan
    with pytest.raises(ValueError, match="all 4 selected pixel"):
        zscore_stats(truth, mean, std, mask=mask)


def test_mask_must_be_boolean_of_truth_shape(small):
    truth, mean, std, _ = small
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        interval_coverage(truth, mean, std, mask=np.ones(truth.shape, int))
    with pytest.raises(ValueError, match="mask has shape"):
        interval_coverage(truth, mean, std, mask=np.ones((20, 29), bool))


def test_infinite_values_are_errors(small):
    truth, mean, std, _ = small
    mean = mean.copy()
    mean[2, 2] = np.inf
    with pytest.raises(ValueError, match="mean has 1 infinite value"):
        crps_gaussian(truth, mean, std)
    # ...but not where masked out
    mask = np.ones(truth.shape, bool)
    mask[2, 2] = False
    assert np.isfinite(crps_gaussian(truth, mean, std, mask=mask))


def test_non_numeric_input(small):
    truth, mean, std, _ = small
    with pytest.raises(TypeError, match="truth must be a real numeric array"):
        zscore_stats(truth.astype(str), mean, std)
    with pytest.raises(TypeError, match="std must be a real numeric array"):
        zscore_stats(truth, mean, std + 0j)


@pytest.mark.parametrize("levels, error, match", [
    ((0.68, 1.0), ValueError, "strictly between 0 and 1"),
    (0.0, ValueError, "strictly between 0 and 1"),
    ((), ValueError, "non-empty"),
    (("0.68",), TypeError, "real numbers"),
])
def test_bad_levels(small, levels, error, match):
    truth, mean, std, samples = small
    with pytest.raises(error, match=match):
        interval_coverage(truth, mean, std, levels=levels)
    with pytest.raises(error, match=match):
        sample_interval_coverage(truth, samples, levels=levels)


@pytest.mark.parametrize("call, error, match", [
    (lambda t, m, s, x: regression_ece(t, m, s, n_levels=0), ValueError, "n_levels"),
    (lambda t, m, s, x: pit_histogram(t, m, s, bins=2.5), TypeError, "bins"),
    (lambda t, m, s, x: spread_skill_ratio(t, m, s, n_samples=1), ValueError, "n_samples"),
    (lambda t, m, s, x: calibration_summary(t, m, s, n_samples=True), TypeError, "n_samples"),
    (lambda t, m, s, x: chi2_consistency(t, m, s, dof_correction=-1), ValueError,
     "dof_correction"),
    (lambda t, m, s, x: crps_ensemble(t, x[:1], fair=True), ValueError, "at least 2"),
    (lambda t, m, s, x: fit_std_scale(t, m, s, level=1.5), ValueError, "between 0 and 1"),
])
def test_bad_options(small, call, error, match):
    truth, mean, std, samples = small
    with pytest.raises(error, match=match):
        call(truth, mean, std, samples)


def test_fit_std_scale_with_extra_variance():
    # truth = mean + N(0, s**2 + extra): a std of s / 2 needs the factor 2
    rng = np.random.default_rng(3)
    s, extra = 1.0, 0.5
    truth = rng.normal(0.0, np.sqrt(s**2 + extra), 200_000)
    mean = np.zeros_like(truth)
    factor = fit_std_scale(truth, mean, s / 2, extra_variance=extra)
    assert factor == pytest.approx(2.0, rel=0.02)
    # without the extra variance the factor would absorb it
    assert fit_std_scale(truth, mean, s / 2) == pytest.approx(2 * np.sqrt(1.5), rel=0.02)
