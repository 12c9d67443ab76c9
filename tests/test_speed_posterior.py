"""The posterior speed benchmark through the command line (shipped diffusion-denoise)."""

import json

import pytest
from click.testing import CliRunner

from lensenhance.cli import cli


def _speed(tmp_path, model, *options):
    """``benchmark speed --part posterior`` on 2 cutouts, 1 repeat: its output and JSON."""
    out = tmp_path / "speed.json"
    result = CliRunner().invoke(cli, [
        "-q", "benchmark", "speed", "--part", "posterior", "--posterior-model", model,
        *options, "--cutouts", "2", "--repeats", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


@pytest.mark.slow
def test_speed_posterior_writes_rows_with_sampler_catalog_and_memory(tmp_path):
    result, data = _speed(tmp_path, "diffusion-denoise", "--setting", "2:1")
    (row,) = data["rows"]
    assert (row["n_samples"], row["steps"], row["cutout"]) == (2, 1, [64, 64])
    assert row["seconds_per_cutout"] > 0 and row["peak_rss_gb"] > 0.1
    assert set(row["sampler_seconds_per_cutout"]) == {"1", "4", "16"}
    assert row["catalog"]["n_cutouts"] == 2 and row["catalog"]["cutouts_per_s"] > 0
    # the rows of a shared pass span the whole pass, not their share of it
    fastest = min(row["sampler_seconds_per_cutout"].values())
    assert row["catalog"]["seconds_rows"] >= 0.5 * 2 * fastest
    assert "diffusion-denoise" in result.output and "cat/sampler" in result.output
    bad = CliRunner().invoke(cli, ["-q", "benchmark", "speed", "--part", "posterior",
                                   "--setting", "16-4"])
    assert bad.exit_code == 2 and "SAMPLES:STEPS" in bad.output


@pytest.mark.slow
def test_a_distilled_model_is_timed_at_its_own_step_counts_only(tmp_path):
    _, data = _speed(tmp_path, "diffusion-denoise-fast", "--setting", "2:1", "--setting",
                     "2:10", "--no-catalog")
    assert [(r["model"], r["steps"]) for r in data["rows"]] == [("diffusion-denoise-fast", 1)]
    assert data["skipped"] == [{"model": "diffusion-denoise-fast", "n_samples": 2,
                                "steps": 10}]


@pytest.mark.slow
def test_catalog_runs_on_a_dask_cluster_too(tmp_path):
    result, data = _speed(tmp_path, "diffusion-denoise-fast", "--setting", "2:1", "--dask")
    (row,) = data["rows"]
    assert row["catalog_dask"]["n_cutouts"] == 2 and row["catalog_dask"]["cutouts_per_s"] > 0
    assert row["catalog_dask_over_sampler"] > 0 and "dask" in result.output
