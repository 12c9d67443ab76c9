"""The SNR-dependent std factor: per-bin coverage, monotone in the raw std, held-out only."""

import numpy as np
import pytest
import torch

from lensenhance.evaluate.snr_calibration import fit_snr_calibration
from lensenhance.evaluate.uncertainty import interval_coverage
from lensenhance.predict.posterior import snr_std_factor


def _overconfident_where_faint(n=200_000, seed=0, power=-0.3):
    """Predicted std s; the true error is s * (r / 3)**power with r = |mean| / s."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.5, 2.0, n)
    mean = std * np.exp(rng.uniform(np.log(0.1), np.log(100.0), n))
    wrong = (np.abs(mean) / std / 3.0) ** power
    truth = mean + std * wrong * rng.standard_normal(n)
    return truth, mean, std


def _calibrated(mean, std, table):
    return snr_std_factor(torch.from_numpy(mean), torch.from_numpy(std), table).numpy() * std


def test_each_snr_bin_covers_after_the_fit_on_other_pixels():
    truth, mean, std = _overconfident_where_faint(seed=0)
    table = fit_snr_calibration(truth, mean, std, n_bins=8)
    assert np.all(np.diff(table["snr"]) > 0)
    assert table["std_scale"] == table["unbounded"]  # a falling factor needs no bound
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
        calibrated = _calibrated(np.full_like(raw, m), raw, table)
        assert np.all(np.diff(calibrated) >= -1e-12 * calibrated[1:]), (power, m)
    if power == 2.0:  # the factor would rise faster than the SNR: bounded
        assert table["std_scale"] != table["unbounded"]


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
        for fitted in [calibration, *calibration.get("by_steps", {}).values()]:
            assert str(CALIBRATION_SEED) in fitted["set"] or "HSC train pairs held back" \
                in fitted["set"], name
            assert str(BENCHMARK_SEED) not in fitted["set"]
