"""End-to-end commands a user runs: train, benchmark, evaluate, enhance, demo (tiny sizes)."""

import json
import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs.utils import proj_plane_pixel_scales
from click.testing import CliRunner
from matplotlib.image import imread

from lensenhance import io
from lensenhance.benchmark.sr import benchmark_sr, theta_e_regression
from lensenhance.cli import cli
from lensenhance.demo import GENERATOR
from lensenhance.enhance.evaluation import evaluate_catalog
from lensenhance.training.data import load_pairs, normalize_pairs, training_pairs


@pytest.fixture
def runner():
    return CliRunner()


def test_normalize_pairs_is_the_enhancer_convention():
    rng = np.random.default_rng(0)
    hr = rng.gamma(2.0, 1.0, size=(3, 16, 16)).astype(np.float32)
    lr = hr.reshape(3, 8, 2, 8, 2).sum(axis=(2, 4))
    lr_n, hr_n = normalize_pairs(lr, hr, scale=2)
    # Block sums of the normalised HR, back in LR units, equal the normalised LR.
    summed = hr_n.reshape(3, 8, 2, 8, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(summed, lr_n, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not 2 x"):
        normalize_pairs(lr, hr[:, :15], scale=2)


@pytest.mark.parametrize("normalise", ["pairs", "posterior"])
def test_training_normalisation_is_what_the_enhancer_does(normalise):
    """The training targets, fed back through the Enhancer, give back the HR image: the
    two share one fit (hot pixel included) and one flux-split rule."""
    import torch

    from lensenhance import Enhancer
    from lensenhance.predict.predictors import Prediction, Predictor
    from lensenhance.training.posterior import normalise_posterior_data

    rng = np.random.default_rng(1)
    hr = rng.gamma(2.0, 1.0, size=(32, 32)).astype(np.float32)
    lr = hr.reshape(16, 2, 16, 2).sum(axis=(1, 3)) + rng.normal(0, 0.3, (16, 16))
    lr = lr.astype(np.float32)
    lr[5, 7] = 1e4  # a hot pixel: left out of the fit by the outlier refit of both
    if normalise == "pairs":
        lr_n, hr_n = normalize_pairs(lr[None], hr[None], scale=2)
    else:
        lr_n, _, hr_n = normalise_posterior_data(lr[None], np.full((1, 16, 16), 0.3),
                                                 hr[None], scale=2)
    seen = {}

    class Lookup(Predictor):
        scale = 2
        name = "lookup"

        def predict(self, x, *, sigma=None, seed=0, origins=None):
            seen["x"] = x[0, 0].numpy().copy()
            return Prediction(torch.from_numpy(hr_n[0])[None, None])

    out = Enhancer(Lookup(), tile_size=None, progress=False).enhance(lr)
    good = np.ones((16, 16), bool)
    good[5, 7] = False  # filled for the network, masked in the output
    np.testing.assert_allclose(seen["x"][good], lr_n[0][good], rtol=1e-5, atol=1e-5)
    good_hr = np.kron(good, np.ones((2, 2), bool))
    np.testing.assert_allclose(np.asarray(out)[good_hr], hr[good_hr], rtol=1e-5, atol=1e-4)


def test_snr_pairs_give_seeds_and_labels_also_from_the_cache(tmp_path):
    """Each image's seed and class index (blocks of no_sub, cdm, axion) come back, from
    the cache as well; a cache without them (an older key) is simulated again."""
    from lensenhance.simulate import PRESETS
    from lensenhance.simulate.presets import LogUniform
    from lensenhance.simulate.render import simulate_block
    from lensenhance.training.posterior import snr_pairs

    cache = tmp_path / "pairs.npz"
    np.savez(cache, key=np.array(json.dumps({"n": 3})), attrs=np.array("{}"))  # old cache
    first = snr_pairs(3, seed=7, progress=False, cache=cache)
    assert first["seed"].dtype == np.int64 and first["label"].tolist() == [0, 1, 2]
    again = snr_pairs(3, seed=7, progress=False, cache=cache)
    for name in ("seed", "label", "clean"):
        np.testing.assert_array_equal(again[name], first[name])
    # the seed and class rebuild the image, with the preset as snr_pairs sets it up
    attrs = first["attrs"]
    preset = PRESETS[attrs["preset"]].replace(
        exposure_time=LogUniform(*attrs["exposure_log10"]))
    arrays, _ = simulate_block(preset, "snr", ["cdm"], [int(first["seed"][1])], 10.0)
    np.testing.assert_array_equal(arrays["clean"][0], first["clean"][1])


def test_load_pairs_from_npz_and_errors(tmp_path):
    np.savez(tmp_path / "p.npz", lr=np.zeros((2, 4, 4)), hr=np.zeros((2, 8, 8)))
    lr, hr = load_pairs(tmp_path / "p.npz")
    assert lr.shape == (2, 4, 4) and hr.shape == (2, 8, 8)
    np.savez(tmp_path / "bad.npz", lr=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="bad.npz"):
        load_pairs(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_pairs(tmp_path / "missing.nc")


def test_catalog_pairs_skip_bad_rows(tmp_path):
    from astropy.table import Table

    rows = []
    for k in range(3):
        fits.writeto(tmp_path / f"lr{k}.fits", np.full((4, 4), k, np.float32))
        fits.writeto(tmp_path / f"hr{k}.fits", np.full((8, 8), k, np.float32))
        rows.append((f"lr{k}.fits", f"hr{k}.fits"))
    (tmp_path / "lr2.fits").write_text("broken")
    Table(rows=rows, names=("lr_path", "hr_path")).write(tmp_path / "cat.ecsv")
    with pytest.warns(UserWarning, match="lr2.fits"):
        lr, hr = load_pairs(tmp_path / "cat.ecsv")
    assert lr.shape == (2, 4, 4) and hr.shape == (2, 8, 8)


def test_training_pairs_hold_out_validation(tmp_path):
    rng = np.random.default_rng(1)
    hr = rng.gamma(2.0, 1.0, size=(10, 16, 16)).astype(np.float32)
    lr = hr.reshape(10, 8, 2, 8, 2).sum(axis=(2, 4))
    np.savez(tmp_path / "p.npz", lr=lr, hr=hr)
    source, (val_lr, val_hr) = training_pairs(tmp_path / "p.npz", patch_size=8, n_val=3)
    assert len(source) == 7 and val_lr.shape == (3, 8, 8) and val_hr.shape == (3, 16, 16)


def test_train_sr_command_on_simulated_data(runner, tmp_path):
    out = tmp_path / "run"
    args = ["-q", "train", "sr", "--model", "fsrcnn", "--size", "paper", "--n-train", "6",
            "--n-val", "3", "--steps", "4", "--batch-size", "2", "--patch-size", "16",
            "--val-every", "2", "--checkpoint-every", "2", "--out", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "val PSNR" in result.output
    history = json.loads((out / "history.json").read_text())
    assert history["step"] == 4
    from lensenhance.nn.weights import read_weights_metadata

    command = read_weights_metadata(out / "weights.safetensors")["command"]
    assert command.startswith("lensenhance train sr --model fsrcnn") and "--steps 4" in command
    # A second run into the same folder needs --resume or --overwrite.
    again = runner.invoke(cli, args)
    assert again.exit_code != 0 and "--resume" in again.output


def test_benchmark_sr_tiny(tmp_path, capsys):
    result = benchmark_sr(n=6, models=[], regression=False, progress=False,
                          json_path=tmp_path / "sr.json")
    rows = result["rows"]
    assert set(rows) == {"bilinear", "bicubic", "bicubic of noise-free LR (oracle)"}
    # The oracle has no noise to fight: it must beat bicubic on the noisy LR.
    assert rows["bicubic of noise-free LR (oracle)"]["metrics"]["all"]["psnr"] > \
        rows["bicubic"]["metrics"]["all"]["psnr"]
    assert set(rows["bicubic"]["metrics"]) == {"all", "no_sub", "cdm", "axion"}
    saved = json.loads((tmp_path / "sr.json").read_text())
    assert saved["rows"]["bicubic"]["metrics"]["all"]["psnr"] == pytest.approx(
        rows["bicubic"]["metrics"]["all"]["psnr"])
    assert "bicubic" in capsys.readouterr().out


def test_theta_e_regression_runs_and_reports():
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.5, 2.0, 24)
    y, x = np.mgrid[:32, :32] - 15.5
    images = np.stack([np.exp(-(np.hypot(x, y) - 8 * t) ** 2 / 4) for t in theta])
    figures = theta_e_regression(images, theta, epochs=2, batch_size=8)
    assert figures["n_train"] + figures["n_test"] == 24
    # a regressor that learnt something beats predicting the mean of the targets
    assert np.isfinite(figures["mse"]) and figures["mae"] > 0
    assert figures["mae"] < np.mean(np.abs(theta - theta.mean())) * 1.5


def _write_pairs(folder, images, prefix=""):
    folder.mkdir(exist_ok=True)
    for k, image in enumerate(images):
        io.write_image(CCDData(image, unit="electron/s"), folder / f"{prefix}img{k}.fits")


def test_evaluate_command(runner, tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, 1.0, size=(3, 16, 16)).astype(np.float32)
    _write_pairs(tmp_path / "truth", truth)
    _write_pairs(tmp_path / "pred", truth + 0.01)
    result = runner.invoke(cli, ["evaluate", "--pred", str(tmp_path / "pred"), "--truth",
                                 str(tmp_path / "truth"), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "3 images" in result.output and "PSNR" in result.output
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["n"] == 3 and saved["failures"] == {}
    (tmp_path / "pred" / "img1.fits").unlink()
    partial = evaluate_catalog(tmp_path / "pred", tmp_path / "truth")
    assert partial["n"] == 2 and partial["n_failed"] == 1
    assert any("img1" in key for key in partial["failures"])


def test_enhance_command_goes_on_after_a_bad_file(runner, tmp_path):
    good = tmp_path / "good.fits"
    io.write_image(CCDData(np.ones((8, 8), np.float32), unit="adu"), good)
    bad = tmp_path / "bad.fits"
    bad.write_text("not fits")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["enhance", str(bad), str(good), "--out", str(out)])
    assert result.exit_code != 0
    assert "bad.fits" in result.output and "1 of 2" in result.output
    written = io.read_image(out / "good_bicubic.fits")
    assert written.shape == (16, 16) and str(written.unit) == "adu"
    # A rerun skips what is done; --overwrite redoes it; another model is refused.
    again = runner.invoke(cli, ["enhance", str(good), "--out", str(out)])
    assert again.exit_code == 0 and "1 already done" in again.output
    assert runner.invoke(cli, ["enhance", str(good), "--out", str(out),
                               "--overwrite"]).exit_code == 0
    other = runner.invoke(cli, ["enhance", str(good), "--out", str(out), "--model", "bilinear"])
    assert other.exit_code != 0 and "model: 'bicubic' -> 'bilinear'" in other.output


#: The start of each method family's line in the demo's table, and where its label ends.
DEMO_ROWS = {"bicubic": "bicubic", "(best residual)": "(best residual)",
             "diffusion-sr-x2 mean": "steps)", "HSC Wide input": "(no denoising)",
             "diffusion-denoise-hsc mean": "steps)", GENERATOR: "DDIM steps)"}


def check_demo_output(out, output, *, n_lenses, n_generated):
    """What a user of ``lensenhance demo`` sees: the table, the FITS files, the figure."""
    from lensenhance.demo import best_pretrained

    # The table: every method family, with finite numbers (n first).
    lines = output.splitlines()
    for family, label_end in DEMO_ROWS.items():
        line = next((line for line in lines if family in line
                     and line.split()[0] in ("sr", "denoise", "generate")), None)
        assert line is not None, f"no {family!r} row in\n{output}"
        label = line[line.index(family):]
        rest = label[label.index(label_end) + len(label_end):]
        numbers = [float(x) for x in re.findall(r"nan|inf|-?\d+(?:\.\d+)?", rest)]
        assert len(numbers) >= 3 and all(np.isfinite(numbers)), line
        n = {GENERATOR: n_generated, "HSC Wide input": 1,
             "diffusion-denoise-hsc mean": 1}.get(family, n_lenses)
        assert numbers[0] == n, line
    # Super-resolution: each output has 2x the pixels of its input, its unit and its WCS
    # at half the pixel scale; the posterior has an uncertainty.
    for i in range(n_lenses):
        lr = io.read_image(out / "sr" / f"lr_{i:03d}.fits")
        assert lr.wcs is not None and lr.uncertainty is not None
        assert io.read_image(out / "sr" / f"hr_{i:03d}.fits").shape == (2 * lr.shape[0],
                                                                        2 * lr.shape[1])
        for method in ("bicubic", best_pretrained(scale=2), "diffusion-sr-x2"):
            sr = io.read_image(out / "sr" / f"{method}_{i:03d}.fits")
            assert sr.shape == (2 * lr.shape[0], 2 * lr.shape[1]) and sr.unit == lr.unit
            np.testing.assert_allclose(proj_plane_pixel_scales(sr.wcs),
                                       proj_plane_pixel_scales(lr.wcs) / 2)
            assert np.isfinite(sr.data).all()
        assert sr.uncertainty is not None and sr.meta["UNCTYPE"].startswith("posterior std")
    # HSC denoising: the input's shape and WCS (the shipped cutouts have none), a std.
    (wide_path,) = (out / "denoise").glob("*_wide.fits")
    wide = io.read_image(wide_path)
    den = io.read_image(wide_path.with_name(
        wide_path.name.replace("_wide", "_diffusion-denoise-hsc")))
    assert den.shape == wide.shape and (den.wcs is None) == (wide.wcs is None)
    assert den.uncertainty is not None and np.isfinite(den.data).all()
    assert io.read_image(wide_path.with_name(wide_path.name.replace("_wide", "_deep"))
                         ).shape == wide.shape
    # Generation: 64x64 images with a WCS.
    for i in range(n_generated):
        gen = io.read_image(out / "generate" / f"{GENERATOR}_{i:03d}.fits")
        assert gen.shape == (64, 64) and gen.wcs is not None and np.isfinite(gen.data).all()
    # One figure, a real PNG with the three rows.
    figure = imread(out / "demo.png")
    assert figure.ndim == 3 and figure.shape[0] > 400 and figure.std() > 0.05
    assert not list(out.rglob(".tmp-*"))


def test_demo_command_quick(runner, tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(cli, ["-q", "demo", "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert "2 samples, 2 steps" in result.output  # the table says how little was run
    check_demo_output(out, result.output, n_lenses=2, n_generated=3)
    # A second run into the same folder is refused, before any work, unless --overwrite.
    written = (out / "demo.png").stat().st_mtime_ns
    again = runner.invoke(cli, ["-q", "demo", "--out", str(out), "--quick"])
    assert again.exit_code != 0 and "--overwrite" in again.output
    assert "exist" in again.output and (out / "demo.png").stat().st_mtime_ns == written
    # An --out that is a file is named, with no traceback.
    (tmp_path / "file").write_text("")
    bad = runner.invoke(cli, ["-q", "demo", "--out", str(tmp_path / "file"), "--quick"])
    assert bad.exit_code != 0 and "not a folder" in bad.output


@pytest.mark.slow
def test_demo_command_full_size(runner, tmp_path):
    out = tmp_path / "demo"
    assert runner.invoke(cli, ["-q", "demo", "--out", str(out), "--quick"]).exit_code == 0
    refused = runner.invoke(cli, ["-q", "demo", "--out", str(out)])
    assert refused.exit_code != 0 and "--overwrite" in refused.output
    result = runner.invoke(cli, ["-q", "demo", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "8 samples, 6 steps" in result.output and "20 DDIM steps" in result.output
    check_demo_output(out, result.output, n_lenses=3, n_generated=3)


def test_feature_network_trains_publishes_and_drives_the_feature_loss(runner, tmp_path,
                                                                      monkeypatch):
    from lensenhance import pretrained as models
    from lensenhance import publish

    run = tmp_path / "features"
    result = runner.invoke(cli, ["-q", "train", "features", "-n", "6", "--n-val", "2",
                                 "--epochs", "1", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "theta_E MAE" in result.output
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(publish, "WEIGHTS_DIR", weights)
    card = publish.publish_feature_network(run, "tiny-features")
    assert card["task"] == "features" and card["command"].startswith("lensenhance train")
    assert models.list_pretrained(task="features") == ["tiny-features"]
    frozen = models.load_feature_network("tiny-features")
    assert not any(p.requires_grad for p in frozen.parameters())
    from lensenhance import Enhancer

    with pytest.raises(ValueError, match="not an enhancer"):
        Enhancer.from_pretrained("tiny-features")
    out = tmp_path / "sr"
    result = runner.invoke(cli, ["-q", "train", "sr", "--model", "fsrcnn", "--size", "paper",
                                 "--n-train", "6", "--n-val", "3", "--steps", "2",
                                 "--batch-size", "2", "--patch-size", "16",
                                 "--loss", "l1=1,feature=0.5", "--feature-net", "tiny-features",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert history["train"][-1]["feature"] > 0


@pytest.mark.slow
def test_benchmark_sr_scores_residual_uncertainty_beside_the_posterior(capsys):
    pytest.importorskip("diffusers")
    result = benchmark_sr(n=3, models=["fsrcnn-x2", "diffusion-sr-x2"], n_samples=2,
                          self_ensemble=False, regression=False, progress=False)
    rows = result["rows"]
    mc = rows["fsrcnn-x2"]["mc_uncertainty"]
    assert mc["n_draws"] == 8 and 0 <= mc["coverage_68"] <= mc["coverage_95"] <= 1
    assert rows["diffusion-sr-x2"]["n_samples"] == 2
    bins = rows["diffusion-sr-x2"]["posterior"]["calibration_bins"]
    assert {r["label"] for r in bins["class"]} == {"no_sub", "cdm", "axion"}
    (arc,) = bins["arc"]  # the HR truths' lensed-arc pixels
    assert arc["label"] == "arc" and 0 < arc["n_pixels"] < 3 * 150 * 150 // 2
    # the reference is the residual model, chosen by its card; the posterior is paired to it
    assert result["reference"] == "fsrcnn-x2"
    assert result["differences"]["diffusion-sr-x2 - fsrcnn-x2"]["n"] == 3
    assert "Monte-Carlo draws" in capsys.readouterr().out


@pytest.mark.slow
def test_benchmark_sr_reference_differences_and_regression_seeds(capsys):
    result = benchmark_sr(n=6, models=["fsrcnn-x2", "edsr-x2"], self_ensemble=True,
                          regression=True, regression_seeds=2, regression_epochs=1,
                          progress=False)
    # edsr-x2 has the better validation PSNR in its card, whatever these 6 images say
    assert result["reference"] == "edsr-x2"
    diff = result["differences"]["fsrcnn-x2 - edsr-x2"]
    fsrcnn = np.array(result["rows"]["fsrcnn-x2"]["psnr_per_image"])
    edsr = np.array(result["rows"]["edsr-x2"]["psnr_per_image"])
    assert diff["mean"] == pytest.approx(np.mean(fsrcnn - edsr))
    assert diff["n"] == 6 and diff["se"] > 0
    # what the self-ensemble adds, each network against itself
    assert {"fsrcnn-x2 +SE - fsrcnn-x2", "edsr-x2 +SE - edsr-x2"} <= set(result["differences"])
    regression = result["regression"]
    assert set(regression) == {"HR", "bicubic LR", "SR LR (edsr-x2)"}
    for figures in regression.values():
        assert figures["seeds"] == [0, 1] and len(figures["mse_per_seed"]) == 2
        assert figures["mse_std"] >= 0 and figures["mse"] == pytest.approx(
            np.mean(figures["mse_per_seed"]))
    out = capsys.readouterr().out
    assert "± " in out and "over 2 seeds" in out and "(paired, n=6" in out


@pytest.mark.slow
def test_benchmark_speed_enhance_small(tmp_path):
    from lensenhance.benchmark.speed import benchmark_enhance

    result = benchmark_enhance(size=96, model="fsrcnn-x2", models=["fsrcnn-x2"], model_size=32,
                               repeats=1, memory_size=96,
                               seams=[("rcan-x2", 96, 80, None, None)],
                               json_path=tmp_path / "speed.json", verbose=False)
    whole = result["whole_vs_tiled"]
    assert whole["n_images"] == 1 and whole["ratio"] > 0
    assert whole["max_abs_difference"] < 1e-3  # fsrcnn tiles exactly
    (seam,) = result["seams"]
    assert seam["n_tiles"] > 1 and 0 < seam["max_abs_difference"] < 1.0
    # torch alone takes a few hundred MB; a 96x96 image adds next to nothing
    assert 0.1 < result["cli_memory"]["peak_rss_gb"] < 2.0
    assert 0 < result["models"][0]["share_of_conv_peak"]
    assert json.loads((tmp_path / "speed.json").read_text())["seams"][0]["model"] == "rcan-x2"


def test_train_sr_init_fine_tunes_a_shipped_model(tmp_path):
    import torch
    from safetensors.torch import load_file

    from lensenhance.pretrained import file_sha256, weights_path

    runner = CliRunner()
    out = tmp_path / "ft"
    args = ["-q", "train", "sr", "--init", "fsrcnn-x2", "--n-train", "6", "--n-val", "3",
            "--steps", "1", "--batch-size", "2", "--patch-size", "16", "--lr", "1e-12",
            "--out", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    from lensenhance.nn.weights import read_weights_metadata

    train_args = read_weights_metadata(out / "weights.safetensors")["train_args"]
    train_args = json.loads(train_args) if isinstance(train_args, str) else train_args
    assert train_args["init"] == {"weights": "fsrcnn-x2",
                                  "sha256": file_sha256(weights_path("fsrcnn-x2"))}
    # one step at a negligible learning rate: the weights are still the shipped ones
    shipped, tuned = load_file(weights_path("fsrcnn-x2")), load_file(out / "weights.safetensors")
    assert shipped.keys() == tuned.keys()
    assert all(torch.allclose(shipped[k].float(), tuned[k].float(), atol=1e-4) for k in shipped)

    result = runner.invoke(cli, [*args[:4], "no-such-model", *args[5:-1], str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "no-such-model" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, [*args[:4], "raunet-denoise", *args[5:-1], str(tmp_path / "y")])
    assert result.exit_code != 0 and "not of a super-resolution network" in result.output
