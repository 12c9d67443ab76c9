"""Few-step posteriors: the distillation target, the student, its sampler and its tiles."""

import numpy as np
import pytest
import torch
from astropy.nddata import CCDData, StdDevUncertainty

from lensenhance import Enhancer
from lensenhance.diffusion import NoiseSchedule
from lensenhance.diffusion.distill import (
    STUDENT_GRIDS,
    ddim_jump,
    grid_jumps,
    landing_x0,
    sample_few_step,
)
from lensenhance.nn.localunet import LocalUNet
from lensenhance.nn.weights import load_weights
from lensenhance.predict.posterior import PosteriorPredictor
from lensenhance.pretrained import load_pretrained
from lensenhance.training.distill import FewStepDistillationTask
from lensenhance.training.loop import train

pytest.importorskip("diffusers")

SCHEDULE = NoiseSchedule(parameterization="v", beta_schedule="squaredcos_cap_v2")


def test_landing_x0_is_the_clean_image_whose_ddim_step_lands_on_the_target():
    gen = torch.Generator().manual_seed(0)
    x_t, x_s = torch.randn(2, 1, 4, 4, generator=gen)
    for t, s in grid_jumps():
        x0 = landing_x0(SCHEDULE, x_t, t, x_s, s)
        landed = x0 if s == 0 else ddim_jump(SCHEDULE, x_t, t, x0, s)
        torch.testing.assert_close(landed, x_s, rtol=1e-4, atol=1e-4)


def test_every_grid_ends_on_the_clean_image_and_shares_the_teachers_timesteps():
    assert grid_jumps() == sorted({(999, 0), (999, 499), (499, 0), (999, 699), (699, 499),
                                   (499, 299), (299, 0)}, reverse=True)
    assert set(STUDENT_GRIDS) == {1, 2, 4}
    teacher_times = set(range(99, 1000, 100))
    assert all(set(grid) <= teacher_times for grid in STUDENT_GRIDS.values())


def _gaussian_states(cond, z, times, spread):
    """The exact probability-flow trajectory of x0 ~ N(cond, spread**2), per pixel.

    Along the ODE the standardised state ``(x_t - alpha m) / sqrt(alpha**2 s**2 + sigma**2)``
    is constant, so every state is known in closed form.
    """
    abar = SCHEDULE.alphas_cumprod.float()
    states = {}
    for t in times:
        alpha, sigma = abar[t].sqrt(), (1 - abar[t]).sqrt()
        states[t] = alpha * cond + (alpha**2 * spread**2 + sigma**2).sqrt() * z
    states[0] = cond + spread * z
    return states


def test_a_distilled_sampler_reproduces_an_exact_gaussian_posterior(tmp_path):
    # The toy posterior x0 | c ~ N(c, 0.5**2) per pixel, with the exact teacher (its
    # probability-flow ODE in closed form): the student learns every jump of the grids,
    # and 1, 2 and 4 steps give the exact mean and variance within Monte-Carlo error.
    torch.set_num_threads(1)
    spread = 0.5
    gen = torch.Generator().manual_seed(0)
    cond = torch.randn(512, 1, 8, 8, generator=gen)
    z = torch.randn(512, 1, 8, 8, generator=gen)
    pool = {"cond": cond, "states": _gaussian_states(cond, z, [999, 699, 499, 299], spread)}
    task = FewStepDistillationTask(pool, schedule=SCHEDULE)
    student = LocalUNet(channels=[16], blocks=1, cond_channels=1, embed_dim=16)
    train(student, task, steps=1500, out_dir=tmp_path, batch_size=64, lr=1e-2,
          weight_decay=0.0, ema_decay=0.9, val_every=10**6, checkpoint_every=10**6,
          progress=False)
    student = load_weights(tmp_path / "weights.safetensors").eval()
    c = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    m = 1000
    se_mean, se_var = spread / m**0.5, spread**2 * (2 / (m - 1)) ** 0.5
    for steps in (1, 2, 4):
        noise = torch.randn(m, 1, 8, 8, generator=gen)
        x = sample_few_step(student, noise, schedule=SCHEDULE, steps=steps,
                            cond=c.expand(m, 1, 8, 8))
        mean_error = (x.mean(0)[0] - c[0, 0]) / se_mean
        var_error = (x.var(0)[0] - spread**2) / se_var
        # 64 pixels: Monte-Carlo error alone gives an rms of 1 and a largest value ~2.5
        assert mean_error.pow(2).mean().sqrt() < 2, steps
        assert var_error.pow(2).mean().sqrt() < 2, steps
        assert mean_error.abs().max() < 5.5 and var_error.abs().max() < 5.5, steps


def test_the_students_receptive_field_bounds_its_impulse_response():
    torch.manual_seed(0)
    net = LocalUNet(channels=[8, 16, 32], blocks=2).eval()
    for module in net.modules():  # undo the zero start, which would hide the reach
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.2)
    x, cond = torch.zeros(1, 1, 128, 128), torch.zeros(1, 3, 128, 128)
    with torch.no_grad():
        before = net(x, torch.tensor([999]), cond=cond)
        x[0, 0, 64, 64] = 1.0
        changed = (net(x, torch.tensor([999]), cond=cond) - before).abs()[0, 0] > 0
    reach = (torch.nonzero(changed) - 64).abs().max().item()
    assert 0.8 * net.receptive_field <= reach <= net.receptive_field


def _tiny_distilled_predictor(task="sr", **options):
    from lensenhance.nn.raunet import RAUNet

    torch.manual_seed(1)
    student = LocalUNet(channels=[8, 16], blocks=1).eval()
    for module in student.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.1)
    base = load_pretrained("fsrcnn-x2") if task == "sr" else RAUNet(channels=(4, 8)).eval()
    return PosteriorPredictor(base, student, schedule=SCHEDULE, scale=2 if task == "sr" else 1,
                              grids=STUDENT_GRIDS, name="tiny-distilled", **options)


@pytest.mark.parametrize("task", ["sr", "denoise"])
def test_tiles_of_a_distilled_posterior_equal_the_whole_image(task):
    # The 10-step UNet normalises over each tile (up to 2 std apart); the student does not.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:150, :150]
    image = 50 * np.exp(-((y - 60) ** 2 + (x - 90) ** 2) / 200) + rng.normal(size=(150, 150))
    ccd = CCDData(image.astype(np.float32), unit="electron/s",
                  uncertainty=StdDevUncertainty(np.ones((150, 150), np.float32)))
    predictor = _tiny_distilled_predictor(task, n_samples=4, steps=4)
    assert predictor.exact_tiling
    tiled = Enhancer(predictor, tile_size=128).enhance(ccd, seed=3)
    whole = Enhancer(predictor, tile_size=512).enhance(ccd, seed=3)
    assert np.abs(tiled.data - whole.data).max() / whole.uncertainty.array.min() < 0.05
    np.testing.assert_allclose(tiled.uncertainty.array, whole.uncertainty.array,
                               rtol=1e-3, atol=1e-6)
    assert "(distilled, 4 steps)" in tiled.header["UNCTYPE"]


@pytest.mark.parametrize("options, message", [
    ({"steps": 3}, r"samples in \[1, 2, 4\] steps"),
    ({"sampler": "dpm"}, "its sampler is 'distilled'"),
])
def test_a_distilled_model_refuses_other_samplers_and_step_counts(options, message):
    with pytest.raises(ValueError, match=message):
        _tiny_distilled_predictor(**options)


def test_a_distilled_model_defaults_to_two_steps():
    predictor = _tiny_distilled_predictor()
    assert (predictor.steps, predictor.sampler) == (2, "distilled")


def _random_sr_sets(*, seed, n, side):
    """Normalised x2 training and validation sets of noise (the plumbing needs no lens)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, side, side)).astype(np.float32)
    sigma = np.full_like(x, 0.1)
    truth = rng.normal(size=(n, 2 * side, 2 * side)).astype(np.float32)
    return {"train": (x, sigma, truth), "val": (x[:2], sigma[:2], truth[:2]), "attrs": {}}


@pytest.fixture(scope="module")
def distilled_file(tmp_path_factory):
    """A tiny distilled run of the shipped diffusion-sr-x2 on random crops (plumbing only)."""
    from lensenhance.training.distill import distill_posterior

    torch.set_num_threads(1)
    data = _random_sr_sets(seed=0, n=4, side=24)
    folder = tmp_path_factory.mktemp("distill")
    history = distill_posterior(out_dir=folder, teacher="diffusion-sr-x2", data=data,
                                n_pool=16, n_val=4, patch=32, steps=4, batch_size=4,
                                net={"channels": [4, 8], "blocks": 1, "embed_dim": 8},
                                progress=False)
    return folder, history


def test_distill_posterior_writes_a_loadable_student_with_its_teacher(distilled_file):
    from lensenhance.nn.weights import read_weights_metadata
    from lensenhance.predict.posterior import load_posterior
    from lensenhance.pretrained import model_card

    folder, history = distilled_file
    meta = read_weights_metadata(folder / "weights.safetensors")
    teacher = model_card("diffusion-sr-x2")
    assert meta["distilled"]["teacher_sha256"] == teacher["sha256"]
    assert meta["distilled"]["grids"] == {str(k): list(v) for k, v in STUDENT_GRIDS.items()}
    assert meta["base_sha256"] == model_card("edsr-x2")["sha256"]
    assert {"val_mse_1step", "val_mse_2step", "val_mse_4step"} <= set(history["val"][-1])
    predictor = load_posterior(folder / "weights.safetensors", n_samples=2, steps=4)
    assert (predictor.steps, predictor.sampler, predictor.exact_tiling) == (4, "distilled", True)
    # the teacher's trajectories are cached: a rerun does not sample them again
    assert (folder / "train_trajectories.pt").is_file()


def test_each_step_count_gets_its_own_calibration_factor(distilled_file, tmp_path):
    import shutil

    from lensenhance.nn.weights import update_weights_metadata
    from lensenhance.predict.posterior import load_posterior

    folder, _ = distilled_file
    path = tmp_path / "student.safetensors"
    shutil.copy(folder / "weights.safetensors", path)
    factors = {"1": {"std_scale": 0.9}, "2": {"std_scale": 1.1}, "4": {"std_scale": 1.3}}
    update_weights_metadata(path, {"calibration": {"std_scale": 1.1, "by_steps": factors}})
    for steps, fitted in factors.items():
        predictor = load_posterior(path, n_samples=2, steps=int(steps))
        assert predictor.std_scale == fitted["std_scale"]
    assert load_posterior(path, n_samples=2).std_scale == 1.1  # the default, 2 steps


def test_publishing_a_distilled_run_fits_a_factor_per_step_count(distilled_file, tmp_path,
                                                                 monkeypatch):
    import json
    import shutil

    from lensenhance import pretrained as models
    from lensenhance import publish

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("edsr-x2", "diffusion-sr-x2"):  # the base and the teacher, as shipped
        for suffix in (".safetensors", ".json"):
            shutil.copy(models.WEIGHTS_DIR / f"{name}{suffix}", weights)
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(publish, "WEIGHTS_DIR", weights)
    folder, _ = distilled_file
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(folder / "weights.safetensors", run)
    (run / "history.json").write_text(json.dumps({"step": 4, "wall_time_s": 1.0}))
    card = publish.publish_posterior(run, "tiny-fast", base="edsr-x2", snr_bins=True,
                                     calibrate={"kind": "sr", "n": 3})
    calibration = card["calibration"]
    assert set(calibration["by_steps"]) == {"1", "2", "4"}
    assert calibration["std_scale"] == calibration["by_steps"]["2"]["std_scale"]
    assert all(fitted["steps"] == int(k) and "snr_bins" in fitted
               for k, fitted in calibration["by_steps"].items())
    assert "Salimans & Ho 2022" in card["distilled"]["method"]
    enhancer = Enhancer.from_pretrained("tiny-fast", n_samples=2, steps=1)
    assert "SNR-dependent" in enhancer.predictor.uncertainty_type


@pytest.mark.parametrize("context, given_sigma", [("background", True), ("noise", True),
                                                  ("noise", False), ("both", True)])
def test_the_enhancer_applies_the_signal_calibration_at_each_images_zero(
        distilled_file, tmp_path, context, given_sigma):
    """The factor depends on where each pixel sits between the data's zero and the
    background, or on its SNR against the input's noise: the Enhancer passes each
    image's zero level and its sigma (given, or estimated) through the tiles."""
    import shutil

    from lensenhance.benchmark._runs import input_backgrounds, input_noise
    from lensenhance.predict.posterior import load_posterior
    from lensenhance.predict.snr_factor import snr_std_factor

    folder, _ = distilled_file
    path = tmp_path / "student.safetensors"
    shutil.copy(folder / "weights.safetensors", path)
    groups = [{"snr": [0.5, 5.0], "std_scale": [1.1 ** k, 1.1 ** k * 3]} for k in range(30)]
    u_edges, q_edges = [-1.0, -0.2, 0.2, 1.0], [0.3, 1.0, 3.0, 10.0, 30.0]
    table = {"background": {"u_edges": u_edges, "groups": groups[:5]},
             "noise": {"context": "noise", "q_edges": q_edges, "groups": groups[:6]},
             "both": {"context": "both", "u_edges": u_edges, "q_edges": q_edges,
                      "groups": groups}}[context]
    rng = np.random.default_rng(3)
    image = (20.0 + rng.normal(0, 1, (40, 40))).astype(np.float32)
    image[15:25, 15:25] += 40.0  # a source above a sky pedestal
    sigma = np.ones_like(image)
    sigma[:, 20:] = 2.0  # a noise map whose halves differ: kept on the output's grid
    ccd = CCDData(image, unit="electron/s",
                  uncertainty=StdDevUncertainty(sigma) if given_sigma else None)
    out = {}
    for key, calibration in (("raw", {}), ("table", table)):
        predictor = load_posterior(path, n_samples=2, steps=1, std_scale=1.0,
                                   snr_calibration=calibration)
        assert predictor.uses_zero_level == bool(calibration)
        out[key] = Enhancer(predictor, device="cpu", tile_size=None).enhance(ccd, seed=0)
    mean, raw = out["raw"].data, out["raw"].uncertainty.array
    np.testing.assert_allclose(out["table"].data, mean, rtol=1e-6)
    background = input_backgrounds([image], 2)[0]
    noise = input_noise([image], [sigma] if given_sigma else None, 2)[0]
    expected = snr_std_factor(mean - background, raw, table, -background, noise=noise)
    np.testing.assert_allclose(out["table"].uncertainty.array / raw, expected, rtol=1e-4)
    # measured from the background instead, the factor would differ
    assert not np.allclose(snr_std_factor(mean - background, raw, table, 0.0, noise=noise),
                           expected)
    if context != "background":  # and so would it with another noise
        assert not np.allclose(snr_std_factor(mean - background, raw, table, -background,
                                              noise=2 * noise), expected)


def test_recalibrating_a_shipped_posterior_rewrites_its_weights_and_card(distilled_file,
                                                                         tmp_path,
                                                                         monkeypatch):
    import shutil

    from lensenhance import pretrained as models
    from lensenhance import publish
    from lensenhance.pretrained import file_sha256, model_card

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("edsr-x2", "diffusion-sr-x2", "diffusion-sr-x2-fast"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(models.WEIGHTS_DIR / f"{name}{suffix}", weights)
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(publish, "WEIGHTS_DIR", weights)
    folder, _ = distilled_file
    shutil.copy(folder / "weights.safetensors", weights / "diffusion-sr-x2-fast.safetensors")
    card = publish.recalibrate_posterior("diffusion-sr-x2-fast", snr_bins=True,
                                         calibrate={"kind": "sr", "n": 3}, command="cmd")
    assert card["sha256"] == file_sha256(weights / "diffusion-sr-x2-fast.safetensors")
    assert card["calibration_command"] == "cmd"
    assert model_card("diffusion-sr-x2-fast")["calibration"]["by_steps"]["4"]["snr_bins"][
        "groups"]
    assert "SNR-dependent" in Enhancer.from_pretrained(
        "diffusion-sr-x2-fast", n_samples=2).predictor.uncertainty_type
    with pytest.raises(ValueError, match="not a posterior"):
        publish.recalibrate_posterior("edsr-x2", calibrate={"kind": "sr", "n": 3})


def test_a_stopped_distillation_resumes_where_it_stopped(tmp_path):
    from lensenhance.training.distill import distill_posterior

    torch.set_num_threads(1)
    data = _random_sr_sets(seed=1, n=3, side=16)
    options = {"out_dir": tmp_path, "teacher": "diffusion-sr-x2", "data": data, "n_pool": 8,
               "n_val": 2, "patch": 32, "steps": 4, "batch_size": 2, "progress": False,
               "net": {"channels": [4], "blocks": 1, "embed_dim": 8}}
    stopped = distill_posterior(max_steps=2, **options)
    assert stopped["step"] == 2
    resumed = distill_posterior(resume=True, **options)
    assert resumed["step"] == 4
    assert [e["step"] for e in resumed["train"]][-1] == 4


@pytest.mark.parametrize("spec, expected", [
    ("diffusion-sr-x2-fast@4", ("diffusion-sr-x2-fast", 4)),
    ("edsr-x2", ("edsr-x2", None)),
    ("runs/a@b/weights.safetensors", ("runs/a@b/weights.safetensors", None))])
def test_a_benchmark_model_may_name_its_steps(spec, expected):
    from lensenhance.benchmark._runs import split_steps

    assert split_steps(spec) == expected
    with pytest.raises(ValueError, match="positive integer"):
        split_steps("diffusion-sr-x2-fast@0")


def test_the_cli_refuses_a_step_count_a_distilled_model_has_not_learnt(tmp_path):
    from astropy.io import fits
    from click.testing import CliRunner

    from lensenhance.cli import cli

    path = tmp_path / "cutout.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
                    ).writeto(path)
    result = CliRunner().invoke(cli, ["-q", "denoise", str(path), "--model",
                                      "diffusion-denoise-fast", "--steps", "3", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "samples in [1, 2, 4] steps, not 3" in result.output
    assert "Traceback" not in result.output
