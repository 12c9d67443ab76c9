"""Tests of lensenhance.training: pair sources, losses, the training loop, checkpoints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import lensenhance.nn
from lensenhance.nn import SR_ARCHITECTURES, build_sr_model, load_weights, read_weights_metadata
from lensenhance.training import (
    ArrayPairSource,
    ExponentialMovingAverage,
    PairSource,
    SRLoss,
    export_weights,
    latest_checkpoint,
    ssim,
    train_sr,
    validation_psnr,
)

torch.set_num_threads(1)

TINY_EDSR = {"n_blocks": 2, "channels": 16}


def smooth_pairs(n=8, size=32, scale=2, seed=0):
    """Random smooth HR images and their block-averaged LR versions."""
    rng = np.random.default_rng(seed)
    hr = gaussian_filter(rng.normal(size=(n, size, size)), (0, 2, 2)).astype(np.float32)
    hr /= hr.std()
    small = size // scale
    lr = hr.reshape(n, small, scale, small, scale).mean(axis=(2, 4))
    return lr, hr


@pytest.fixture(scope="module")
def pairs():
    return smooth_pairs()


def block_mean(images, scale):
    b, c, h, w = images.shape
    return images.reshape(b, c, h // scale, scale, w // scale, scale).mean(axis=(3, 5))


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("kind", ["stack", "channel axis", "list"])
def test_array_pair_source_cuts_aligned_patches(pairs, kind):
    lr, hr = pairs
    if kind == "channel axis":
        lr, hr = lr[:, None], hr[:, None]
    elif kind == "list":
        lr, hr = list(lr), list(hr)
    source = ArrayPairSource(lr, hr, patch_size=12, scale=2)
    assert isinstance(source, PairSource) and len(source) == 8
    assert "patch_size=12" in repr(source)
    lr_batch, hr_batch = source.sample(16, np.random.default_rng(1))
    assert lr_batch.shape == (16, 1, 6, 6) and hr_batch.shape == (16, 1, 12, 12)
    assert lr_batch.dtype == hr_batch.dtype == np.float32
    # LR is still the block mean of HR after cropping, rotating and flipping
    np.testing.assert_allclose(lr_batch, block_mean(hr_batch, 2), atol=1e-6)
    again = source.sample(16, np.random.default_rng(1))
    np.testing.assert_array_equal(again[1], hr_batch)
    assert not np.array_equal(source.sample(16, np.random.default_rng(2))[1], hr_batch)


def test_array_pair_source_augments_with_d4(pairs):
    lr, hr = pairs
    plain = ArrayPairSource(lr[:1], hr[:1], patch_size=None, scale=2, augment=False)
    augmented = ArrayPairSource(lr[:1], hr[:1], patch_size=None, scale=2)
    image = hr[0]
    variants = {np.rot90(im, k).tobytes() for im in (image, image[:, ::-1]) for k in range(4)}
    seen = {patch[0].tobytes() for patch in augmented.sample(64, np.random.default_rng(0))[1]}
    assert seen == variants
    np.testing.assert_array_equal(plain.sample(3, np.random.default_rng(0))[1][:, 0],
                                  np.repeat(image[None], 3, axis=0))


@pytest.mark.parametrize(("lr_shape", "hr_shape", "patch", "message"), [
    ((4, 8, 8), (3, 16, 16), 8, "different numbers"),
    ((4, 8, 8), (4, 16, 15), 8, "not 2 x"),
    ((4, 8, 8), (4, 16, 16), 7, "multiple of scale"),
    ((4, 8, 8), (4, 16, 16), 18, "exceeds"),
    ((4, 8, 8, 2), (4, 16, 16), 8, "image stack"),
])
def test_array_pair_source_rejects_bad_input(lr_shape, hr_shape, patch, message):
    with pytest.raises(ValueError, match=message):
        ArrayPairSource(np.zeros(lr_shape), np.zeros(hr_shape), patch_size=patch, scale=2)


def test_array_pair_source_rejects_nan():
    lr = np.zeros((2, 8, 8))
    lr[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="lr contains NaN"):
        ArrayPairSource(lr, np.zeros((2, 16, 16)), patch_size=8, scale=2)


# ----------------------------------------------------------------------------- loss, metrics


def test_ssim_matches_skimage():
    rng = np.random.default_rng(3)
    target = gaussian_filter(rng.normal(size=(2, 24, 20)), (0, 1, 1)).astype(np.float32)
    pred = (target + 0.1 * rng.normal(size=target.shape)).astype(np.float32)
    ours = ssim(torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None])
    for i in range(2):
        data_range = float(target[i].max() - target[i].min())
        expected = structural_similarity(
            target[i], pred[i], data_range=data_range, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
        assert float(ours[i]) == pytest.approx(expected, abs=1e-4)
    same = torch.from_numpy(target)[:, None]
    torch.testing.assert_close(ssim(same, same), torch.ones(2))


def test_ssim_loss_is_differentiable():
    target = torch.rand(2, 1, 16, 16)
    pred = torch.rand(2, 1, 16, 16, requires_grad=True)
    loss, terms = SRLoss({"l1": 1, "mse": 1, "ssim": 1})(pred, target)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert set(terms) == {"l1", "mse", "ssim"}
    expected = terms["l1"] + terms["mse"] + terms["ssim"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("weights", "error"), [
    ({"l2": 1}, "unknown loss terms"),
    ({"l1": -1}, ">= 0"),
    ({"l1": 0}, "positive"),
    ({"feature": 1}, "feature_net"),
])
def test_loss_weights_are_checked(weights, error):
    with pytest.raises(ValueError, match=error):
        SRLoss(weights)


def test_validation_psnr_matches_skimage():
    rng = np.random.default_rng(4)
    hr = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    noisy = hr + 0.05 * rng.normal(size=hr.shape).astype(np.float32)

    class Fixed(torch.nn.Module):  # returns the noisy images whatever the input
        def forward(self, x):
            return torch.from_numpy(noisy)[: len(x)]

    value = validation_psnr(Fixed(), torch.zeros(3, 1, 4, 4), torch.from_numpy(hr),
                            batch_size=8)
    expected = np.mean([peak_signal_noise_ratio(h, n, data_range=float(h.max() - h.min()))
                        for h, n in zip(hr, noisy)])
    assert value == pytest.approx(expected, rel=1e-5)


def test_ema_follows_model_with_warmup():
    model = torch.nn.Linear(2, 1)
    ema = ExponentialMovingAverage(model, decay=0.9)
    old = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # warm-up decay 2/11
    torch.testing.assert_close(ema.module.weight, old + 9 / 11)
    assert not any(p.requires_grad for p in ema.module.parameters())
    follower = ExponentialMovingAverage(model, decay=0.0)
    follower.update(model)
    torch.testing.assert_close(follower.module.weight, model.weight)


# ----------------------------------------------------------------------------- training


def test_training_lowers_the_loss(pairs, tmp_path):
    lr, hr = pairs
    history = train_sr(model="edsr", model_overrides=TINY_EDSR, data=(lr, hr), steps=50,
                       out_dir=tmp_path, batch_size=4, patch_size=16, lr=1e-3,
                       val_data=(lr[:2], hr[:2]), val_every=25, checkpoint_every=25,
                       log_every=5, progress=False)
    losses = [entry["loss"] for entry in history["train"]]
    assert len(losses) == 10 and history["step"] == 50
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:2])
    assert [v["step"] for v in history["val"]] == [25, 50]
    assert history["val"][-1]["psnr"] > history["val"][0]["psnr"]
    lrs = [entry["lr"] for entry in history["train"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(1e-5)
    # no pickle: only safetensors and JSON files, and the latest checkpoint alone
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-00000050.json", "checkpoint-00000050.safetensors",
                     "history.json", "weights.safetensors"]
    assert json.loads((tmp_path / "history.json").read_text())["step"] == 50
    model = load_weights(history["weights"])
    assert model.metadata["train_args"] == history_args(tmp_path)


def history_args(out_dir):
    return json.loads(latest_checkpoint(out_dir).read_text())["args"]


class Interrupted(RuntimeError):
    pass


class InterruptingSource:
    """A pair source that fails after ``calls`` batches, like a killed job."""

    def __init__(self, inner, calls):
        self.inner, self.calls, self.scale = inner, calls, inner.scale

    def __repr__(self):
        # The same data as the inner source: resuming with it must be accepted.
        return repr(self.inner)

    def sample(self, batch_size, rng):
        if self.calls == 0:
            raise Interrupted("stop")
        self.calls -= 1
        return self.inner.sample(batch_size, rng)


def test_resume_reproduces_uninterrupted_run(pairs, tmp_path):
    lr, hr = pairs
    source = ArrayPairSource(lr, hr, patch_size=12, scale=2)
    options = dict(model="srresnet", model_overrides={"n_blocks": 1, "channels": 8},
                   steps=10, batch_size=3, lr=1e-3, val_data=(lr[:2], hr[:2]), val_every=4,
                   checkpoint_every=5, log_every=3, progress=False, seed=7,
                   loss_weights={"l1": 1, "mse": 0.5, "ssim": 0.2})
    straight = train_sr(data=source, out_dir=tmp_path / "straight", **options)

    with pytest.raises(Interrupted):
        train_sr(data=InterruptingSource(source, 7), out_dir=tmp_path / "resumed", **options)
    assert latest_checkpoint(tmp_path / "resumed").name == "checkpoint-00000005.json"
    resumed = train_sr(data=source, out_dir=tmp_path / "resumed", resume=True, **options)

    for key in ("train", "val", "step"):
        assert resumed[key] == straight[key]
    for name in ("weights.safetensors", "checkpoint-00000010.safetensors"):
        a = load_file(tmp_path / "straight" / name)
        b = load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    checkpoint = load_file(tmp_path / "resumed" / "checkpoint-00000010.safetensors")
    assert {k.split(".")[0] for k in checkpoint} == {"model", "ema", "optimizer", "rng"}


def test_keyboard_interrupt_keeps_the_work_done(pairs, tmp_path):
    lr, hr = pairs
    source = ArrayPairSource(lr, hr, patch_size=8, scale=2)

    class CtrlC(InterruptingSource):
        def sample(self, batch_size, rng):
            if self.calls == 0:
                raise KeyboardInterrupt
            return super().sample(batch_size, rng)

    options = dict(model="edsr", model_overrides=TINY_EDSR, steps=10, batch_size=2,
                   checkpoint_every=100, out_dir=tmp_path, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_sr(data=CtrlC(source, 3), **options)
    assert latest_checkpoint(tmp_path).name == "checkpoint-00000003.json"
    assert train_sr(data=source, resume=True, **options)["step"] == 10


def test_existing_run_is_not_overwritten(pairs, tmp_path):
    lr, hr = pairs
    options = dict(model="edsr", model_overrides=TINY_EDSR, data=(lr, hr), steps=2,
                   batch_size=2, patch_size=8, out_dir=tmp_path, progress=False)
    train_sr(**options)
    with pytest.raises(FileExistsError, match="resume=True"):
        train_sr(**options)
    done = train_sr(**options, resume=True)  # nothing left to do
    assert done["step"] == 2 and len(done["train"]) == 1
    with pytest.raises(ValueError, match="use another out_dir"):
        train_sr(**{**options, "model_overrides": {"n_blocks": 1, "channels": 16}},
                 resume=True)
    restarted = train_sr(**{**options, "steps": 3}, overwrite=True)
    assert restarted["step"] == 3
    assert latest_checkpoint(tmp_path).name == "checkpoint-00000003.json"
    assert not (tmp_path / "checkpoint-00000002.json").exists()


def test_feature_loss_uses_a_frozen_network(pairs, tmp_path):
    lr, hr = pairs
    feature_net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    before = [p.clone() for p in feature_net.parameters()]
    history = train_sr(model="fsrcnn", preset="paper", data=(lr, hr), steps=3, batch_size=2,
                       patch_size=8, out_dir=tmp_path, progress=False, log_every=1,
                       loss_weights={"l1": 1, "feature": 0.5}, feature_net=feature_net)
    assert all(entry["feature"] >= 0 for entry in history["train"])
    assert all(torch.equal(a, b) for a, b in zip(before, feature_net.parameters()))


def test_train_sr_rejects_bad_arguments(pairs, tmp_path):
    lr, hr = pairs
    with pytest.raises(TypeError, match="PairSource"):
        train_sr(data=lr, steps=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="scale 4"):
        train_sr(data=ArrayPairSource(lr, hr, patch_size=8, scale=2), scale=4, steps=1,
                 out_dir=tmp_path)
    with pytest.raises(ValueError, match="steps"):
        train_sr(data=(lr, hr), steps=0, out_dir=tmp_path)
    with pytest.raises(TypeError, match="config"):
        train_sr(model=torch.nn.Conv2d(1, 1, 3), data=(lr, hr), steps=1, out_dir=tmp_path)


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", SR_ARCHITECTURES + ("bicubic",))
def test_export_and_load_round_trip(name, tmp_path):
    torch.manual_seed(5)
    model = build_sr_model(name, scale=2).eval()
    path = export_weights(model, tmp_path / "m.safetensors",
                          metadata={"command": "lensenhance train sr", "psnr": 31.5})
    loaded = lensenhance.nn.load_weights(path)  # the registry's entry point
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    meta = read_weights_metadata(path)
    assert meta["command"] == "lensenhance train sr" and json.loads(meta["psnr"]) == 31.5
    assert meta["config"] == model.config


def test_export_and_load_errors(tmp_path):
    model = build_sr_model("edsr", **TINY_EDSR)
    path = export_weights(model, tmp_path / "m.safetensors")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_weights(model, path)
    export_weights(model, path, overwrite=True)
    with pytest.raises(ValueError, match="reserved"):
        export_weights(model, tmp_path / "n.safetensors", metadata={"config": "x"})
    with pytest.raises(TypeError, match="config"):
        export_weights(torch.nn.Conv2d(1, 1, 1), tmp_path / "n.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_weights(tmp_path / "missing.safetensors")
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, bare)
    with pytest.raises(ValueError, match="no model config"):
        load_weights(bare)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(OSError, match="garbage.safetensors"):
        load_weights(garbage)


# ----------------------------------------------------------------------------- distributed


@pytest.mark.slow
def test_distributed_training_on_two_gloo_processes(pairs, tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    lr, hr = pairs
    np.savez(tmp_path / "pairs.npz", lr=lr, hr=hr)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "lensenhance", "-q", "train", "sr", "--model", "fsrcnn", "--size", "paper",
        "--data", str(tmp_path / "pairs.npz"), "--n-val", "2",
        "--steps", "4", "--batch-size", "2", "--patch-size", "8", "--val-every", "2",
        "--checkpoint-every", "2", "--out", str(out), "--device", "cpu",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("world size 2") == 1  # only rank 0 reports
    history = json.loads((out / "history.json").read_text())
    assert history["step"] == 4
    assert history["world_size"] == 2 and [v["step"] for v in history["val"]] == [2, 4]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint-00000004.json", "checkpoint-00000004.safetensors", "history.json",
        "weights.safetensors"]
    assert load_weights(out / "weights.safetensors").config["architecture"] == "fsrcnn"


def test_sigterm_checkpoints_and_resume_continues(tmp_path):
    """A training killed with SIGTERM keeps its last step; --resume goes on from it."""
    import signal
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(0)
    hr = rng.random((8, 16, 16)).astype(np.float32)
    lr = hr.reshape(8, 8, 2, 8, 2).sum(axis=(2, 4))
    np.savez(tmp_path / "pairs.npz", lr=lr, hr=hr)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lensenhance", "train", "sr", "--model", "fsrcnn",
               "--size", "paper", "--data", str(tmp_path / "pairs.npz"), "--n-val", "2",
               "--patch-size", "8", "--batch-size", "2", "--steps", "100000",
               "--checkpoint-every", "100000", "--val-every", "100000", "--out", str(out)]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    # Stop it once the progress bar shows steps done (a fixed wait is flaky on a busy CI).
    import re
    import threading

    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(
        lambda: process.stderr.read1(4096), b"")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not re.search(rb"\b[1-9]\d*/100000", b"".join(seen)[-4096:]):
        assert process.poll() is None, b"".join(seen).decode()[-3000:]
        assert time.monotonic() < deadline, "the training did not start"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    reader.join(timeout=10)
    assert process.returncode != 0
    checkpoints = sorted(out.glob("checkpoint-*.json"))
    assert len(checkpoints) == 1
    step = json.loads(checkpoints[0].read_text())["step"]
    assert step > 0
    assert not list(out.glob(".*tmp*"))
    resumed = subprocess.run(command + ["--resume", "--max-steps", str(step + 2)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "history.json").read_text())["step"] == step + 2
