"""The shipped weights: each loads by name, matches its card, and beats bicubic."""

import numpy as np
import pytest
import torch

import lensenhance as le
import lensenhance.pretrained
from lensenhance.evaluate.metrics import batch_metrics
from lensenhance.pretrained import (
    CARD_KEYS,
    WEIGHTS_DIR,
    file_sha256,
    load_pretrained,
    validate_card,
)

SHIPPED = le.list_pretrained()
# The sr benchmark's set is Model-I-like with noisy LR; models for another set-up (the
# generator's noise-free chain) are tested on their own set in test_generate.py.
SHIPPED_SR = [name for name in le.list_pretrained(task="sr")
              if not le.model_card(name).get("noise_free_lr")]


def test_registry_lists_only_complete_models():
    for name in SHIPPED:
        assert (WEIGHTS_DIR / f"{name}.safetensors").is_file()
        assert (WEIGHTS_DIR / f"{name}.json").is_file()


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="no pretrained model named 'nope'"):
        le.model_card("nope")
    with pytest.raises(TypeError):
        le.model_card(3)


@pytest.mark.parametrize("name", SHIPPED)
def test_card_is_complete_and_hash_matches(name):
    card = le.model_card(name)
    assert validate_card(card) == []  # the task's schema: keys, types, metrics with n
    for key in CARD_KEYS[card["task"]]:
        assert key in card, key
    assert card["name"] == name
    command = {"classify": "classifier", "generate": "ddpm"}.get(card["task"], card["task"])
    if card.get("distilled"):  # a few-step posterior: distilled from its teacher
        command = "distill"
        assert card["distilled"]["teacher"] in SHIPPED
    assert card["command"].startswith(f"lensenhance train {command}")
    assert isinstance(card["metrics"]["n"], int) and card["metrics"]["n"] > 0
    # the command that measured the figures: a lensenhance command, or the publishing
    # tool's measurement on unseen seeds (the DeepLense classifiers)
    assert card["metrics"]["command"].startswith(("lensenhance ", "python -m lensenhance.publish "))
    assert file_sha256(WEIGHTS_DIR / f"{name}.safetensors") == card["sha256"]
    assert (WEIGHTS_DIR / f"{name}.safetensors").stat().st_size < 8 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_format_v2_and_load(name):
    from lensenhance.nn.weights import read_weights_metadata

    card = le.model_card(name)
    meta = read_weights_metadata(WEIGHTS_DIR / f"{name}.safetensors")
    assert meta["format"] == "lensenhance-weights" and meta["format_version"] == 2
    assert meta["task"] == card["task"]
    assert meta["config"]["architecture"] == card["architecture"]
    if card["task"] in ("sr", "denoise", "features", "posterior"):
        assert meta["normalization"] == {"kind": "per_image", "method": "sigma_clip"}
    else:  # generators and their classifier see a fixed asinh stretch
        assert meta["normalization"]["kind"] == "asinh"
    net = load_pretrained(name)
    assert not net.training and net.config == meta["config"]
    assert sum(p.numel() for p in net.parameters()) == card["parameters"]


def test_tasks_and_their_card_schemas():
    from lensenhance.nn.weights import TASKS as WEIGHT_TASKS

    assert lensenhance.pretrained.TASKS == WEIGHT_TASKS
    assert set(CARD_KEYS) == set(WEIGHT_TASKS)
    for task in WEIGHT_TASKS:
        assert isinstance(le.list_pretrained(task=task), list)
    assert {"scale", "degradation"} <= set(CARD_KEYS["sr"])
    assert {"image_size", "pixel_scale", "unit", "classes", "schedule"} <= \
        set(CARD_KEYS["generate"])
    assert "classes" in CARD_KEYS["classify"]
    with pytest.raises(ValueError, match="unknown task 'painting'; choose from sr, denoise"):
        le.list_pretrained(task="painting")


def test_validate_card_names_every_problem():
    card = le.model_card(SHIPPED_SR[0]) if SHIPPED_SR else _card("generate")
    broken = {**card, "steps": "many", "metrics": {"psnr": 30.0}}
    del broken["preset"]
    problems = validate_card(broken, raise_errors=False)
    text = "; ".join(problems)
    assert "missing preset" in text and "steps must be an integer" in text
    assert "metrics must hold n" in text and "metrics must hold command" in text
    with pytest.raises(ValueError, match=f"model card '{card['name']}'.*missing preset"):
        validate_card(broken)
    with pytest.raises(ValueError, match="task is 'painting'"):
        validate_card({**card, "task": "painting"})
    with pytest.raises(ValueError, match="sha256"):
        validate_card({**card, "sha256": "abc"})
    with pytest.raises(TypeError):
        validate_card(["not", "a", "dict"])
    generate = _card("generate")
    assert validate_card(generate) == []
    without = {k: v for k, v in generate.items() if k != "schedule"}
    with pytest.raises(ValueError, match="'generate' card schema: missing schedule"):
        validate_card(without)
    with pytest.raises(ValueError, match="classes must be a list of strings"):
        validate_card({**_card("classify"), "classes": [1, 2]})


def _card(task, name=None, **metrics):
    """A valid card of ``task`` (fake figures) for tests that need other tasks' models."""
    card = {"name": name or f"tiny-{task}", "task": task, "architecture": "unet",
            "parameters": 10, "preset": "model_ii", "command": f"lensenhance train {task}",
            "steps": 2, "wall_time_s": 1.0, "machine": "test", "sha256": "0" * 64,
            "license": "BSD-3-Clause",
            "metrics": {"n": 50, "command": f"lensenhance benchmark {task} -n 50", **metrics}}
    extra = {"sr": {"scale": 2, "degradation": "test"},
             "denoise": {"scale": 1, "degradation": "test"},
             "generate": {"image_size": 16, "pixel_scale": 0.101, "unit": "electron/s",
                          "classes": ["no_sub", "cdm", "axion"],
                          "schedule": {"num_train_timesteps": 1000}},
             "classify": {"classes": ["no_sub", "cdm", "axion"]}, "features": {}}
    return {**card, **extra[task]}


def test_models_command_shows_each_task_with_its_n(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from lensenhance import pretrained as models
    from lensenhance.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    for task in {le.model_card(name)["task"] for name in SHIPPED}:
        assert f"[{task}]" in result.output
    for name in SHIPPED:
        line = next(line for line in result.output.splitlines()
                    if line.split() and line.split()[0] == name)
        assert f"n={le.model_card(name)['metrics']['n']}" in line
    if SHIPPED_SR:
        assert "PSNR" in result.output and "SSIM" in result.output
    # every task in its own section with its own figures (fake cards of the other tasks)
    cards = [_card("sr", "tiny-sr", psnr=40.0, ssim=0.9),
             _card("generate", "tiny-gen", fd=12.5, fd_floor=3.25, kid=0.01, kid_se=0.0025,
                   kid_floor=0.002),
             _card("classify", "tiny-cls", accuracy=0.875),
             _card("features", "tiny-feat", theta_e_mae_arcsec=0.05),
             _card("denoise", "tiny-den", psnr=35.0)]
    for card in cards:
        (tmp_path / f"{card['name']}.json").write_text(json.dumps(card))
        (tmp_path / f"{card['name']}.safetensors").write_bytes(b"")
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    result = runner.invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    sections = [line for line in result.output.splitlines() if line.startswith("[")]
    assert sections == ["[sr]", "[denoise]", "[generate]", "[classify]", "[features]"]
    lines = {line.split()[0]: line for line in result.output.splitlines()
             if line.startswith("  ")}
    assert "PSNR 40.00 dB" in lines["tiny-sr"] and "SSIM 0.9000" in lines["tiny-sr"]
    assert "FD 12.5 (floor 3.25)" in lines["tiny-gen"]
    assert "KID 0.01 +- 0.0025 (floor 0.002)" in lines["tiny-gen"]  # kid_se beside kid
    assert "accuracy 0.875" in lines["tiny-cls"]
    assert "theta_E MAE 0.0500" in lines["tiny-feat"]
    assert all("n=50" in line for line in lines.values())
    result = runner.invoke(cli, ["models", "--task", "generate"])
    assert result.exit_code == 0 and "[generate]" in result.output
    assert "tiny-sr" not in result.output and "[sr]" not in result.output
    result = runner.invoke(cli, ["models", "--task", "painting"])
    assert result.exit_code != 0 and "painting" in result.output
    (tmp_path / "tiny-cls.json").unlink()
    result = runner.invoke(cli, ["models", "--task", "classify"])
    assert result.exit_code == 0 and "no pretrained classify models" in result.output


def test_publish_weights_writes_a_valid_card_for_any_task(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    import json

    from lensenhance import pretrained as models
    from lensenhance import publish
    from lensenhance.nn import build_model, export_weights

    run = tmp_path / "run"
    run.mkdir()
    unet = build_model("unet", sample_size=16, channels=[8, 16], attention_levels=[1],
                       n_classes=3, norm_groups=4, attention_head_dim=8)
    export_weights(unet, run / "weights.safetensors", metadata={
        "task": "generate", "schedule": {"num_train_timesteps": 1000, "parameterization": "v"},
        "n_classes": 3, "scaling": {"kind": "asinh", "softening": 0.01, "maximum": 20.0},
        "classes": ["no_sub", "cdm", "axion"], "data_preset": "model_ii",
        "pixel_scale": 0.101, "unit": "electron/s", "image_size": 16, "step": 2,
        "command": "lensenhance train ddpm --steps 2"})
    (run / "history.json").write_text(json.dumps({"step": 2, "wall_time_s": 3.0}))
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(publish, "WEIGHTS_DIR", weights)
    # no figures: the card would break the schema, and nothing is installed
    with pytest.raises(ValueError, match="metrics"):
        publish.publish_weights(run, "tiny-ddpm", task="generate")
    with pytest.raises(ValueError, match="not 'classify'"):
        publish.publish_weights(run, "tiny-ddpm", task="classify",
                                card_extra={"metrics": {"n": 1, "command": "x"}})
    assert not list(weights.iterdir())
    metrics = {"n": 50, "command": "lensenhance benchmark generate -n 50", "fd": 1.0,
               "fd_floor": 0.5}
    card = publish.publish_weights(run, "tiny-ddpm", task="generate",
                                   card_extra={"metrics": metrics})
    assert validate_card(card) == [] and card["steps"] == 2
    assert card["classes"] == ["no_sub", "cdm", "axion"] and card["image_size"] == 16
    assert card["schedule"]["parameterization"] == "v" and card["pixel_scale"] == 0.101
    assert models.list_pretrained(task="generate") == ["tiny-ddpm"]
    assert models.model_card("tiny-ddpm") == card
    net = models.load_pretrained("tiny-ddpm")
    assert net.config == unet.config and net.metadata["task"] == "generate"
    with pytest.raises(FileExistsError):
        publish.publish_weights(run, "tiny-ddpm", task="generate",
                                card_extra={"metrics": metrics})


@pytest.mark.parametrize("name", SHIPPED_SR)
def test_shipped_weights_beat_bicubic_on_a_fixed_set(name, sr_benchmark_sample):
    card = le.model_card(name)
    lr, hr = sr_benchmark_sample(card["scale"])
    model = le.Enhancer.from_pretrained(name).enhance(lr)
    bicubic = le.Enhancer.interpolation("bicubic", scale=card["scale"]).enhance(lr)
    psnr_model = batch_metrics(model, hr)["psnr"].mean()
    psnr_bicubic = batch_metrics(bicubic, hr)["psnr"].mean()
    assert psnr_model > psnr_bicubic + 1.0


def test_corrupt_weights_are_refused(tmp_path, monkeypatch):
    if not SHIPPED:
        pytest.skip("no shipped weights")
    name = SHIPPED[0]
    import shutil

    from lensenhance import pretrained as models

    shutil.copy(WEIGHTS_DIR / f"{name}.json", tmp_path / f"{name}.json")
    data = bytearray((WEIGHTS_DIR / f"{name}.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / f"{name}.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(OSError, match="SHA-256"):
        load_pretrained(name)


@pytest.fixture(scope="module")
def sr_benchmark_sample():
    from lensenhance.benchmark.sr import BENCHMARK_SEED
    from lensenhance.training.data import simulated_pairs

    cache = {}

    def sample(scale):
        if scale not in cache:
            ds = simulated_pairs(6, scale=scale, seed=BENCHMARK_SEED, progress=False)
            cache[scale] = (ds["lr"].values, ds["hr"].values)
        return cache[scale]

    return sample


@pytest.mark.parametrize("name", le.list_pretrained(task="features"))
def test_shipped_feature_network_predicts_theta_e(name):
    """The feature network is a working theta_E regressor on normalised HR images."""
    from lensenhance.benchmark.sr import BENCHMARK_SEED
    from lensenhance.training import predict_regressor
    from lensenhance.training.data import normalize_pairs, simulated_pairs

    ds = simulated_pairs(6, scale=2, seed=BENCHMARK_SEED, progress=False)
    _, hr = normalize_pairs(ds["lr"].values, ds["hr"].values, scale=2)
    net = load_pretrained(name)
    stats = {k: float(net.metadata[k]) for k in ("target_mean", "target_std")}
    error = predict_regressor(net, hr, stats) - ds["theta_E"].values
    assert np.mean(np.abs(error)) < 0.2  # arcsec; theta_E itself spans about 0.7-2"
    features = le.pretrained.load_feature_network(name)(torch.from_numpy(hr[:2, None]))
    assert features.shape[0] == 2 and not features.requires_grad


def test_best_model_rule_skips_models_for_noise_free_images():
    from lensenhance.demo import best_pretrained
    from lensenhance.pretrained import best_by_validation, model_card, sr_models_for

    candidates = sr_models_for(scale=2)
    assert "edsr-lens64-x2" not in candidates  # trained for a generator's noise-free images
    assert "edsr-x2" in candidates and "edsr-x4" not in candidates
    best = best_pretrained(scale=2)
    assert best == best_by_validation(candidates)
    assert model_card(best)["val_psnr_normalised"] == max(
        model_card(name)["val_psnr_normalised"] for name in candidates)
    assert best_by_validation(["diffusion-sr-x2"]) is None  # no validation PSNR: no candidate
