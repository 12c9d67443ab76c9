"""Weights files: safetensors with the network's config in their metadata.

`export_weights` writes a network's weights with its ``config`` (and any extra
metadata, such as the training command or benchmark figures) so that
`load_sr_weights` rebuilds the network from the file alone, offline and without
pickle. Needs only torch and safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from torch import nn

from .._atomic import atomic_write_bytes
from .sr import model_from_config

__all__ = [
    "WEIGHTS_FORMAT",
    "export_weights",
    "load_sr_weights",
    "portable_state_dict",
    "read_weights_metadata",
]

#: Value of the ``format`` metadata key of weights files.
WEIGHTS_FORMAT = "lensenhance-sr-weights"


def portable_state_dict(model: nn.Module) -> dict:
    """``state_dict()`` taken in train mode (escnn keeps extra buffers in eval mode)."""
    was_training = model.training
    model.train()
    try:
        return model.state_dict()
    finally:
        model.train(was_training)


def export_weights(model: nn.Module, path, *, metadata: dict | None = None,
                   overwrite: bool = False) -> Path:
    """Write a network's weights to a safetensors file that rebuilds it by itself.

    Parameters
    ----------
    model : torch.nn.Module
        A network with a ``config`` dict (every `lensenhance.nn` model); a
        `DistributedDataParallel` or `ExponentialMovingAverage` wrapper is unwrapped.
    path : str or path-like
        Output file (``.safetensors``).
    metadata : dict, optional
        Extra string metadata (non-strings are stored as JSON), e.g. the training
        command or benchmark figures. The keys ``format``, ``config`` and
        ``n_parameters`` are reserved.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    module = getattr(model, "module", model)
    config = getattr(module, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(module).__name__} has no config dict; only lensenhance.nn "
                        "models can be exported")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    header = {"format": WEIGHTS_FORMAT, "config": json.dumps(config),
              # All parameters (an EMA copy has requires_grad off).
              "n_parameters": str(sum(p.numel() for p in module.parameters()))}
    for key, value in (metadata or {}).items():
        if key in header:
            raise ValueError(f"metadata key {key!r} is reserved")
        header[str(key)] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous()
               for k, v in portable_state_dict(module).items()}
    atomic_write_bytes(path, safetensors_save(tensors, metadata=header))
    return path


def read_weights_metadata(path) -> dict:
    """Return the metadata of a weights file, with ``config`` decoded to a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as err:  # safetensors raises its own error types
        raise OSError(f"{path} is not a readable safetensors file: {err}") from err
    if "config" not in metadata:
        raise ValueError(f"{path} has no model config in its metadata; was it written by "
                         "lensenhance.nn.export_weights?")
    metadata["config"] = json.loads(metadata["config"])
    return metadata


def load_sr_weights(path, *, device="cpu") -> nn.Module:
    """Rebuild a network from a file written by `export_weights`.

    Parameters
    ----------
    path : str or path-like
        The safetensors file.
    device : str or torch.device, optional
        Where to put the weights.

    Returns
    -------
    torch.nn.Module
        The network in eval mode, with the file's metadata as ``model.metadata``.
    """
    metadata = read_weights_metadata(path)
    model = model_from_config(metadata["config"])
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit their config: {err}") from err
    model.metadata = metadata
    return model.to(device).eval()
