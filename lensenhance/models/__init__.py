"""Registry of the pretrained weights that ship inside the package.

Each model is two files in ``weights/``: ``NAME.safetensors`` (the weights, with the
network's configuration in the safetensors metadata) and ``NAME.json`` (its model card:
task, scale, data preset, degradation, the exact training command, the wall time and the
benchmark figures, and the SHA-256 of the weights file). Everything loads offline.
"""

import hashlib
import json
from pathlib import Path

__all__ = ["list_pretrained", "model_card", "weights_path", "load_pretrained",
           "load_feature_network", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).parent / "weights"


def list_pretrained(*, task=None):
    """Names of the pretrained models shipped with the package.

    Parameters
    ----------
    task : str, optional
        Only models of this task (``"sr"``, ``"denoise"``, ``"generate"``).

    Returns
    -------
    list of str
    """
    names = []
    for card_path in sorted(WEIGHTS_DIR.glob("*.json")):
        name = card_path.stem
        if not (WEIGHTS_DIR / f"{name}.safetensors").is_file():
            continue
        if task is None or json.loads(card_path.read_text()).get("task") == task:
            names.append(name)
    return names


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    available = list_pretrained()
    if name not in available:
        raise ValueError(f"no pretrained model named {name!r}; available: "
                         f"{', '.join(available) if available else 'none'}")


def model_card(name):
    """The model card of a pretrained model, as a dict.

    Keys include ``task``, ``architecture``, ``scale``, ``preset`` (the simulation preset
    of the training data), ``degradation``, ``command`` (the command that rebuilds the
    weights), ``steps``, ``wall_time_s``, ``metrics`` and ``sha256``.
    """
    _check_name(name)
    return json.loads((WEIGHTS_DIR / f"{name}.json").read_text())


def weights_path(name):
    """Path of the safetensors file of a pretrained model."""
    _check_name(name)
    return WEIGHTS_DIR / f"{name}.safetensors"


def file_sha256(path):
    """SHA-256 hex digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained(name, *, device="cpu", verify=True):
    """Build the network of a pretrained model and load its weights.

    Parameters
    ----------
    name : str
        One of `list_pretrained`.
    device : str or torch.device
        Where to put the network.
    verify : bool
        Check the weights file's SHA-256 against the model card first.

    Returns
    -------
    torch.nn.Module
        The network in eval mode.
    """
    from ..nn import load_sr_weights

    path = weights_path(name)
    if verify:
        expected = model_card(name).get("sha256")
        actual = file_sha256(path)
        if expected != actual:
            raise OSError(f"{path}: SHA-256 {actual} does not match the model card's "
                          f"{expected}; the file is corrupt or was replaced")
    return load_sr_weights(path, device=device).eval()


def load_feature_network(name, *, device="cpu"):
    """A shipped network of task ``"features"``, as a frozen feature extractor.

    Returns
    -------
    torch.nn.Module
        Maps ``(batch, 1, y, x)`` images to pooled features; its parameters do not train.
    """
    from ..nn.resnet import Features

    if model_card(name).get("task") != "features":
        raise ValueError(f"{name!r} is not a feature network; available: "
                         f"{', '.join(list_pretrained(task='features')) or 'none'}")
    return Features(load_pretrained(name, device=device)).eval().requires_grad_(False)
