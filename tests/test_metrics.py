import numpy as np
import pytest
from astropy.nddata import CCDData

from lensenhance.metrics import batch_metrics, image_metrics, summarize_metrics


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
