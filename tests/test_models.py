"""The shipped weights: each loads by name, matches its card, and beats bicubic."""

import numpy as np
import pytest
import torch

import lensenhance as le
import lensenhance.models
from lensenhance.metrics import batch_metrics
from lensenhance.models import WEIGHTS_DIR, file_sha256, load_pretrained

SHIPPED = le.list_pretrained()
SHIPPED_SR = le.list_pretrained(task="sr")


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
    for key in ("task", "architecture", "scale", "preset", "degradation", "command", "steps",
                "wall_time_s", "metrics", "sha256"):
        assert key in card, key
    assert card["command"].startswith(f"lensenhance train {card['task']}")
    assert file_sha256(WEIGHTS_DIR / f"{name}.safetensors") == card["sha256"]
    assert (WEIGHTS_DIR / f"{name}.safetensors").stat().st_size < 8 * 2**20


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

    from lensenhance import models

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
    from lensenhance.datasets import simulated_pairs

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
    from lensenhance.datasets import normalize_pairs, simulated_pairs
    from lensenhance.training import predict_regressor

    ds = simulated_pairs(6, scale=2, seed=BENCHMARK_SEED, progress=False)
    _, hr = normalize_pairs(ds["lr"].values, ds["hr"].values, scale=2)
    net = load_pretrained(name)
    stats = {k: float(net.metadata[k]) for k in ("target_mean", "target_std")}
    error = predict_regressor(net, hr, stats) - ds["theta_E"].values
    assert np.mean(np.abs(error)) < 0.2  # arcsec; theta_E itself spans about 0.7-2"
    features = le.models.load_feature_network(name)(torch.from_numpy(hr[:2, None]))
    assert features.shape[0] == 2 and not features.requires_grad
