"""Catalog runs: enhance/denoise over catalogs, resume, SIGKILL, workers, evaluate, errors.

Everything runs on a tiny synthetic survey (16x16 cutouts, the bicubic baseline), so that
the file takes seconds on one core.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table
from click.testing import CliRunner

from lensenhance import io
from lensenhance._runfolder import Journal, RunFolderError, folder_lock, open_run_folder
from lensenhance.cli import cli
from lensenhance.enhance import Enhancer
from lensenhance.enhance.catalog import enhance_catalog
from lensenhance.enhance.evaluation import evaluate_catalog

N_ROWS = 200
BROKEN = 57  # the survey's broken row: its file is not FITS
CLASSES = ("no_sub", "cdm", "axion")


@pytest.fixture
def runner():
    return CliRunner()


def _write_survey(folder, n, *, broken=None, seed=0):
    """A simulator-like catalog: lr (16x16, noisy, with sigma) and hr (32x32) cutouts."""
    rng = np.random.default_rng(seed)
    for name in ("lr", "hr"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:32, 0:32]
    rows = []
    for i in range(n):
        cy, cx = rng.uniform(12, 20, 2)
        hr = (np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 18.0) + 0.01).astype(np.float32)
        lr = hr.reshape(16, 2, 16, 2).sum(axis=(1, 3))
        sigma = np.full(lr.shape, 0.01, np.float32)
        lr = (lr + rng.normal(0, 0.01, lr.shape)).astype(np.float32)
        lr_path, hr_path = f"lr/{i:06d}.fits", f"hr/{i:06d}.fits"
        # Plain astropy writes (no fsync): inputs need not be durable, and are quick.
        header = fits.Header({"BUNIT": "electron/s"})
        fits.writeto(folder / hr_path, hr, header)
        if i == broken:
            (folder / lr_path).write_text("not a FITS file")
        else:
            fits.HDUList([fits.PrimaryHDU(lr, header),
                          fits.ImageHDU(sigma, name="UNCERT")]).writeto(folder / lr_path)
        rows.append((i, CLASSES[i % 3], lr_path, lr_path, hr_path))
    table = Table(rows=rows, names=("image", "substructure", "path", "lr_path", "hr_path"))
    io.write_catalog(table, folder / "catalog.ecsv")
    return folder / "catalog.ecsv"


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("survey")
    return _write_survey(folder, N_ROWS, broken=BROKEN)


@pytest.fixture(scope="module")
def first_run(survey, tmp_path_factory):
    """``enhance --catalog`` over the survey, once; returns (result, out folder)."""
    out = tmp_path_factory.mktemp("enhanced")
    result = CliRunner().invoke(cli, ["-q", "enhance", "--catalog", str(survey), "--out",
                                      str(out)])
    return result, out


def _outputs(out):
    return sorted(p for p in Path(out).rglob("*.fits") if not p.name.startswith(".tmp-"))


def _temporaries(out):
    return [p for p in Path(out).rglob("*") if p.name.startswith(".tmp-")]


# -- the survey: finish the 199, report the one, resume with nothing new ------------------

def test_catalog_run_finishes_the_rest_reports_the_broken_row(first_run):
    result, out = first_run
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "199 of 200 row(s) ok" in result.output and "1 failed" in result.output
    assert f"lr/{BROKEN:06d}: error:" in result.output
    outputs = _outputs(out)
    assert len(outputs) == N_ROWS - 1 and not _temporaries(out)
    # Outputs mirror the inputs' relative paths; headers name their row and input.
    assert outputs[0].relative_to(out).as_posix() == "lr/000000.fits"
    with fits.open(outputs[0]) as hdul:
        header = hdul[0].header
        assert header["LEROW"] == "lr/000000" and header["LEMODEL"] == "bicubic"
        assert header["LESOURCE"].endswith("lr/000000.fits")
        assert "UNCERT" in hdul and hdul[0].data.shape == (32, 32)
        assert any("row 0" in str(line) for line in header["HISTORY"])
    catalog = Table.read(out / "catalog.ecsv")
    assert len(catalog) == N_ROWS and list(catalog["row"]) == list(range(N_ROWS))
    assert (catalog["status"] == "ok").sum() == N_ROWS - 1
    bad = catalog[catalog["status"] == "failed"]
    assert list(bad["image"]) == [BROKEN] and "FITS" in bad["error"][0]
    assert np.all(catalog["seconds"] >= 0) and np.all(catalog["attempts"] == 1)
    assert "hr_path" not in catalog.colnames and "substructure" in catalog.colnames


def test_second_run_does_nothing_new(first_run, survey, runner):
    _, out = first_run
    before = {p: p.stat().st_mtime_ns for p in _outputs(out)}
    result = runner.invoke(cli, ["-q", "enhance", "--catalog", str(survey), "--out", str(out)])
    assert result.exit_code != 0  # the broken row is retried, and fails again
    assert "(0 now, 199 already done), 1 failed" in result.output
    assert {p: p.stat().st_mtime_ns for p in _outputs(out)} == before
    catalog = Table.read(out / "catalog.ecsv")
    assert list(catalog["attempts"][catalog["status"] == "ok"]) == [1] * (N_ROWS - 1)
    assert catalog["attempts"][BROKEN] == 2


def test_evaluate_matches_the_run_with_the_simulator_catalog(first_run, survey, runner,
                                                             tmp_path):
    _, out = first_run
    report = tmp_path / "eval.json"
    result = runner.invoke(cli, ["-q", "evaluate", "--pred", str(out), "--truth", str(survey),
                                 "--json", str(report)])
    assert result.exit_code != 0  # one row failed: a partial result is not a success
    assert "199 images" in result.output and "PSNR" in result.output
    for name in CLASSES:
        assert name in result.output
    assert f"lr/{BROKEN:06d}: error:" in result.output and "Traceback" not in result.output
    saved = json.loads(report.read_text())
    assert saved["n"] == N_ROWS - 1 and len(saved["rows"]) == N_ROWS
    assert saved["truth_column"] == "hr_path" and set(saved["summary"]) >= {"all", *CLASSES}
    # Against the HR image (its shape), not the LR image the run read.
    assert saved["rows"][0]["truth"].endswith("hr/000000.fits")
    assert saved["summary"]["all"]["psnr"] > 20
    again = runner.invoke(cli, ["evaluate", "--pred", str(out), "--truth", str(survey),
                                "--json", str(report)])
    assert again.exit_code != 0 and "exists" in again.output
    assert json.loads(report.read_text()) == saved
    replaced = runner.invoke(cli, ["-q", "evaluate", "--pred", str(out / "catalog.ecsv"),
                                   "--truth", str(survey), "--json", str(report),
                                   "--overwrite", "--truth-column", "path"])
    assert "shape" in replaced.output  # LR truths: every row fails, and says why
    assert replaced.exit_code != 0


# -- killed and restarted -------------------------------------------------------------------

def _process_table():
    """{pid: (ppid, state)} of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), fields[0].decode())
    return table


def _descendants(pid):
    table = _process_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pids):
    table = _process_table()
    return {p for p in pids if p in table and table[p][1] not in "ZX"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_then_restart_ends_with_199_outputs_done_once(survey, tmp_path, runner):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lensenhance", "-q", "enhance", "--catalog", str(survey),
               "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    workers = set()
    try:
        while len(_outputs(out)) < 120:  # late: the restart has less to do
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run did not start"
            workers |= _descendants(proc.pid)
            time.sleep(0.01)
        workers |= _descendants(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert len(workers) >= 2  # the two workers (and the fork server)
    # The workers die with the parent: nothing is left running.
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(workers), f"orphaned workers: {_alive(workers)}"

    done_before = {p: p.stat().st_mtime_ns for p in _outputs(out)}
    assert 120 <= len(done_before) < N_ROWS - 1, "the run ended before it was killed"
    # A temporary as a killed writer leaves it (the kill may or may not have left one).
    (out / "lr" / ".tmp-0123abcd-000199.fits").write_bytes(b"partial")
    result = runner.invoke(cli, ["-q", "enhance", "--catalog", str(survey), "--out",
                                 str(out)])
    assert result.exit_code != 0 and "1 failed" in result.output
    assert len(_outputs(out)) == N_ROWS - 1 and not _temporaries(out)
    # Nothing done twice: the outputs of the killed run are untouched, and no row was
    # finished more than once (the log has one line per finished row).
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())
    finished = [r["key"] for r in Journal(out / "run_log.jsonl").read() if r["status"] == "ok"]
    assert len(finished) == len(set(finished)) <= N_ROWS - 1
    catalog = Table.read(out / "catalog.ecsv")
    assert (catalog["status"] == "ok").sum() == N_ROWS - 1
    assert np.all(catalog["attempts"][catalog["status"] == "ok"] <= 1)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_cleans_up_like_ctrl_c(survey, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lensenhance", "-q", "enhance", "--catalog", str(survey),
               "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while len(_outputs(out)) < 20:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)  # as a batch scheduler or `timeout` stops a job
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode != 0
    done = len(_outputs(out))
    assert 20 <= done < N_ROWS - 1, "the run ended before it was stopped"
    assert not _temporaries(out)
    catalog = Table.read(out / "catalog.ecsv")  # written on the way out
    assert (catalog["status"] == "ok").sum() == done
    assert (catalog["status"] == "pending").sum() > 0


# -- files, names, parallel runs ------------------------------------------------------------

def _image(path, value=1.0, shape=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_image(CCDData(np.full(shape, value, np.float32) + np.eye(*shape, dtype="f4"),
                           unit="adu"), path)
    return path


def test_same_names_in_different_folders_get_different_outputs(runner, tmp_path):
    a, b = _image(tmp_path / "a" / "x.fits", 1.0), _image(tmp_path / "b" / "x.fits", 5.0)
    out = tmp_path / "out"
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(cli, ["-q", "enhance", str(a), str(b), "--out", str(out),
                                     *extra])
        assert result.exit_code == 0, result.output
        first = io.read_image(out / "a" / "x_bicubic.fits")
        second = io.read_image(out / "b" / "x_bicubic.fits")
        assert np.nanmedian(first.data) < np.nanmedian(second.data)


def test_a_cut_output_is_redone_and_a_foreign_one_is_kept(runner, tmp_path):
    a, b = _image(tmp_path / "in" / "a.fits"), _image(tmp_path / "in" / "b.fits")
    out = tmp_path / "out"
    args = ["-q", "enhance", str(a), str(b), "--out", str(out)]
    assert runner.invoke(cli, args).exit_code == 0
    cut, foreign = out / "a_bicubic.fits", out / "b_bicubic.fits"
    reference = fits.getdata(cut).copy()
    with open(cut, "r+b") as handle:  # as an interrupted copy leaves it
        handle.truncate(cut.stat().st_size - 2880)
    fits.writeto(foreign, np.zeros((4, 4), np.float32), overwrite=True)
    result = runner.invoke(cli, args)
    assert result.exit_code != 0 and "1 now" in result.output
    assert "b_bicubic.fits exists and is not this row's output" in result.output
    np.testing.assert_array_equal(fits.getdata(cut), reference)
    assert fits.getdata(foreign).shape == (4, 4)  # never replaced without --overwrite
    assert runner.invoke(cli, [*args, "--overwrite"]).exit_code == 0
    # Another file of the same name, into the same folder: not taken for done.
    other = _image(tmp_path / "elsewhere" / "a.fits", 7.0)
    again = runner.invoke(cli, ["-q", "enhance", str(other), "--out", str(out)])
    assert again.exit_code != 0 and "not this row's output" in again.output


def test_an_output_older_than_its_input_or_its_last_failure_is_redone(runner, tmp_path):
    a, b = _image(tmp_path / "in" / "a.fits", 1.0), _image(tmp_path / "in" / "b.fits", 1.0)
    out = tmp_path / "out"
    args = ["-q", "enhance", str(a), str(b), "--out", str(out)]
    assert runner.invoke(cli, args).exit_code == 0
    # The input is replaced by a broken file; the --overwrite attempt fails for it and
    # keeps the old output (writes are atomic) ...
    a.write_text("not FITS")
    assert runner.invoke(cli, [*args, "--overwrite"]).exit_code != 0
    assert (out / "a_bicubic.fits").is_file()
    # ... which is not taken for the output of the image that follows.
    a.unlink()
    _image(a, 9.0, shape=(4, 4))
    result = runner.invoke(cli, args)
    assert result.exit_code == 0 and "(1 now, 1 already done)" in result.output
    assert fits.getdata(out / "a_bicubic.fits").shape == (8, 8)
    # An input changed after a successful run is done again too.
    b.unlink()
    _image(b, 5.0, shape=(6, 6))
    result = runner.invoke(cli, args)
    assert result.exit_code == 0 and "(1 now, 1 already done)" in result.output
    assert fits.getdata(out / "b_bicubic.fits").shape == (12, 12)
    assert "(0 now, 2 already done)" in runner.invoke(cli, args).output


def test_key_column_names_outputs_and_duplicates_are_refused(runner, tmp_path):
    for name in ("one", "two"):
        _image(tmp_path / "data" / f"{name}.fits")
    table = Table({"path": ["one.fits", "two.fits"], "id": ["obj/1", "obj 2"]})
    io.write_catalog(table, tmp_path / "data" / "cat.fits")  # a FITS table works too
    out = tmp_path / "out"
    result = runner.invoke(cli, ["-q", "enhance", "--catalog", str(tmp_path / "data" /
                                 "cat.fits"), "--key-column", "id", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in _outputs(out)) == ["obj_1.fits", "obj_2.fits"]
    # Two rows on one file, or two rows with one key, never write one output.
    io.write_catalog(Table({"path": ["one.fits", "./one.fits"]}), tmp_path / "data" / "d.ecsv")
    io.write_catalog(Table({"path": ["one.fits", "two.fits"], "id": ["k", "k"]}),
                     tmp_path / "data" / "k.ecsv")
    for catalog, extra, words in (("d.ecsv", [], "rows 0 and 1 both point to"),
                                  ("k.ecsv", ["--key-column", "id"], "same key 'k'")):
        bad = runner.invoke(cli, ["enhance", "--catalog", str(tmp_path / "data" / catalog),
                                  "--out", str(tmp_path / "o2"), *extra])
        assert bad.exit_code != 0 and words in bad.output and "duplicate" in bad.output
        assert catalog in bad.output and "Traceback" not in bad.output


def test_workers_and_a_dask_cluster_give_the_serial_result(tmp_path):
    distributed = pytest.importorskip("distributed")
    catalog = _write_survey(tmp_path / "s", 4)
    enhancer = Enhancer.interpolation("bicubic", scale=2)
    serial = enhance_catalog(catalog, tmp_path / "serial", enhancer=enhancer, progress=False)
    assert serial["ok"] == 4
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        result = CliRunner().invoke(cli, ["-q", "enhance", "--catalog", str(catalog),
                                          "--out", str(tmp_path / "dask"), "--scheduler",
                                          cluster.scheduler_address])
    assert result.exit_code == 0, result.output
    for path in _outputs(tmp_path / "serial"):
        other = tmp_path / "dask" / path.relative_to(tmp_path / "serial")
        np.testing.assert_array_equal(fits.getdata(path), fits.getdata(other))


def test_denoise_with_a_diffusion_model_writes_uncertainty_and_plots(tiny_posterior, runner,
                                                                     tmp_path):
    _, posterior = tiny_posterior
    catalog = _write_survey(tmp_path / "s", 2)
    out = tmp_path / "den"
    result = runner.invoke(cli, ["-q", "denoise", "--catalog", str(catalog), "--model",
                                 str(posterior), "--n-samples", "2", "--steps", "2", "--plot",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = Table.read(out / "catalog.ecsv")
    for row in table:
        image = io.read_image(out / row["path"])
        assert image.shape == (16, 16) and image.uncertainty is not None
        assert (out / row["plot_path"]).stat().st_size > 1000
    # A super-resolution model is not a denoiser.
    wrong = runner.invoke(cli, ["denoise", "--catalog", str(catalog), "--model", "bicubic",
                                "--out", str(tmp_path / "x")])
    assert wrong.exit_code != 0 and "denoiser" in wrong.output
    # The output catalog is an input catalog: runs compose.
    chained = runner.invoke(cli, ["-q", "enhance", "--catalog", str(out / "catalog.ecsv"),
                                  "--out", str(tmp_path / "sr")])
    assert chained.exit_code == 0, chained.output
    assert io.read_image(_outputs(tmp_path / "sr")[0]).shape == (32, 32)


# -- clear errors, before any work ----------------------------------------------------------

def test_errors_name_the_path_and_never_trace_back(runner, tmp_path):
    catalog = _write_survey(tmp_path / "s", 2)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")

    def fails(args, *words):
        result = runner.invoke(cli, args)
        assert result.exit_code != 0, result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.exception
        for word in words:
            assert word in result.output, (word, result.output)

    run = ["enhance", "--catalog", str(catalog)]
    fails([*run, "--out", str(a_file)], str(a_file), "not a folder")
    fails([*run, "--out", str(a_file / "sub")], "cannot create", str(a_file))
    fails(["simulate", "-n", "2", "--out", str(a_file)], str(a_file), "not a folder")
    fails(["generate", "-n", "2", "--out", str(a_file)], str(a_file), "not a folder")
    fails([*run, "--out", str(tmp_path / "o"), "--scale", "0"], "--scale")
    fails([*run, "--out", str(tmp_path / "o"), "--workers", "0"], "--workers")
    fails([*run, "--out", str(tmp_path / "o"), "--workers", "2", "--scheduler", "tcp://x:1"],
          "exclude")
    fails(["enhance", "--out", str(tmp_path / "o")], "--catalog")
    fails([*run, "--out", str(tmp_path / "o"), "--path-column", "image_file"],
          "image_file", str(catalog), "--path-column")
    outside = tmp_path / "s" / "outside.ecsv"
    io.write_catalog(Table({"path": [str(tmp_path / "elsewhere.fits")]}), outside)
    _image(tmp_path / "elsewhere.fits")
    fails(["enhance", "--catalog", str(outside), "--out", str(tmp_path / "o")],
          "outside", "--allow-outside", "row 0")
    assert not (tmp_path / "o").exists()  # refused before any work
    ok = runner.invoke(cli, ["-q", "enhance", "--catalog", str(outside), "--allow-outside",
                             "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    # Another model into the same folder is refused, naming what differs.
    fails(["enhance", "--catalog", str(outside), "--allow-outside", "--out",
           str(tmp_path / "o"), "--model", "bilinear"], "model", "bicubic", "--overwrite")
    fails(["evaluate", "--pred", str(tmp_path / "nothing"), "--truth", str(catalog)],
          "nothing")


def test_a_locked_folder_is_refused(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(RunFolderError, match="another lensenhance run"):
            with open_run_folder(tmp_path, settings={}, settings_name="run.json"):
                pass
    with open_run_folder(tmp_path, settings={"a": 1}, settings_name="run.json") as run:
        assert not run.resuming
    with open_run_folder(tmp_path, settings={"a": 1}, settings_name="run.json") as run:
        assert run.resuming


def test_journal_skips_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "sta')
    with Journal(path) as journal:
        journal.append({"key": "c", "status": "ok"})
    assert [r["key"] for r in Journal(path).read()] == ["a", "c"]


def test_evaluate_folders_by_file_name(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    for k in range(2):
        truth = rng.gamma(2.0, 1.0, (16, 16)).astype(np.float32)
        io.write_image(CCDData(truth, unit="adu"), tmp_path / "truth" / f"img{k}.fits")
        io.write_image(CCDData(truth + 0.01, unit="adu"), tmp_path / "pred" / f"img{k}.fits")
    result = evaluate_catalog(tmp_path / "pred", tmp_path / "truth")
    assert result["n"] == 2 and not result["failures"]
    os.remove(tmp_path / "pred" / "img1.fits")
    partial = evaluate_catalog(tmp_path / "pred", tmp_path / "truth")
    assert partial["n"] == 1 and "img1.fits" in partial["failures"]
