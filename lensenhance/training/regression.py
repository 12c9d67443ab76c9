"""Small regressors and classifiers on images: the theta_E network, the feature network.

Used by the ``sr`` benchmark's downstream regression, by the frozen network of the SR
feature loss and (through `fit_network`) by the lensing classifier whose features measure
generated images (`lensenhance.training.classifier`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._atomic import atomic_write_bytes
from .._device import resolve_device
from ..nn.ensemble import d4_transform
from ..nn.weights import export_weights
from .checkpoints import json_bytes
from .loop import HISTORY_FILE, WEIGHTS_FILE

__all__ = ["fit_network", "train_regressor", "predict_regressor", "train_feature_network"]


def fit_network(net, x, y, loss_fn, *, epochs, batch_size, lr, seed, progress=False,
                desc="train", validate=None):
    """The loop of the small regressors and classifiers: AdamW, one-cycle, D4 batches.

    Every epoch visits the images in a new random order; each batch is rotated by a
    random multiple of 90 degrees and flipped with probability 1/2 (the targets must not
    depend on orientation). The learning rate follows `torch.optim.lr_scheduler.OneCycleLR`
    up to ``lr``; AdamW with weight decay 1e-4.

    Parameters
    ----------
    net : torch.nn.Module
        The network, on its device (the batches are moved there).
    x : torch.Tensor, shape (n, 1, y, x)
        Inputs (square images).
    y : torch.Tensor, shape (n, ...)
        Targets, indexed like ``x``.
    loss_fn : callable
        ``loss_fn(net(x_batch), y_batch)`` -> scalar tensor.
    epochs, batch_size, lr : int, int, float
        Schedule.
    seed : int
        Seeds the batch order and the augmentation (the caller seeds the initial weights).
    progress : bool, optional
        Show a tqdm bar over epochs.
    desc : str, optional
        Label of the bar.
    validate : callable, optional
        ``validate(net)`` -> dict of figures, called in eval mode after every epoch.

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, the mean training ``loss``, the last ``lr`` and
        the figures of ``validate``. The network is left in eval mode.
    """
    from tqdm.auto import tqdm

    device = next(net.parameters()).device
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = int(np.ceil(len(x) / batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
                                                   total_steps=epochs * per_epoch)
    rng = np.random.default_rng(seed + 1)
    history = []
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress):
        net.train()
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            k, flip = int(rng.integers(4)), rng.random() < 0.5
            # rotate by k, then flip: the D4 element (-k, flip)
            xb = d4_transform(x[batch].to(device), -k % 4 if flip else k, flip)
            loss = loss_fn(net(xb), y[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        entry = {"epoch": epoch + 1, "loss": total / len(x),
                 "lr": float(schedule.get_last_lr()[0])}
        net.eval()
        if validate is not None:
            entry.update(validate(net))
        history.append(entry)
    net.eval()
    return history


def train_regressor(images, targets, *, epochs=20, batch_size=32, lr=2e-3, seed=0,
                    device=None, width=16, progress=False):
    """Train a `~lensenhance.nn.resnet.SmallResNet` to regress one number per image.

    Used by the ``sr`` benchmark's downstream task (the Einstein radius from HR, from
    interpolated LR and from super-resolved LR images) and to build the frozen network of
    the SR feature loss. Random rotations and flips augment the images (the targets must
    not depend on orientation); AdamW with a one-cycle schedule (`fit_network`).

    Parameters
    ----------
    images : array-like, shape (n, y, x)
        Preprocessed images (the caller chooses the normalisation).
    targets : array-like, shape (n,)
    epochs, batch_size, lr, seed : optional
        Schedule; ``seed`` fixes the initial weights and the batches.

    Returns
    -------
    net : SmallResNet
        In eval mode.
    stats : dict
        ``target_mean`` and ``target_std``: the network predicts standardised targets.
    """
    from ..nn.resnet import SmallResNet

    device = resolve_device(device)
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    target = np.asarray(targets, dtype=np.float32)
    if len(target) != len(x) or len(x) < 2:
        raise ValueError(f"need matching images and targets (at least 2), got {len(x)} "
                         f"images and {len(target)} targets")
    stats = {"target_mean": float(target.mean()), "target_std": float(target.std() + 1e-12)}
    y = torch.from_numpy((target - stats["target_mean"]) / stats["target_std"])[:, None]

    torch.manual_seed(seed)
    net = SmallResNet(1, width=width).to(device)
    fit_network(net, x, y, F.mse_loss, epochs=epochs, batch_size=batch_size, lr=lr,
                seed=seed, progress=progress, desc="regressor")
    return net.eval(), stats


def predict_regressor(net, images, stats, *, batch_size=256):
    """Predictions of a `train_regressor` network, in the targets' units."""
    device = next(net.parameters()).device
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    with torch.inference_mode():
        out = torch.cat([net(x[i:i + batch_size].to(device)).cpu()
                         for i in range(0, len(x), batch_size)]).numpy()[:, 0]
    return out * stats["target_std"] + stats["target_mean"]


def train_feature_network(out_dir, *, n=2000, n_val=200, epochs=15, preset="model_i",
                          scale=2, seed=0, data_seed=2, overwrite=False, progress=True,
                          metadata=None):
    """Train the frozen network of the SR feature loss: a theta_E regressor on HR images.

    The images are simulated HR images normalised exactly as `train_sr` sees its targets
    (`lensenhance.training.data.normalize_pairs`), so that the feature loss compares features
    of the kind of image the network was trained on. Writes ``weights.safetensors`` (the
    network, its target statistics and ``task="features"`` in the metadata) and
    ``history.json`` to ``out_dir``.

    Returns
    -------
    dict
        ``val_mae`` (arcsec) on ``n_val`` held-out images, ``wall_time_s``, ``config`` and
        the path of the weights.
    """
    from .data import normalize_pairs, simulated_pairs

    out_dir = Path(out_dir)
    weights_path = out_dir / WEIGHTS_FILE
    if weights_path.exists() and not overwrite:
        raise FileExistsError(f"{weights_path} exists")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ds = simulated_pairs(n + n_val, preset=preset, scale=scale, seed=data_seed,
                         progress=progress)
    _, hr = normalize_pairs(ds["lr"].values, ds["hr"].values, scale=scale)
    theta_e = ds["theta_E"].values.astype(np.float32)
    net, stats = train_regressor(hr[:n], theta_e[:n], epochs=epochs, seed=seed,
                                 progress=progress)
    val_mae = float(np.mean(np.abs(predict_regressor(net, hr[n:], stats) - theta_e[n:])))
    result = {"val_mae": val_mae, "n_train": n, "n_val": n_val, "epochs": epochs,
              "wall_time_s": time.perf_counter() - started, "config": net.config,
              "weights": str(weights_path)}
    export_weights(net, weights_path, overwrite=overwrite,
                   metadata={"task": "features", "data_preset": preset, **stats,
                             "val_mae": val_mae, **(metadata or {})})
    atomic_write_bytes(out_dir / HISTORY_FILE, json_bytes(result))
    return result
