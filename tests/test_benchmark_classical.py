"""Classical denoiser baselines and the posterior panel figure, on tiny images."""

import numpy as np
import pytest

from lensenhance.benchmark.classical import CLASSICAL_DENOISERS, denoise_classical, tune_classical
from lensenhance.evaluate.plots import plot_posterior_panel

SIGMA = 0.1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _blob(size=32, cx=15.5, cy=15.5, width=4.0):
    y, x = np.mgrid[:size, :size]
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))


def _noisy_set(seed, n=3):
    """Gaussian blobs of a few positions and widths, and their seeded noisy versions."""
    rng = np.random.default_rng(seed)
    truths = [_blob(cx=14 + i, cy=16 - i, width=3 + i) for i in range(n)]
    images = [truth + rng.normal(0, SIGMA, truth.shape) for truth in truths]
    return images, truths


def _rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _total_variation(image):
    return float(np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum())


@pytest.fixture(scope="module")
def tuned():
    images, truths = _noisy_set(seed=1)
    return {method: tune_classical(method, images, SIGMA, truths)
            for method in CLASSICAL_DENOISERS}


@pytest.mark.parametrize("method", CLASSICAL_DENOISERS)
def test_tuned_denoiser_reduces_error_on_held_out_images(method, tuned):
    # Tuned on seed 1, evaluated on seed 2: the strength is not fitted to these images.
    images, truths = _noisy_set(seed=2)
    strength = tuned[method]["strength"]
    for image, truth in zip(images, truths, strict=True):
        out = denoise_classical(method, image, SIGMA, strength=strength)
        assert out.shape == image.shape
        assert out.dtype == np.float64
        assert _rmse(out, truth) < 0.8 * _rmse(image, truth)


@pytest.mark.parametrize("method", CLASSICAL_DENOISERS)
def test_tune_picks_interior_optimum_and_reports_grid(method, tuned):
    result = tuned[method]
    assert result["method"] == method
    assert result["n"] == 3
    grid = np.array(result["grid"])
    assert grid.shape == (len(grid), 2) and len(grid) >= 9
    strengths, psnrs = grid[:, 0], grid[:, 1]
    best = int(np.argmax(psnrs))
    assert 0 < best < len(grid) - 1  # neither end of the grid: a real optimum
    assert result["strength"] == strengths[best]
    assert result["psnr"] == psnrs[best]
    assert isinstance(result["strength"], float) and isinstance(result["psnr"], float)


def test_tune_custom_grid_and_per_image_sigmas():
    images, truths = _noisy_set(seed=3, n=2)
    noise_maps = [np.full(image.shape, SIGMA) for image in images]
    result = tune_classical("tv", images, noise_maps, truths, strengths=[0.5, 2.0])
    assert [row[0] for row in result["grid"]] == [0.5, 2.0]
    assert result["n"] == 2
    with pytest.raises(ValueError, match="2 images but 1 noise levels"):
        tune_classical("tv", images, noise_maps[:1], truths, strengths=[1.0])
    with pytest.raises(ValueError, match="2 images but 1 truths"):
        tune_classical("tv", images, SIGMA, truths[:1], strengths=[1.0])


@pytest.mark.parametrize("method", CLASSICAL_DENOISERS)
def test_larger_strength_is_smoother(method):
    images, _ = _noisy_set(seed=4, n=1)
    variations = [_total_variation(denoise_classical(method, images[0], SIGMA, strength=s))
                  for s in (0.25, 1.0, 4.0)]
    assert variations[0] > variations[1] > variations[2]


def test_noise_map_uses_its_median():
    images, _ = _noisy_set(seed=5, n=1)
    noise_map = np.full(images[0].shape, SIGMA)
    noise_map[0, 0] = 100.0  # one extreme pixel does not move the median
    np.testing.assert_allclose(denoise_classical("tv", images[0], noise_map),
                               denoise_classical("tv", images[0], SIGMA))


def test_errors():
    image = _blob()
    with pytest.raises(ValueError, match="unknown classical denoiser 'bm3d'.*tv, nl_means"):
        denoise_classical("bm3d", image, SIGMA)
    with pytest.raises(ValueError, match="unknown classical denoiser"):
        tune_classical("median", [image], SIGMA, [image])
    with pytest.raises(ValueError, match=r"2-D image, got shape \(2, 32, 32\)"):
        denoise_classical("tv", np.stack([image, image]), SIGMA)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="sigma must be"):
            denoise_classical("tv", image, bad)
    with pytest.raises(ValueError, match="sigma must be positive"):
        denoise_classical("tv", image, np.zeros_like(image))
    with pytest.raises(ValueError, match="sigma has shape"):
        denoise_classical("tv", image, np.ones((4, 4)))
    with pytest.raises(ValueError, match="strength must be"):
        denoise_classical("tv", image, SIGMA, strength=0)


def _check_png(path):
    from matplotlib.image import imread

    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100
    return pixels.shape[1]  # width grows with the number of panels


def test_posterior_panel_png(tmp_path):
    rng = np.random.default_rng(6)
    truth = _blob()
    observed = truth + rng.normal(0, SIGMA, truth.shape)
    mean = denoise_classical("tv", observed, SIGMA)
    std = np.full(truth.shape, 0.05)

    full = plot_posterior_panel(tmp_path / "full.png", observed=observed, mean=mean,
                                std=std, truth=truth, title="blob")
    assert full == tmp_path / "full.png"
    short = plot_posterior_panel(tmp_path / "sub" / "short.png", observed=observed,
                                 mean=mean)
    residual_only = plot_posterior_panel(tmp_path / "res.png", observed=observed, mean=mean,
                                         truth=truth, sigma=SIGMA)
    # 6 panels, 2 panels, 4 panels.
    widths = [_check_png(p) for p in (full, short, residual_only)]
    assert widths[0] > widths[2] > widths[1]
    # Overwrites in place; no temporary file is left behind.
    plot_posterior_panel(full, observed=observed, mean=mean, std=np.zeros_like(std),
                         truth=truth)
    _check_png(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.png", "res.png", "sub"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["short.png"]


def test_posterior_panel_shape_errors(tmp_path):
    image = _blob()
    with pytest.raises(ValueError, match=r"truth has shape \(16, 16\) but observed"):
        plot_posterior_panel(tmp_path / "x.png", observed=image, mean=image,
                             truth=image[:16, :16])
    with pytest.raises(ValueError, match=r"std has shape \(32, 16\)"):
        plot_posterior_panel(tmp_path / "x.png", observed=image, mean=image,
                             std=image[:, :16])
    with pytest.raises(ValueError, match="mean has shape"):
        plot_posterior_panel(tmp_path / "x.png", observed=image, mean=image[:8])
    with pytest.raises(ValueError, match="sigma has shape"):
        plot_posterior_panel(tmp_path / "x.png", observed=image, mean=image,
                             sigma=np.ones((3, 3)))
    assert list(tmp_path.iterdir()) == []
