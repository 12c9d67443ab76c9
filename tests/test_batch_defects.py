"""Regression tests of the batch defects of issue 22: each reproduces one defect.

Folders claimed by the wrong run, ``evaluate`` on masked outputs, SIGTERM with workers,
a failed ``generate`` blocking its rerun, and messages that did not say what was wrong.
Tiny images (16x16), the bicubic baseline and tiny networks: seconds each.
"""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table
from click.testing import CliRunner

from lensenhance import io
from lensenhance.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


def _image(path, *, seed=0, shape=(16, 16), sigma=0.05):
    """A small noisy blob with its uncertainty, as enhance reads it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    data = np.exp(-((y - shape[0] / 2) ** 2 + (x - shape[1] / 2) ** 2) / 8.0) + 0.1
    data = (data + rng.normal(0, sigma, shape)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_image(CCDData(data, unit="electron/s",
                           uncertainty=StdDevUncertainty(np.full(shape, sigma, np.float32))),
                   path)
    return path


def _survey(folder, n, *, shape=(16, 16)):
    """A catalog of ``n`` images (``path``) with 2x truths (``hr_path``)."""
    rows = []
    for i in range(n):
        lr = _image(folder / "lr" / f"{i:04d}.fits", seed=i, shape=shape)
        hr = np.repeat(np.repeat(io.read_image(lr).data, 2, 0), 2, 1) / 4
        (folder / "hr").mkdir(exist_ok=True)
        io.write_image(CCDData(hr, unit="electron/s"), folder / "hr" / f"{i:04d}.fits",
                       overwrite=True)
        rows.append((f"lr/{i:04d}.fits", f"hr/{i:04d}.fits"))
    table = Table(rows=rows, names=("path", "hr_path"))
    io.write_catalog(table, folder / "catalog.ecsv")
    return folder / "catalog.ecsv"


def _temporaries(folder):
    return [p for p in Path(folder).rglob(".tmp-*")]


def _clean(result):
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)


# -- 1. a folder is claimed only when empty or holding the same kind of run -----------------

def test_enhance_denoise_generate_never_take_over_another_tools_folder(runner, tmp_path,
                                                                       tiny_ddpm,
                                                                       tiny_posterior):
    sim = tmp_path / "sim"
    args = ["-q", "simulate", "--preset", "model_ii", "-n", "2", "--seed", "0", "--out",
            str(sim)]
    assert runner.invoke(cli, args).exit_code == 0
    truth = (sim / "catalog.ecsv").read_bytes()
    image = _image(tmp_path / "in" / "a.fits")
    weights = str(tiny_ddpm[0] / "weights.safetensors")
    _, posterior = tiny_posterior
    for command in (["enhance", str(image)],
                    ["denoise", str(image), "--model", str(posterior), "--n-samples", "2",
                     "--steps", "1"],
                    ["generate", "-n", "1", "--steps", "1", "--model", weights]):
        for extra in ([], ["--overwrite"]):  # another tool's files, even with --overwrite
            result = runner.invoke(cli, ["-q", *command, "--out", str(sim), *extra])
            _clean(result)
            assert result.exit_code != 0, (command, result.output)
            assert str(sim) in result.output and "simulate" in result.output, result.output
            assert (sim / "catalog.ecsv").read_bytes() == truth
            assert not (sim / "run.json").exists() and not (sim / "generate_run.json").exists()
    # The simulation is intact: its rerun finds its own catalog.
    assert runner.invoke(cli, args).exit_code == 0
    assert (sim / "catalog.ecsv").read_bytes() == truth

    # A catalog that no run recorded (a user's table) is not replaced either.
    mine = tmp_path / "mine"
    mine.mkdir()
    io.write_catalog(Table({"path": ["x.fits"]}), mine / "catalog.ecsv")
    before = (mine / "catalog.ecsv").read_bytes()
    result = runner.invoke(cli, ["-q", "enhance", str(image), "--out", str(mine)])
    _clean(result)
    assert result.exit_code != 0 and "catalog.ecsv" in result.output
    assert (mine / "catalog.ecsv").read_bytes() == before
    # A denoise run's folder is not an enhance run's (and the reverse).
    den = tmp_path / "den"
    assert runner.invoke(cli, ["-q", "denoise", str(image), "--model", str(posterior),
                               "--n-samples", "2", "--steps", "1", "--out",
                               str(den)]).exit_code == 0
    result = runner.invoke(cli, ["-q", "enhance", str(image), "--out", str(den)])
    assert result.exit_code != 0 and "denoise" in result.output
    # An empty folder, and the same run again, are fine.
    (tmp_path / "empty").mkdir()
    for _ in range(2):
        ok = runner.invoke(cli, ["-q", "enhance", str(image), "--out", str(tmp_path / "empty")])
        assert ok.exit_code == 0, ok.output


def test_a_run_that_left_only_its_settings_claims_nothing(tmp_path):
    from lensenhance._runfolder import RunFolderError, open_run_folder

    with pytest.raises(KeyError):  # fails before its first output
        with open_run_folder(tmp_path, settings={"model": "typo"}, settings_name="run.json"):
            raise KeyError("no such model")
    with open_run_folder(tmp_path, settings={"model": "edsr"}, settings_name="run.json") as run:
        assert not run.resuming
        (run.path / "out.fits").write_bytes(b"")
    with pytest.raises(RunFolderError, match="model: 'edsr' -> 'rdn'"):
        with open_run_folder(tmp_path, settings={"model": "rdn"}, settings_name="run.json"):
            pass
    with pytest.raises(RunFolderError, match="enhance/denoise run .run.json."):
        with open_run_folder(tmp_path, settings={}, settings_name="simulate_run.json",
                             what="simulate", overwrite=True):
            pass


# -- 2. evaluate scores the unmasked pixels of enhance's outputs ----------------------------

def test_evaluate_scores_unmasked_pixels_and_counts_the_rest(runner, tmp_path):
    catalog = _survey(tmp_path / "s", 2)
    holed = tmp_path / "s" / "lr" / "0000.fits"
    ccd = io.read_image(holed)
    ccd.data[5:7, 5:7] = np.nan  # 4 input pixels: 16 output pixels at x2
    io.write_image(ccd, holed, overwrite=True)
    out = tmp_path / "out"
    assert runner.invoke(cli, ["-q", "enhance", "--catalog", str(catalog), "--out",
                               str(out)]).exit_code == 0
    pred = io.read_image(out / "lr" / "0000.fits")
    n_masked = int((~np.isfinite(pred.data) | pred.mask).sum())
    assert n_masked >= 16
    result = runner.invoke(cli, ["-q", "evaluate", "--pred", str(out), "--truth", str(catalog),
                                 "--json", str(tmp_path / "e.json")])
    _clean(result)
    assert result.exit_code == 0, result.output
    assert "2 images" in result.output
    assert f"left out {n_masked} masked pixel(s) in 1 image(s)" in result.output
    import json

    saved = json.loads((tmp_path / "e.json").read_text())
    assert [row["n_masked"] for row in saved["rows"]] == [n_masked, 0]
    assert saved["n_masked"] == n_masked
    assert np.isfinite(saved["summary"]["all"]["psnr"])


def test_image_metrics_leave_out_masked_pixels_exactly():
    from lensenhance.evaluate.metrics import image_metrics

    rng = np.random.default_rng(3)
    truth = rng.gamma(2.0, 1.0, (32, 32))
    pred = truth + rng.normal(0, 0.1, truth.shape)
    mask = np.zeros(truth.shape, bool)
    mask[:, 24:] = True
    holed = pred.copy()
    holed[mask] = np.nan
    full = image_metrics(pred[:, :24], truth[:, :24], data_range=1.0)
    left = image_metrics(holed, truth, mask=mask, data_range=1.0)
    assert left["mse"] == pytest.approx(full["mse"])
    assert left["psnr"] == pytest.approx(full["psnr"])
    assert abs(left["ssim"] - full["ssim"]) < 0.02
    with pytest.raises(ValueError, match="finite"):
        image_metrics(holed, truth)


# -- 3. SIGTERM with workers: no temporary, no semaphore ----------------------------------

@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("to", ["process", "group"])
def test_sigterm_with_workers_leaves_no_temporary_and_no_semaphore(tmp_path, to):
    """SIGTERM to the command (``kill PID``) or to its whole job (a batch scheduler)."""
    catalog = _survey(tmp_path / "s", 40, shape=(96, 96))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lensenhance", "-q", "enhance", "--catalog",
               str(catalog), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(list(out.rglob("[0-9]*.fits"))) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.005)
    finally:
        if to == "group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    stderr = stderr.decode()
    assert proc.returncode != 0
    assert "leaked" not in stderr and "Traceback" not in stderr, stderr
    done = list(out.rglob("[0-9]*.fits"))
    assert 4 <= len(done) < 40, "the run ended before it was stopped"
    assert not _temporaries(out), _temporaries(out)
    # Nothing is written after the catalog: it lists every output the run made.
    time.sleep(0.5)
    assert len(list(out.rglob("[0-9]*.fits"))) == len(done)
    table = Table.read(out / "catalog.ecsv")
    assert (table["status"] == "ok").sum() == len(done)
    assert (table["status"] == "pending").sum() > 0


# -- 4. generate: a failed command leaves nothing; the catalog lists every file -------------

def test_failed_generate_does_not_block_its_corrected_rerun(runner, tiny_ddpm, tmp_path):
    weights = str(tiny_ddpm[0] / "weights.safetensors")
    out = tmp_path / "g"
    base = ["-q", "generate", "-n", "2", "--steps", "1", "--seed", "3", "--model", weights,
            "--out", str(out)]
    bad = runner.invoke(cli, [*base, "--enhancer", "nonexistent"])
    _clean(bad)
    assert bad.exit_code != 0 and "nonexistent" in bad.output
    assert not list(out.glob("lens_*.fits"))
    good = runner.invoke(cli, base)
    assert good.exit_code == 0, good.output
    assert len(list(out.glob("lens_*.fits"))) == 2


def test_generate_catalog_lists_every_file_in_the_folder(runner, tiny_ddpm, tmp_path):
    weights = str(tiny_ddpm[0] / "weights.safetensors")
    out = tmp_path / "g"
    base = ["-q", "generate", "--steps", "1", "--seed", "3", "--model", weights, "--out",
            str(out)]
    assert runner.invoke(cli, [*base, "-n", "5"]).exit_code == 0
    result = runner.invoke(cli, [*base, "-n", "2"])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.glob("lens_*.fits"))
    table = Table.read(out / "catalog.ecsv")
    assert len(files) == 5 and sorted(table["path"]) == files
    assert list(table["image"]) == list(range(5))
    assert "the folder holds 5 image(s)" in result.output, result.output
    # Starting afresh with fewer: the earlier run's extra images go with it.
    again = runner.invoke(cli, [*base, "-n", "2", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.glob("lens_*.fits")) == files[:2]
    assert len(Table.read(out / "catalog.ecsv")) == 2


# -- 5. the remaining messages say what is wrong --------------------------------------------

def test_a_negative_uncertainty_is_named(runner, tmp_path):
    path = tmp_path / "neg.fits"
    data = np.ones((8, 8), np.float32)
    io.write_image(CCDData(data, unit="adu",
                           uncertainty=StdDevUncertainty(np.full((8, 8), -0.1, np.float32))),
                   path)
    result = runner.invoke(cli, ["-q", "enhance", str(path), "--out", str(tmp_path / "o")])
    _clean(result)
    assert result.exit_code != 0
    assert "negative" in result.output and "neg.fits" in result.output, result.output
    assert "no finite, unmasked pixel" not in result.output


@pytest.mark.parametrize("cut", ["header", "extension"])
def test_a_truncated_finished_output_is_redone(runner, tmp_path, cut):
    a, b = _image(tmp_path / "in" / "a.fits"), _image(tmp_path / "in" / "b.fits", seed=1)
    out = tmp_path / "out"
    args = ["-q", "enhance", str(a), str(b), "--out", str(out)]
    assert runner.invoke(cli, args).exit_code == 0
    output = out / "a_bicubic.fits"
    reference = io.read_image(output)
    with fits.open(output) as hdul:
        ends = [hdul.fileinfo(i)["datLoc"] + hdul.fileinfo(i)["datSpan"]
                for i in range(len(hdul))]
    size = 1000 if cut == "header" else ends[0]  # mid-header; or the extensions lost
    with open(output, "r+b") as handle:
        handle.truncate(size)
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "(1 now, 1 already done)" in result.output
    again = io.read_image(output)
    np.testing.assert_array_equal(again.data, reference.data)
    assert again.uncertainty is not None


def test_a_bad_scheduler_address_fails_fast_and_clearly(runner, tmp_path):
    pytest.importorskip("distributed")
    image = _image(tmp_path / "a.fits")
    for address, words in (("foo", "port"), ("tcp://127.0.0.1:1", "127.0.0.1:1"),
                           ("http://127.0.0.1:8786", "http")):
        clock = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = runner.invoke(cli, ["-q", "enhance", str(image), "--out",
                                         str(tmp_path / "o"), "--scheduler", address])
        seconds = time.perf_counter() - clock
        _clean(result)
        assert result.exit_code != 0 and "scheduler" in result.output
        assert address in result.output and words in result.output, result.output
        assert seconds < 5, (address, seconds)


def test_an_err_extension_is_read_as_the_uncertainty(tmp_path):
    data = np.ones((8, 8), np.float32)
    sigma = np.full((8, 8), 0.25, np.float32)
    path = tmp_path / "err.fits"
    fits.HDUList([fits.PrimaryHDU(data, fits.Header({"BUNIT": "adu"})),
                  fits.ImageHDU(sigma, name="ERR")]).writeto(path)
    ccd = io.read_image(path)
    assert ccd.uncertainty is not None
    np.testing.assert_array_equal(ccd.uncertainty.array, sigma)
    # A science extension named SCI, as HST and JWST write it, with ERR beside it.
    path = tmp_path / "sci.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, fits.Header({"BUNIT": "adu"}),
                                                   name="SCI"),
                  fits.ImageHDU(sigma, name="ERR")]).writeto(path)
    np.testing.assert_array_equal(io.read_image(path).uncertainty.array, sigma)
    # The noise in another form is not guessed at, but said.
    path = tmp_path / "var.fits"
    fits.HDUList([fits.PrimaryHDU(data, fits.Header({"BUNIT": "adu"})),
                  fits.ImageHDU(sigma ** 2, name="VARIANCE")]).writeto(path)
    with pytest.warns(UserWarning, match="var.fits: HDU 'VARIANCE' .* not read"):
        assert io.read_image(path).uncertainty is None


def test_diffusion_rows_carry_no_third_party_deprecation_warning(runner, tiny_posterior,
                                                                  tmp_path):
    _, posterior = tiny_posterior
    catalog = _survey(tmp_path / "s", 2)
    out = tmp_path / "den"
    result = runner.invoke(cli, ["-q", "denoise", "--catalog", str(catalog), "--model",
                                 str(posterior), "--n-samples", "2", "--steps", "2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = Table.read(out / "catalog.ecsv")
    for text in table["warning"]:
        assert "__array__" not in str(text) and "copy keyword" not in str(text), text
