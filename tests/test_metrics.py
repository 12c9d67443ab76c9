import numpy as np
import pytest
from astropy.nddata import CCDData

from lensenhance.evaluate.metrics import batch_metrics, image_metrics, summarize_metrics


@pytest.fixture
def truth():
    y, x = np.mgrid[:32, :32]
    return np.exp(-((x - 15.5) ** 2 + (y - 15.5) ** 2) / 30.0) * 10.0


def test_identical_images(truth):
    result = image_metrics(truth, truth)
    assert result["mse"] == 0
    assert result["psnr"] == np.inf
    assert result["ssim"] == pytest.approx(1.0)
    assert result["data_range"] == pytest.approx(truth.max() - truth.min())


def test_psnr_follows_definition(truth):
    pred = truth + 0.1
    result = image_metrics(pred, truth)
    data_range = truth.max() - truth.min()
    assert result["mse"] == pytest.approx(0.01 / data_range**2)
    assert result["psnr"] == pytest.approx(10 * np.log10(data_range**2 / 0.01))


def test_data_range_comes_from_truth_not_prediction(truth):
    # A prediction with a wild range must not change the scale of the metric.
    wild = truth.copy()
    wild[0, 0] = 1e6
    assert image_metrics(wild, truth)["data_range"] == image_metrics(truth, truth)["data_range"]


def test_explicit_data_range(truth):
    assert image_metrics(truth + 1, truth, data_range=100.0)["psnr"] == pytest.approx(40.0)


def test_accepts_nddata(truth):
    result = image_metrics(CCDData(truth + 0.1, unit="adu"), CCDData(truth, unit="adu"))
    assert result["mse"] > 0


@pytest.mark.parametrize("pred, match", [
    (np.zeros((32, 31)), "shape"),
    (np.full((32, 32), np.nan), "finite"),
    (np.zeros(32), "2-D"),
])
def test_bad_input(truth, pred, match):
    with pytest.raises(ValueError, match=match):
        image_metrics(pred, truth)


def test_constant_truth_needs_data_range():
    with pytest.raises(ValueError, match="data_range"):
        image_metrics(np.ones((8, 8)), np.ones((8, 8)))


def test_batch_and_summary(truth):
    truths = np.stack([truth, 2 * truth, 3 * truth])
    preds = truths + 0.05
    per_image = batch_metrics(preds, truths)
    assert per_image["psnr"].shape == (3,)
    # Brighter images have a larger range, so the same offset costs less PSNR.
    assert np.all(np.diff(per_image["psnr"]) > 0)
    summary = summarize_metrics(per_image)
    assert summary["psnr"] == pytest.approx(per_image["psnr"].mean())
    assert summary["psnr_sem"] > 0
    with pytest.raises(ValueError):
        batch_metrics(preds[:2], truths)


# -- distances between sets ---------------------------------------------------------------

from lensenhance.evaluate.metrics import (  # noqa: E402
    frechet_distance,
    kernel_distance,
    pixel_histogram_distance,
    power_spectrum_distance,
    radial_power_spectrum,
)


def _with_moments(rng, n, mean, cov):
    """Samples whose sample mean and (ddof=1) covariance are exactly ``mean`` and ``cov``."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T
    return z @ np.linalg.cholesky(cov).T + mean


def _sqrtm_psd(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).standard_normal((300, 16))
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_diagonal_gaussians_analytic():
    rng = np.random.default_rng(1)
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    a = _with_moments(rng, 200, mean_a, np.diag(var_a))
    b = _with_moments(rng, 300, mean_b, np.diag(var_b))
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    # One feature: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2.
    x = _with_moments(rng, 50, np.array([3.0]), np.array([[9.0]]))
    y = _with_moments(rng, 60, np.array([1.0]), np.array([[1.0]]))
    assert frechet_distance(x, y) == pytest.approx(4.0 + 4.0, rel=1e-8)


def test_frechet_distance_general_covariances():
    rng = np.random.default_rng(2)
    m_a, m_b = rng.standard_normal((2, 4, 4))
    cov_a, cov_b = m_a @ m_a.T + np.eye(4), m_b @ m_b.T + 0.5 * np.eye(4)
    mean_a, mean_b = rng.standard_normal((2, 4))
    a = _with_moments(rng, 100, mean_a, cov_a)
    b = _with_moments(rng, 100, mean_b, cov_b)
    root_a = _sqrtm_psd(cov_a)
    expected = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(_sqrtm_psd(root_a @ cov_b @ root_a)))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-7)


def test_frechet_distance_singular_covariance_is_finite():
    # Fewer samples than features: singular covariances.
    rng = np.random.default_rng(3)
    value = frechet_distance(rng.standard_normal((5, 20)), rng.standard_normal((6, 20)))
    assert np.isfinite(value)


def test_distances_grow_with_a_shift():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((400, 8))
    b = rng.standard_normal((400, 8))
    fds = [frechet_distance(a, b + shift) for shift in (0.0, 0.5, 1.0)]
    kids = [kernel_distance(a, b + shift, subset_size=100, n_subsets=20)[0]
            for shift in (0.0, 0.5, 1.0)]
    assert np.all(np.diff(fds) > 0) and np.all(np.diff(kids) > 0)
    # A shift of s in each of d features adds d * s^2 to the Frechet distance.
    assert fds[2] - fds[0] == pytest.approx(8.0, rel=0.1)


def test_kernel_distance_same_distribution_is_zero_within_errors():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3000, 8))
    mean, error = kernel_distance(a, b, subset_size=100, n_subsets=50, seed=1)
    assert error > 0
    assert abs(mean) < 4 * error
    shifted, shifted_error = kernel_distance(a, b + 0.5, subset_size=100, n_subsets=50)
    assert shifted > 10 * shifted_error


def test_kernel_distance_is_seeded():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 200, 4))
    assert kernel_distance(a, b, subset_size=50, seed=3) == \
        kernel_distance(a, b, subset_size=50, seed=3)
    assert kernel_distance(a, b, subset_size=50, n_subsets=1)[1] != \
        kernel_distance(a, b, subset_size=50, n_subsets=1)[1]  # NaN


@pytest.mark.parametrize("a, b, match", [
    (np.zeros(10), np.zeros((10, 1)), "2-D"),
    (np.zeros((10, 3)), np.zeros((10, 4)), "features"),
    (np.zeros((1, 3)), np.zeros((10, 3)), "at least 2"),
    (np.full((10, 3), np.nan), np.zeros((10, 3)), "NaN"),
])
def test_feature_distances_reject_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)
    with pytest.raises(ValueError, match=match):
        kernel_distance(a, b)


@pytest.mark.parametrize("options", [{"subset_size": 1}, {"subset_size": 11},
                                     {"n_subsets": 0}, {"subset_size": 2.5}])
def test_kernel_distance_rejects_bad_options(options):
    with pytest.raises(ValueError):
        kernel_distance(np.zeros((10, 2)), np.ones((10, 2)), **options)


def test_pixel_histogram_distance():
    rng = np.random.default_rng(7)
    a = rng.normal(0, 1, (20, 16, 16))
    b = rng.normal(0, 1, (30, 8, 8))
    assert pixel_histogram_distance(a, a) == 0
    near = pixel_histogram_distance(a, b, range=(-5, 5))
    far = pixel_histogram_distance(a, b + 1, range=(-5, 5))
    assert 0 < near < far < 1
    assert pixel_histogram_distance(a, a + 100, bins=10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="range"):
        pixel_histogram_distance(a, b, range=(1, 0))
    with pytest.raises(ValueError, match="bins"):
        pixel_histogram_distance(a, b, bins=0)
    with pytest.raises(ValueError, match="image stack"):
        pixel_histogram_distance(np.zeros(5), b)


def test_white_noise_power_spectrum_is_flat():
    images = np.random.default_rng(8).normal(0, 2.0, (200, 32, 32))
    k, power = radial_power_spectrum(images)
    assert k[0] == pytest.approx(1 / 32) and k[-1] == pytest.approx(0.5)
    assert len(k) == len(power) == 16
    # White noise of variance 4 has power 4 at every frequency.
    np.testing.assert_allclose(power, 4.0, rtol=0.1)


def test_smooth_images_have_falling_spectra():
    y, x = np.mgrid[:32, :32]
    blob = np.exp(-((x - 16) ** 2 + (y - 16) ** 2) / 8.0)
    _, power = radial_power_spectrum(blob)
    assert np.all(np.diff(power[:8]) < 0)


def test_power_spectrum_distance():
    rng = np.random.default_rng(9)
    a = rng.normal(size=(10, 16, 16))
    assert power_spectrum_distance(a, a) == 0
    # Ten times the amplitude is 100 times the power: 2 decades at every k.
    assert power_spectrum_distance(a, 10 * a) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="pixels"):
        power_spectrum_distance(a, a[:, :8, :8])
    with pytest.raises(ValueError, match="constant"):
        power_spectrum_distance(a, np.ones((3, 16, 16)))
    with pytest.raises(ValueError, match="image stack"):
        radial_power_spectrum(np.zeros((2, 2, 3, 3)))
