import re

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from lensenhance import __version__
from lensenhance.cli import cli
from lensenhance.data import hsc_sample


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_commands(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("info", "demo", "simulate", "benchmark"):
        assert name in result.output


def test_info_on_real_hsc_file(runner):
    path = hsc_sample()["path"][0]
    result = runner.invoke(cli, ["info", path])
    assert result.exit_code == 0, result.output
    assert "(64, 64)" in result.output and "float32" in result.output
    assert "NaN" in result.output


def test_info_with_wcs(runner, tmp_path):
    header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0,
                          "CRVAL2": 2.2, "CRPIX1": 8.5, "CRPIX2": 8.5, "CDELT1": -2.5e-5,
                          "CDELT2": 2.5e-5, "BUNIT": "electron/s"})
    data = np.ones((16, 16), np.float32)
    data[0, 0] = np.nan
    path = tmp_path / "img.fits"
    fits.writeto(path, data, header)
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "electron / s" in result.output
    assert "150.0" in result.output and "0.09" in result.output  # 2.5e-5 deg = 0.09"
    assert re.search(r"NaN pixels\s+1\b", result.output), result.output


def test_info_counts_infinities_and_flags_an_unknown_unit(runner, tmp_path):
    data = np.ones((8, 8), np.float32)
    data[0, :3] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "odd.fits"
    fits.writeto(path, data, fits.Header({"BUNIT": "foo bar baz"}))
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "not a unit astropy knows" in result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines()[1:]
                 if line.strip().startswith(("NaN", "inf")))
    assert lines == {"NaN": "pixels   1", "inf": "pixels   2"}


def test_cli_messages_name_the_file_once_and_refuse_conflicting_options(runner, tmp_path):
    path = tmp_path / "img.fits"
    fits.writeto(path, np.ones((8, 8), np.float32))
    result = runner.invoke(cli, ["info", "--hdu", "5", str(path)])
    assert result.exit_code != 0
    assert f"error: {path}: no HDU 5; available" in result.output  # not quoted, once
    assert result.output.count(str(path)) == 1
    result = runner.invoke(cli, ["enhance", "--whole", "--tile-size", "64", str(path),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--whole and --tile-size" in result.output
    gz = tmp_path / "img.fits.gz"
    fits.writeto(gz, np.ones((8, 8), np.float32))
    result = runner.invoke(cli, ["enhance", str(path), str(gz), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "would both be written as 'img'" in result.output
    assert "Traceback" not in result.output


def test_info_bad_files_report_and_fail(runner, tmp_path):
    good = hsc_sample()["path"][0]
    text = tmp_path / "notes.txt"
    text.write_text("not a FITS file")
    result = runner.invoke(cli, ["info", good, str(text), str(tmp_path / "missing.fits")])
    assert result.exit_code != 0
    assert "notes.txt" in result.output and "missing.fits" in result.output
    assert "2 of 3" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("fmt", ["fits", "netcdf"])
def test_simulate_command_writes_a_readable_set(runner, tmp_path, fmt):
    import xarray as xr

    from lensenhance import io

    out = tmp_path / "sims"
    args = ["-q", "simulate", "--preset", "model_ii", "--substructure", "all", "-n", "3",
            "--scale", "2", "--out", str(out), "--format", fmt, "--seed", "0"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    if fmt == "fits":
        catalog = io.read_catalog(out / "catalog.ecsv")
        assert len(catalog) == 3
        assert sorted(set(catalog["substructure"])) == ["axion", "cdm", "no_sub"]
        lr = io.read_image(catalog["lr_path"][0])
        hr = io.read_image(catalog["hr_path"][0])
        assert hr.shape == (2 * lr.shape[0], 2 * lr.shape[1]) and lr.wcs is not None
    else:
        (path,) = list(out.glob("*.nc"))
        with xr.open_dataset(path) as ds:
            assert ds["lr"].shape[0] == 3 and "theta_E" in ds.coords
    again = runner.invoke(cli, args)
    if fmt == "fits":
        # The same command resumes (here: nothing left to do); other settings are refused.
        assert again.exit_code == 0, again.output
        other = runner.invoke(cli, [*args[:-1], "1"])
        assert other.exit_code != 0 and "seed: 0 -> 1" in other.output
        assert "--overwrite" in other.output
    else:
        assert again.exit_code != 0 and "--overwrite" in again.output


def test_enhance_command_tiles_a_file_with_a_weights_file(runner, tmp_path):
    import torch

    from lensenhance import io
    from lensenhance.nn import build_sr_model, export_weights

    torch.manual_seed(0)
    weights = export_weights(build_sr_model("edsr", scale=2, n_blocks=1, channels=4),
                             tmp_path / "tiny.safetensors")
    source = tmp_path / "img.fits"
    data = np.random.default_rng(0).normal(10, 1, (40, 36)).astype(np.float32)
    data[5, 5] = np.nan
    fits.writeto(source, data, fits.Header({"BUNIT": "electron"}))
    result = runner.invoke(cli, ["-q", "enhance", str(source), "--model", str(weights),
                                 "--tile-size", "24", "--tile-threads", "2",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = io.read_image(tmp_path / "out" / "img_tiny.fits")
    assert out.shape == (80, 72) and out.mask.sum() == 4
    assert np.isnan(fits.getdata(tmp_path / "out" / "img_tiny.fits")[10:12, 10:12]).all()
    bad = runner.invoke(cli, ["enhance", str(source), "--model", str(weights), "--tile-size",
                              "4", "--out", str(tmp_path / "out2")])
    assert bad.exit_code != 0 and "too small" in bad.output


def test_command_line_repeats_a_multiple_option():
    import click

    from lensenhance.cli._common import command_line as _command_line

    @click.command("sr")
    @click.option("--model", "models", multiple=True)
    @click.option("-n", "n_images", type=int, default=3)
    @click.option("--no-regression", is_flag=True)
    def command(models, n_images, no_regression):
        pass

    ctx = command.make_context("sr", ["--model", "a", "--model", "b", "--no-regression"])
    assert _command_line(ctx) == "lensenhance --model a --model b -n 3 --no-regression"
    # A value with spaces or a semicolon pastes back into a shell as one word.
    ctx = command.make_context("sr", ["--model", "2-core CPU; idle"])
    assert _command_line(ctx) == "lensenhance --model '2-core CPU; idle' -n 3"


@pytest.mark.parametrize("args", [["sr", "-n", "3"], ["denoise", "-n", "2"],
                                  ["generate", "-n", "4"], ["speed", "--part", "simulate"]])
def test_a_benchmark_never_replaces_its_json_without_overwrite(tmp_path, args):
    target = tmp_path / "result.json"
    target.write_text('{"kept": true}')
    result = CliRunner().invoke(cli, ["benchmark", *args, "--json", str(target)])
    assert result.exit_code != 0
    assert "exists (use --overwrite)" in result.output and str(target) in result.output
    assert target.read_text() == '{"kept": true}'
