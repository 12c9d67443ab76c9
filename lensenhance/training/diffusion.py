"""The diffusion task: noisy images at random steps, the min-SNR loss, a fixed validation.

`DiffusionTask` plugs a denoising network (`lensenhance.nn.unet.DiffusionUNet`) into the
one training loop; `train_ddpm` trains the class-conditional generator on simulated
noise-free lensing images. Every random number of a step (images, augmentation, diffusion
steps, noise, the guidance dropout of the labels) comes from the loop's per-step numpy
generator, so a resumed run is exactly an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_int
from ..diffusion import NoiseSchedule, diffusion_loss
from .loop import train

__all__ = ["DiffusionTask", "train_ddpm", "DDPM_UNET", "validation_loss"]

#: The UNet of the shipped generators: 1.7 M parameters, attention at 16 x 16 only
#: (about 0.9 s per batch of 16 at 64 x 64 on one CPU core).
DDPM_UNET = {"channels": [16, 32, 64, 96], "attention_levels": [2], "layers_per_block": 1,
             "norm_groups": 8, "attention_head_dim": 32}

# The validation draws its steps and noise from a stream apart from every training step.
_VALIDATION_STREAM = 2**32 - 1


@torch.no_grad()
def validation_loss(loss, net, tensors, device, batch_size):
    """``{"val_loss"}``: the mean of ``loss(net, *batch)`` over fixed validation tensors.

    ``tensors`` (or None: no validation) are batched along their first axis; the
    network is evaluated in eval mode and left in the mode it was in.
    """
    if tensors is None:
        return None
    was_training = net.training
    net.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(tensors[0]), batch_size):
            part = [v[start:start + batch_size].to(device) for v in tensors]
            total += float(loss(net, *part)) * len(part[0])
            count += len(part[0])
    finally:
        net.train(was_training)
    return {"val_loss": total / count}


class DiffusionTask:
    """Denoising-diffusion training as a task of the training loop.

    Parameters
    ----------
    source : lensenhance.training.data.ArrayImageSource
        Training images (scaled) with class labels.
    schedule : lensenhance.diffusion.NoiseSchedule
    weighting : {'min_snr', 'uniform'}, optional
    gamma : float, optional
        Min-SNR clipping.
    n_classes : int, optional
        Number of classes (0: unconditional); label ``n_classes`` is the null class.
    label_dropout : float, optional
        Probability of replacing a label by the null class (classifier-free guidance).
    validation : tuple, optional
        ``(images, labels)`` held out; the validation figure is their loss at fixed steps
        and noise, the same at every validation.
    metadata : dict, optional
        What the exported weights carry besides task and schedule (the scaling, the
        classes, the pixel scale and unit of the data).
    """

    name = "diffusion"

    def __init__(self, source, *, schedule: NoiseSchedule, weighting: str = "min_snr",
                 gamma: float = 5.0, n_classes: int = 0, label_dropout: float = 0.1,
                 validation=None, metadata: dict | None = None):
        if not 0 <= label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.source = source
        self.schedule = schedule
        self.weighting, self.gamma = weighting, float(gamma)
        self.n_classes = check_int(n_classes, "n_classes", 0)
        self.label_dropout = float(label_dropout) if n_classes else 0.0
        self.metadata = dict(metadata or {})
        self.validation = None
        if validation is not None:
            images, labels = validation
            images = torch.as_tensor(np.asarray(images, np.float32))[:, None]
            rng = np.random.default_rng([0, _VALIDATION_STREAM])
            t = rng.integers(0, schedule.num_train_timesteps, size=len(images))
            noise = rng.standard_normal(images.shape).astype(np.float32)
            self.validation = (images, torch.as_tensor(np.asarray(labels)).long(),
                               torch.from_numpy(t), torch.from_numpy(noise))

    def __repr__(self) -> str:
        return (f"DiffusionTask({self.source!r}, {self.schedule.parameterization}-prediction, "
                f"{self.weighting}, n_classes={self.n_classes})")

    def config(self) -> dict:
        return {"source": repr(self.source), "schedule": self.schedule.to_dict(),
                "weighting": self.weighting, "gamma": self.gamma,
                "n_classes": self.n_classes, "label_dropout": self.label_dropout,
                "metadata": self.metadata}

    def batch(self, batch_size, rng):
        images, labels = self.source.sample(batch_size, rng)
        t = rng.integers(0, self.schedule.num_train_timesteps, size=batch_size)
        noise = rng.standard_normal(images.shape).astype(np.float32)
        if self.n_classes:
            labels = np.where(rng.random(batch_size) < self.label_dropout, self.n_classes,
                              labels)
        return (torch.from_numpy(images), torch.from_numpy(labels).long(),
                torch.from_numpy(t), torch.from_numpy(noise))

    def _loss(self, net, x0, labels, t, noise):
        x_t = self.schedule.add_noise(x0, noise, t)
        output = net(x_t, t, class_labels=labels if self.n_classes else None)
        return diffusion_loss(output, x0, noise, t, self.schedule, weighting=self.weighting,
                              gamma=self.gamma)

    def loss(self, net, batch):
        loss = self._loss(net, *batch)
        return loss, {}

    def validate(self, net, device, batch_size):
        return validation_loss(self._loss, net, self.validation, device, batch_size)

    def weights_metadata(self) -> dict:
        return {"task": "generate", "schedule": self.schedule.to_dict(),
                "n_classes": self.n_classes, **self.metadata}


def train_ddpm(*, out_dir, preset: str = "model_ii", n_train: int = 9000, n_val: int = 240,
               data_seed: int = 3, steps: int = 30000, batch_size: int = 16,
               lr: float = 2e-4, ema_decay: float = 0.9995, val_every: int = 500,
               checkpoint_every: int = 250, parameterization: str = "v",
               beta_schedule: str = "squaredcos_cap_v2", label_dropout: float = 0.1,
               softening: float | None = None, maximum: float | None = None,
               unet: dict | None = None, num_pix: int | None = None, binned: int = 1,
               resume: bool = False, overwrite: bool = False, seed: int = 0,
               max_steps: int | None = None, workers: int = 1, progress: bool = True,
               device=None, metadata: dict | None = None) -> dict:
    """Train a class-conditional lensing-image generator.

    The defaults are ``ddpm-lens64``'s recipe; the card of each shipped generator holds
    the command that trained it.

    Images: the simulator's noise-free ``hr`` images of ``preset`` (Model II: 64 x 64 at
    0.101"/px), the three classes in equal parts, asinh-scaled
    (`~lensenhance.predict.normalization.AsinhScaling`); held-out validation images from another
    seed. The simulated images are cached in ``out_dir`` for resumed runs.

    Parameters
    ----------
    out_dir : path-like
        Run folder (checkpoints, weights, history, the data cache).
    n_train, n_val, data_seed : int
        Training and validation images and the simulation seed (validation uses
        ``data_seed + 10000``).
    steps, batch_size, lr, ema_decay, val_every, checkpoint_every, seed, max_steps
        As for `lensenhance.training.train`.
    parameterization : {'v', 'epsilon', 'x0'}
    beta_schedule : str
        A diffusers beta schedule (1000 steps).
    label_dropout : float
        Probability of training a sample unconditionally (classifier-free guidance).
    softening, maximum : float, optional
        The asinh scaling of the images (data unit). Default: 0.01 and 20 for the
        physical presets; for the DeepLense presets, whose fluxes span other ranges, the
        training images' median peak and 0.5 % of it (the classifier's stretch, so the
        generator sees what `~lensenhance.classify.LensClassifier` sees).
    unet : dict, optional
        `~lensenhance.nn.unet.DiffusionUNet` arguments replacing `DDPM_UNET`.
    num_pix, binned : int, optional
        The preset's field in its own pixels, and the blocks the images are summed over
        (`~lensenhance.training.data.generation_images`): ``preset='deeplense_model_i',
        num_pix=128, binned=2`` trains the 64 x 64 half of a chain whose super-resolution
        model (trained on the preset's noise-free pairs) gives 128 x 128 Model I images.

    Returns
    -------
    dict
        The history of `lensenhance.training.train`.
    """
    from pathlib import Path

    from ..nn.unet import DiffusionUNet
    from ..predict.normalization import AsinhScaling
    from .data import CLASSES, ArrayImageSource, default_scaling, generation_images

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = {"num_pix": num_pix, "binned": binned}
    images, labels, attrs = generation_images(n_train, preset=preset, seed=data_seed,
                                              workers=workers, progress=progress,
                                              cache=out_dir / "train_images.npz", truth=False,
                                              **grid)
    scaling = AsinhScaling(**default_scaling(images, preset, softening=softening,
                                             maximum=maximum))
    val_images, val_labels, _ = generation_images(n_val, preset=preset,
                                                  seed=data_seed + 10_000, workers=workers,
                                                  progress=False,
                                                  cache=out_dir / "val_images.npz",
                                                  truth=False, **grid)
    schedule = NoiseSchedule(parameterization=parameterization, beta_schedule=beta_schedule)
    torch.manual_seed(seed)
    size = images.shape[-1]
    net = DiffusionUNet(sample_size=size, n_classes=len(CLASSES),
                        **{**DDPM_UNET, **(unet or {})})
    task = DiffusionTask(
        ArrayImageSource(scaling.apply(images), labels), schedule=schedule,
        n_classes=len(CLASSES), label_dropout=label_dropout,
        validation=(scaling.apply(val_images), val_labels),
        metadata={"scaling": scaling.to_dict(), "classes": list(CLASSES),
                  "data_preset": preset, "pixel_scale": attrs["pixel_scale"],
                  "unit": attrs["unit"], "image_size": int(size),
                  **({} if num_pix is None else {"data_num_pix": int(num_pix)}),
                  **({} if binned == 1 else {"binned": int(binned)})})
    return train(net, task, steps=steps, out_dir=out_dir, batch_size=batch_size, lr=lr,
                 weight_decay=0.0, ema_decay=ema_decay, grad_clip=1.0, val_every=val_every,
                 checkpoint_every=checkpoint_every, log_every=10, resume=resume,
                 overwrite=overwrite, seed=seed, progress=progress, device=device,
                 metadata=metadata, max_steps=max_steps,
                 extra_config={"n_train": n_train, "n_val": n_val, "data_seed": data_seed})
