"""Fixtures shared by several test modules: tiny trained generator and classifier."""

import numpy as np
import pytest

TINY_UNET = {"channels": [8, 16], "attention_levels": [1], "norm_groups": 4,
             "attention_head_dim": 8}


@pytest.fixture(scope="session")
def tiny_ddpm(tmp_path_factory):
    """A DDPM trained for a few steps on a handful of simulated Model II images."""
    import torch

    from lensenhance.training.diffusion import train_ddpm

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ddpm")
    history = train_ddpm(out_dir=out, n_train=6, n_val=3, steps=3, batch_size=2,
                         checkpoint_every=2, val_every=2, unet=TINY_UNET, progress=False,
                         metadata={"command": "test"})
    return out, history


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory):
    """A lensing classifier trained for one epoch on 12 random images."""
    from lensenhance.training.classifier import train_classifier

    rng = np.random.default_rng(0)
    images = rng.gamma(1.0, 0.05, size=(12, 64, 64)).astype(np.float32)
    labels = np.arange(12) % 3
    out = tmp_path_factory.mktemp("classifier")
    train_classifier(out, n=9, n_val=3, epochs=1, width=4, images=(images, labels),
                     progress=False)
    return out / "weights.safetensors"


@pytest.fixture(scope="session")
def tiny_posterior(tmp_path_factory):
    """A tiny RAUNet denoiser and a tiny residual diffusion UNet around it, as files.

    Untrained: for the plumbing (types, units, seeds, files), not for figures.
    """
    pytest.importorskip("diffusers")
    import torch

    from lensenhance.diffusion import NoiseSchedule
    from lensenhance.nn.raunet import RAUNet
    from lensenhance.nn.unet import DiffusionUNet
    from lensenhance.nn.weights import export_weights
    from lensenhance.pretrained import file_sha256

    folder = tmp_path_factory.mktemp("posterior")
    torch.manual_seed(0)
    base_path = export_weights(RAUNet(channels=(4, 8), blocks=1), folder / "base.safetensors",
                               task="denoise", metadata={"snr_range": [5.0, 50.0]})
    unet = DiffusionUNet(sample_size=16, cond_channels=3,
                         **{**TINY_UNET, "attention_levels": []})
    path = export_weights(unet, folder / "post.safetensors", task="posterior", metadata={
        "schedule": NoiseSchedule(parameterization="v").to_dict(), "scale": 1,
        "base_model": "base.safetensors", "base_sha256": file_sha256(base_path),
        "snr_range": [5.0, 50.0], "calibration": {"std_scale": 1.5}})
    return base_path, path
