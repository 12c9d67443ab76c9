"""The lensing classifier (no_sub / cdm / axion) whose features measure generated images.

A `~lensenhance.nn.resnet.SmallResNet` trained on noise-free simulated images (Model II by
default, the generator's training data) to tell the three substructure classes apart. Its
pooled penultimate features are the space in which the ``generate`` benchmark computes
Frechet and kernel distances (`lensenhance.evaluate.metrics.frechet_distance`,
`lensenhance.evaluate.metrics.kernel_distance`) between generated and real images.

The classifier sees flux images through a fixed, stored stretch
(`~lensenhance.predict.normalization.AsinhScaling`, the generator's own by default), so real and
generated images, both in the simulator's unit, go through the same transform; the
stretch is written into the weights file and `classifier_features` applies it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._atomic import atomic_write_bytes
from .._device import machine_description, resolve_device
from .._validation import check_int
from ..nn.weights import export_weights
from .checkpoints import json_bytes
from .loop import HISTORY_FILE, WEIGHTS_FILE
from .regression import fit_network

__all__ = ["train_classifier", "classifier_features", "classifier_predict", "precise_batchnorm",
           "classifier_truth",
           "DEFAULT_SCALING", "IMAGES_FILE"]

#: Input stretch of the classifier, as ``AsinhScaling.to_dict()``: the generator's
#: training stretch (`lensenhance.training.diffusion.train_ddpm`'s defaults).
DEFAULT_SCALING = {"kind": "asinh", "softening": 0.01, "maximum": 20.0}

#: The cache of simulated training images inside ``out_dir``.
IMAGES_FILE = "train_images.npz"


def _scaling(value):
    """An `AsinhScaling` from itself, its dict or its JSON text."""
    from ..predict.normalization import AsinhScaling

    if isinstance(value, AsinhScaling):
        return value
    if isinstance(value, str):  # weights-file metadata holds JSON text
        value = json.loads(value)
    if not isinstance(value, dict):
        raise TypeError(f"scaling must be an AsinhScaling or its dict, got "
                        f"{type(value).__name__}")
    return AsinhScaling.from_dict(value)


def _split(labels, n_val, seed):
    """Indices (train, val) with every class in the same share in both parts."""
    rng = np.random.default_rng(seed)
    # Each image's position within its shuffled class, as a fraction: taking the
    # smallest fractions first draws the classes in proportion.
    rank = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[rng.permutation(members)] = np.arange(len(members)) / len(members)
    order = np.lexsort((labels, rank))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_classifier(out_dir, *, n=6000, n_val=600, epochs=30, preset="model_ii", seed=0,
                     data_seed=11, batch_size=64, lr=2e-3, width=16, scaling=None,
                     images=None, truth=None, workers=1, device=None, overwrite=False,
                     progress=True, metadata=None):
    """Train the lensing classifier and write its weights and history to ``out_dir``.

    A `~lensenhance.nn.resnet.SmallResNet` with one output per class of
    `lensenhance.training.data.CLASSES` and, for simulated images, one per rotation-invariant
    truth parameter (`lensenhance.training.data.INVARIANT_TRUTH`: Einstein radius, ellipticity,
    shear, lens and source magnitudes and sizes, source offset), standardised. The
    substructure classes alone are hard to tell apart in noise-free 64 x 64 images, and a
    network that cannot tell them apart learns features that say little about an image;
    the regression makes the features describe the lens and the source, which is what
    the distances between generated and simulated images must see. Trained with
    cross-entropy plus the mean squared error of the standardised parameters, on stretched
    flux images,
    random rotations by multiples of 90 degrees and flips, AdamW and a one-cycle schedule
    (`~lensenhance.training.regression.fit_network`). Writes ``weights.safetensors``
    (``task="classify"``, the classes, the input stretch, the validation accuracy and
    ``metadata``) and ``history.json`` (per-epoch loss and validation figures, the
    confusion matrix).

    Parameters
    ----------
    out_dir : str or path-like
        Output folder (created). It also caches the simulated images
        (``train_images.npz``), so a rerun does not simulate again.
    n, n_val : int, optional
        Training and held-out validation images (classes in equal parts in both).
    epochs, batch_size, lr : optional
        Schedule.
    preset : str, optional
        Simulation preset of the images (the generator's, ``"model_ii"``).
    seed : int, optional
        Seeds the initial weights, the batch order and the augmentation.
    data_seed : int, optional
        Seeds the simulation and the train/validation split.
    width : int, optional
        Channels of the network's first stage.
    scaling : AsinhScaling or dict, optional
        Input stretch; default `DEFAULT_SCALING`, or for a ``deeplense_*`` preset an
        asinh stretch whose maximum is the training images' median peak.
    images : (array-like, array-like), optional
        Flux images ``(n + n_val, y, x)`` (square) and their labels (indices into
        `CLASSES`) to use instead of simulating; ``preset`` is then only recorded.
    truth : dict of array-like, optional
        With ``images``: truth parameters (name -> ``n + n_val`` values) to regress
        besides the class.
    workers : int, optional
        Simulation processes.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    overwrite : bool, optional
        Replace existing weights in ``out_dir``.
    progress : bool, optional
        Show progress bars.
    metadata : dict, optional
        More metadata for the weights file (e.g. the training command).

    Returns
    -------
    dict
        ``val_accuracy`` on the ``n_val`` held-out images, ``val_confusion`` (rows: true
        class, columns: predicted), ``epochs`` (per-epoch figures), ``n_train``,
        ``n_val``, ``wall_time_s``, ``config`` and the path of the ``weights``.
    """
    from ..nn.resnet import SmallResNet
    from .data import CLASSES, as_image_stack, default_scaling, generation_images

    n = check_int(n, "n", 3)
    n_val = check_int(n_val, "n_val", 1)
    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size")
    seed = check_int(seed, "seed", 0)
    out_dir = Path(out_dir)
    weights_path = out_dir / WEIGHTS_FILE
    if weights_path.exists() and not overwrite:
        raise FileExistsError(f"{weights_path} exists")
    started = time.perf_counter()
    if images is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        flux, labels, attrs = generation_images(n + n_val, preset=preset, seed=data_seed,
                                                workers=workers, progress=progress,
                                                cache=out_dir / IMAGES_FILE)
        truth = attrs.pop("truth")
    else:
        if not (isinstance(images, (tuple, list)) and len(images) == 2):
            raise TypeError("images must be a pair (images, labels)")
        flux = as_image_stack(images[0], "images")
        labels = np.asarray(images[1])
        attrs = {"preset": preset, "source": "arrays"}
        if len(flux) != n + n_val:
            raise ValueError(f"images holds {len(flux)} images but n + n_val = {n + n_val}")
    if labels.shape != (len(flux),) or not np.issubdtype(labels.dtype, np.integer) \
            or labels.min() < 0 or labels.max() >= len(CLASSES):
        raise ValueError(f"labels must be {len(flux)} integers from 0 to {len(CLASSES) - 1} "
                         f"(indices into {CLASSES})")
    if flux.shape[1] != flux.shape[2]:
        raise ValueError(f"images must be square (rotation augmentation), got "
                         f"{flux.shape[1:]}")
    out_dir.mkdir(parents=True, exist_ok=True)

    device = resolve_device(device)
    if scaling is None and str(preset).startswith("deeplense"):
        # DeepLense presets span other flux ranges: the stretch follows the training set.
        scaling = {"kind": "asinh", **default_scaling(flux, preset)}
    scaling = _scaling(DEFAULT_SCALING if scaling is None else scaling)
    truth = {name: np.asarray(values, dtype=np.float64) for name, values in
             (truth or {}).items()}
    # Fixed parameters (a DeepLense preset's lens) carry nothing to regress.
    truth = {name: values for name, values in truth.items()
             if np.all(np.isfinite(values)) and np.ptp(values) > 0}
    if any(values.shape != (len(flux),) for values in truth.values()):
        raise ValueError(f"every truth parameter needs {len(flux)} values")
    x = torch.from_numpy(scaling.apply(flux))[:, None]
    train_index, val_index = _split(labels, n_val, data_seed)
    names = sorted(truth)
    stats = {name: (float(truth[name][train_index].mean()),
                    float(truth[name][train_index].std() + 1e-12)) for name in names}
    # Column 0: the label; then the standardised parameters.
    y = torch.from_numpy(np.column_stack(
        [labels.astype(np.float64)]
        + [(truth[k] - stats[k][0]) / stats[k][1] for k in names]).astype(np.float32))
    n_classes = len(CLASSES)

    def loss_fn(output, target):
        loss = F.cross_entropy(output[:, :n_classes], target[:, 0].long())
        if names:
            loss = loss + F.mse_loss(output[:, n_classes:], target[:, 1:])
        return loss

    x_val, y_val = x[val_index], labels[val_index]

    def validate(net):
        output = _batched(net, x_val, net, 256)
        figures = {"val_loss": float(loss_fn(output, y[val_index])),
                   "val_accuracy": float(np.mean(
                       output[:, :n_classes].argmax(1).numpy() == y_val))}
        for j, name in enumerate(names):
            predicted = output[:, n_classes + j].numpy() * stats[name][1] + stats[name][0]
            figures[f"val_mae_{name}"] = float(np.mean(np.abs(
                predicted - truth[name][val_index])))
        return figures

    torch.manual_seed(seed)
    net = SmallResNet(n_classes + len(names), width=width).to(device)
    history = fit_network(net, x[train_index], y[train_index], loss_fn,
                          epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                          progress=progress, desc="classifier", validate=validate)
    # The running BatchNorm statistics trail the last steps' weights: the held-out
    # accuracy jumped by 0.3 between epochs. Their exact means over the training set fix it.
    precise_batchnorm(net, x[train_index])
    final = validate(net)
    history[-1].update({f"{key}_before_precise_bn": history[-1][key] for key in final})
    history[-1].update(final)
    predicted = _batched(net, x_val, net, 256)[:, :n_classes].argmax(1).numpy()
    confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    np.add.at(confusion, (y_val, predicted), 1)
    val_accuracy = final["val_accuracy"]
    val_mae = {k[len("val_mae_"):]: v for k, v in final.items() if k.startswith("val_mae_")}
    result = {"val_accuracy": val_accuracy, "val_confusion": confusion.tolist(),
              "val_mae": val_mae, "targets": names,
              "classes": list(CLASSES), "epochs": history, "n_train": n, "n_val": n_val,
              "batch_size": batch_size, "lr": lr, "seed": seed, "data_seed": data_seed,
              "data": attrs, "scaling": scaling.to_dict(),
              "wall_time_s": time.perf_counter() - started, "config": net.config,
              "weights": str(weights_path)}
    export_weights(net, weights_path, overwrite=overwrite, metadata={
        "task": "classify", "classes": list(CLASSES), "scaling": scaling.to_dict(),
        "data_preset": preset, "image_shape": list(flux.shape[1:]),
        # The unit and pixel scale generated images must share (simulated data only).
        **{key: attrs[key] for key in ("unit", "pixel_scale") if key in attrs},
        "val_accuracy": val_accuracy, "n_train": n, "n_val": n_val, "epochs": epochs,
        "machine": machine_description(),
        "targets": names, "target_stats": stats, "val_mae": val_mae,
        **(metadata or {})})
    atomic_write_bytes(out_dir / HISTORY_FILE, json_bytes(result))
    return result


def precise_batchnorm(net, x, *, batch_size=256):
    """Set every BatchNorm's running mean and variance to their averages over ``x``.

    "Precise BN" (Wu & Johnson 2021, arXiv:2105.07576): the exponential moving averages
    kept during training describe weights of many steps ago; one pass over the training
    images in train mode, with a cumulative average (``momentum=None``), gives the
    statistics of the final weights. Nothing else changes.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return net
    saved = [m.momentum for m in norms]
    was_training = net.training
    device = next(net.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    net.train()
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                net(x[start:start + batch_size].to(device))
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        net.train(was_training)
    return net


def _batched(net, x, fn, batch_size):
    """``fn`` over ``x`` in batches on the network's device, in eval mode, on the CPU."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            return torch.cat([fn(x[i:i + batch_size].to(device)).float().cpu()
                              for i in range(0, len(x), batch_size)])
    finally:
        net.train(was_training)


def trained_image_shape(net):
    """The ``(y, x)`` shape of the classifier's training images (its metadata); ``()`` if
    it does not say."""
    shape = getattr(net, "metadata", {}).get("image_shape")
    shape = json.loads(shape) if isinstance(shape, str) else shape  # weights-file text
    return tuple(int(side) for side in shape or ())


def _prepared(net, images, scaling):
    from .data import as_image_stack

    if scaling is None:
        scaling = getattr(net, "metadata", {}).get("scaling")
        if scaling is None:
            raise ValueError("pass scaling=: the network carries none (only networks "
                             "loaded with load_weights know their input stretch)")
    stack = as_image_stack(images, "images")
    shape = trained_image_shape(net)
    # Features of another field size are silently not the ones it learned (a 128 px
    # Model I crop reads as all-axion to the 150 px classifier).
    if shape and stack.shape[1:] != shape:
        raise ValueError(f"images are {stack.shape[1]}x{stack.shape[2]} but the classifier "
                         f"was trained on {shape[0]}x{shape[1]} images")
    return torch.from_numpy(_scaling(scaling).apply(stack))[:, None]


def classifier_features(net, images, *, scaling=None, batch_size=256):
    """Pooled penultimate features of the classifier for flux images.

    Parameters
    ----------
    net : SmallResNet
        The classifier (e.g. ``load_weights("…/weights.safetensors")``); evaluated in
        eval mode on the device of its weights.
    images : array-like, shape (n, y, x)
        Flux images in the unit of the training images (``xarray.DataArray`` from
        `lensenhance.Generator.generate` too).
    scaling : AsinhScaling or dict, optional
        The classifier's input stretch; default the ``scaling`` in ``net.metadata``
        (set by `~lensenhance.nn.weights.load_weights`).
    batch_size : int, optional
        Images per forward pass.

    Returns
    -------
    numpy.ndarray, float32, shape (n, d)
        One feature vector per image (``d`` = channels of the last stage).
    """
    x = _prepared(net, images, scaling)
    return _batched(net, x, net.features, check_int(batch_size, "batch_size")).numpy()


def classifier_logits(net, images, *, scaling=None, batch_size=256):
    """Class logits of the classifier for flux images.

    Parameters are those of `classifier_features`.

    Returns
    -------
    numpy.ndarray, float32, shape (n, n_classes)
        Columns in the order of `lensenhance.training.data.CLASSES`.
    """
    from .data import CLASSES

    x = _prepared(net, images, scaling)
    # The outputs after the classes regress truth parameters.
    return _batched(net, x, net, check_int(batch_size, "batch_size"))[:, :len(CLASSES)].numpy()


def classifier_predict(net, images, *, scaling=None, batch_size=256):
    """Class probabilities of the classifier for flux images.

    Parameters are those of `classifier_features`.

    Returns
    -------
    numpy.ndarray, float32, shape (n, n_classes)
        Softmax probabilities, columns in the order of `lensenhance.training.data.CLASSES`.
    """
    logits = classifier_logits(net, images, scaling=scaling, batch_size=batch_size)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def classifier_truth(net, images, *, scaling=None, batch_size=256):
    """The truth parameters the classifier regresses, for flux images.

    Parameters are those of `classifier_features`; the network must carry its
    ``targets`` and ``target_stats`` (``net.metadata``, as `load_weights` sets it).

    Returns
    -------
    dict of numpy.ndarray
        Parameter name -> ``(n,)`` values in the parameter's own unit.
    """
    from .data import CLASSES

    meta = getattr(net, "metadata", {})
    names, stats = meta.get("targets", []), meta.get("target_stats", {})
    if not names:
        raise ValueError("this classifier regresses no truth parameters")
    x = _prepared(net, images, scaling)
    outputs = _batched(net, x, net, check_int(batch_size, "batch_size")).numpy()
    return {name: outputs[:, len(CLASSES) + j] * stats[name][1] + stats[name][0]
            for j, name in enumerate(names)}
