"""Checkpoint files of the training loop: safetensors tensors with a JSON sidecar.

No pickle anywhere: ``checkpoint-<step>.safetensors`` holds the model, EMA and optimizer
tensors; ``checkpoint-<step>.json`` holds the run configuration, the step, optimizer and
scheduler scalars, the RNG state, the history and the SHA-256 of the tensor file. The
sidecar is written last, so a checkpoint counts only once both files are complete.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load as safetensors_load

__all__ = ["CHECKPOINT_FORMAT", "latest_checkpoint", "read_checkpoint", "checkpoint_files",
           "all_checkpoints", "json_bytes", "split_tensors", "join_tensors", "prefixed",
           "unprefixed"]

CHECKPOINT_FORMAT = "lensenhance-checkpoint"
# Checkpoints written before the loop served every model family.
_OLD_FORMATS = ("lensenhance-sr-checkpoint",)
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)\.json$")


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode()


def split_tensors(obj, prefix: str, tensors: dict):
    """Move the tensors of a nested state into ``tensors``; return a JSON-ready tree.

    Tensors become ``{"__tensor__": key}``; dicts with non-string keys (an optimizer's
    parameter indices) become ``{"__items__": [[key, value], ...]}``.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, split_tensors(v, f"{prefix}.{k}", tensors)]
                              for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def join_tensors(obj, tensors: dict):
    """Inverse of `_split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: join_tensors(v, tensors) for k, v in obj["__items__"]}
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def prefixed(state: dict, prefix: str) -> dict:
    return {f"{prefix}.{k}": v.detach().to("cpu", copy=True).contiguous()
            for k, v in state.items()}


def unprefixed(tensors: dict, prefix: str) -> dict:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def checkpoint_files(out_dir: Path, step: int) -> tuple[Path, Path]:
    stem = f"checkpoint-{step:08d}"
    return out_dir / f"{stem}.safetensors", out_dir / f"{stem}.json"


def all_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    if not out_dir.is_dir():
        return []
    found = []
    for path in out_dir.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.with_suffix(".safetensors").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir) -> Path | None:
    """Return the JSON sidecar of the latest complete checkpoint in ``out_dir``, or None."""
    found = all_checkpoints(Path(out_dir))
    return found[-1][1] if found else None


def read_checkpoint(json_path: Path) -> tuple[dict, dict]:
    """Read a checkpoint sidecar and its tensors, checking that the two belong together."""
    meta = json.loads(Path(json_path).read_text())
    if meta.get("format") not in (CHECKPOINT_FORMAT, *_OLD_FORMATS):
        raise ValueError(f"{json_path} is not a lensenhance checkpoint")
    tensor_path = Path(json_path).with_suffix(".safetensors")
    data = tensor_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise OSError(f"{tensor_path} does not match the checksum in {json_path.name}")
    return meta, safetensors_load(data)


