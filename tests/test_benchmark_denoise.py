"""The denoise benchmark end to end on a tiny set, through the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from lensenhance.cli import cli
from lensenhance.evaluate.scoring import fine_scale_power_ratio, light_mask, posterior_figures


@pytest.mark.slow
def test_benchmark_denoise_cli_writes_every_row(tiny_posterior, tmp_path):
    base, post = tiny_posterior
    out = tmp_path / "denoise.json"
    args = ["-q", "benchmark", "denoise", "-n", "3", "--model", str(post), "--model",
            str(base), "--n-samples", "3", "--steps", "2", "--n-tune", "2", "--json",
            str(out), "--plot", str(tmp_path / "plots")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["n"] == 3 and data["command"].startswith("lensenhance")
    assert set(data["rows"]) == {str(post), str(base), "tv", "nl_means", "wavelet", "input"}
    figures = data["rows"][str(post)]["figures"]
    for key in ("coverage_68", "coverage_95", "ece", "z_mean", "z_var", "spread_skill",
                "crps"):
        assert np.isfinite(figures["calibration_light"][key])
    assert figures["psnr"]["n"] == 3 and figures["psnr"]["se"] > 0
    assert figures["data_consistency"]["dof"] > 0
    bins = figures["calibration_bins"]
    assert len(bins["brightness"]) == 10 and len(bins["snr"]) == 6
    # one image per class (snr_pairs' order), and the lensed-arc pixels as one bin
    assert [r["label"] for r in bins["class"]] == ["no_sub", "cdm", "axion"]
    (arc,) = bins["arc"]
    assert arc["label"] == "arc" and 0 < arc["n_pixels"] < 3 * 64 * 64 // 2
    assert 0 <= arc["coverage_68"] <= arc["coverage_95"] <= 1
    assert "68% coverage on lensed-arc pixels" in result.output
    assert figures["tarp"]["n_cases"] == 3 and figures["tarp"]["n_samples"] == 3
    assert "by truth-brightness decile" in result.output and "TARP" in result.output
    assert data["rows"]["tv"]["tuning"]["n"] == 2
    assert len(list((tmp_path / "plots").glob("*.png"))) == 6  # 3 images x 2 models
    assert "PSNR" in result.output and "wavelet" in result.output
    # --json does not overwrite.
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "exists" in again.output


def test_posterior_figures_on_a_known_gaussian_case():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (20, 16, 16))
    std = np.full(truth.shape, 0.1)
    mean = truth + std * rng.standard_normal(truth.shape)
    samples = mean[:, None] + std[:, None] * rng.standard_normal((20, 64, 16, 16))
    figures = posterior_figures(truth, mean, std, samples)
    assert figures["calibration_light"]["coverage_68"] == pytest.approx(0.683, abs=0.03)
    assert figures["calibration_all"]["z_var"] == pytest.approx(1.0, abs=0.1)
    assert figures["n"] == 20


def test_light_mask_and_fine_power():
    truth = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    assert light_mask(truth).sum() == 16  # half of each image
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((8, 32, 32))
    assert fine_scale_power_ratio(noise, noise) == pytest.approx(1.0)
    assert fine_scale_power_ratio(2 * noise, noise) == pytest.approx(4.0)
