"""Initial weights for fine-tuning: a shipped model's or a file's, recorded with a hash."""

from __future__ import annotations

from pathlib import Path

__all__ = ["weights_file", "initial_network", "init_record"]


def weights_file(name_or_path):
    """The weights file of a shipped model's name, or the path itself if it is a file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    from ..pretrained import weights_path

    return weights_path(str(name_or_path))


def initial_network(init):
    """A network loaded from weights (a shipped name or a file), in training mode."""
    from ..nn.weights import load_weights

    return load_weights(weights_file(init)).train()


def init_record(init):
    """``{"weights", "sha256"}`` of the initial weights for a run's metadata (None: none)."""
    if init is None:
        return None
    from ..pretrained import file_sha256

    return {"weights": str(init), "sha256": file_sha256(weights_file(init))}
