"""Weights files: safetensors whose metadata says how to rebuild and use the network.

Format v2 (``format = "lensenhance-weights"``, ``format_version = "2"``): every file
carries, as safetensors string metadata,

============== ===========================================================================
key            value
============== ===========================================================================
format         ``"lensenhance-weights"``
format_version ``"2"``
task           ``sr``, ``denoise``, ``generate``, ``classify`` or ``features``
config         the network's config (JSON), ``{"architecture": name, **arguments}``
n_parameters   number of parameters
normalization  how the network's inputs are normalised (JSON), e.g.
               ``{"kind": "per_image", "method": "sigma_clip"}`` for the SR networks (the
               `lensenhance.Enhancer`'s per-image fit) or the generator's
               ``{"kind": "asinh", ...}`` scaling
schedule       diffusion models only: the noise schedule (JSON), and ``parameterization``
============== ===========================================================================

plus whatever the writer adds (training command, data preset, classes, figures); values
that are not strings are stored as JSON. `read_weights_metadata` decodes the JSON-valued
keys in `JSON_METADATA_KEYS`; other values stay strings.

Version 1 files (``format = "lensenhance-sr-weights"``, no task or normalisation) still
load; `migrate_weights` rewrites their metadata to v2 in place, leaving the tensor bytes
untouched. `load_weights` rebuilds any architecture of `lensenhance.nn.registry` from the
file alone, offline and without pickle. Needs only torch and safetensors.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from torch import nn

from .._atomic import atomic_write_bytes
from .registry import model_from_config

__all__ = [
    "update_weights_metadata",
    "WEIGHTS_FORMAT",
    "WEIGHTS_FORMAT_VERSION",
    "LEGACY_WEIGHTS_FORMAT",
    "TASKS",
    "JSON_METADATA_KEYS",
    "RESERVED_METADATA_KEYS",
    "default_normalization",
    "export_weights",
    "load_weights",
    "migrate_weights",
    "portable_state_dict",
    "read_weights_metadata",
]

#: Value of the ``format`` metadata key of weights files (format v2 on).
WEIGHTS_FORMAT = "lensenhance-weights"

#: The format version `export_weights` writes.
WEIGHTS_FORMAT_VERSION = 2

#: ``format`` of version 1 files (SR-era, no task or normalisation in the metadata).
LEGACY_WEIGHTS_FORMAT = "lensenhance-sr-weights"

#: Tasks a weights file (and a model card) can declare.
TASKS = ("sr", "denoise", "generate", "classify", "features", "posterior")

#: Metadata keys whose values are JSON documents, decoded by `read_weights_metadata`.
JSON_METADATA_KEYS = ("config", "schedule", "scaling", "normalization", "train_args", "val",
                      "metrics", "classes", "n_classes", "pixel_scale", "image_size",
                      "targets", "target_stats", "snr_range", "exposure_log10", "calibration",
                      "sigma_floor", "scale", "distilled")

#: Keys `export_weights` fills in itself; callers may not pass them in ``metadata``.
RESERVED_METADATA_KEYS = ("format", "format_version", "config", "n_parameters")

# The per-image fit of the Enhancer (lensenhance.predict.normalization.fit_normalization).
_PER_IMAGE = {"kind": "per_image", "method": "sigma_clip"}


def default_normalization(task: str, metadata: dict | None = None) -> dict | None:
    """The input normalisation a task's networks are trained with, when none is given.

    Parameters
    ----------
    task : str
        One of `TASKS`.
    metadata : dict, optional
        The file's other metadata: a generator's ``scaling`` is its normalisation.

    Returns
    -------
    dict or None
        ``{"kind": "per_image", "method": "sigma_clip"}`` for ``sr``, ``denoise`` and
        ``features`` (the Enhancer's per-image fit; the feature network sees HR images
        normalised as the SR targets); a generator's ``scaling``; else None.
    """
    scaling = (metadata or {}).get("scaling")
    if isinstance(scaling, str):
        scaling = json.loads(scaling)
    if isinstance(scaling, dict):
        return dict(scaling)
    if task in ("sr", "denoise", "features", "posterior"):
        return dict(_PER_IMAGE)
    return None


def portable_state_dict(model: nn.Module) -> dict:
    """``state_dict()`` taken in train mode (escnn keeps extra buffers in eval mode)."""
    was_training = model.training
    model.train()
    try:
        return model.state_dict()
    finally:
        model.train(was_training)


def _check_task(task, where) -> str:
    if task not in TASKS:
        raise ValueError(f"{where}: task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def _as_string(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def export_weights(model: nn.Module, path, *, task: str | None = None,
                   normalization: dict | None = None, metadata: dict | None = None,
                   overwrite: bool = False) -> Path:
    """Write a network's weights to a safetensors file (format v2) that rebuilds it.

    Parameters
    ----------
    model : torch.nn.Module
        A network with a ``config`` dict (every registered architecture); a
        `DistributedDataParallel` or `ExponentialMovingAverage` wrapper is unwrapped.
    path : str or path-like
        Output file (``.safetensors``).
    task : {'sr', 'denoise', 'generate', 'classify', 'features'}, optional
        What the network is for. Default: ``metadata["task"]``, else the model's own
        ``task`` attribute (the SR networks say ``"sr"``).
    normalization : dict, optional
        How the network's inputs are normalised. Default: ``metadata["normalization"]``,
        else `default_normalization` (a generator's ``scaling``, the per-image sigma-clip
        fit for SR, denoising and feature networks).
    metadata : dict, optional
        Extra metadata (non-strings are stored as JSON): the training command, a
        diffusion ``schedule`` (its ``parameterization`` is also stored on its own), a
        generator's ``scaling``, ``classes``, figures. The keys in
        `RESERVED_METADATA_KEYS` are reserved.
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
    extra = dict(metadata or {})
    for key in extra:
        if key in RESERVED_METADATA_KEYS:
            raise ValueError(f"{path}: metadata key {key!r} is reserved (written by "
                             "export_weights itself)")
    if task is not None and extra.get("task", task) != task:
        raise ValueError(f"{path}: task={task!r} but metadata says {extra['task']!r}")
    task = task or extra.pop("task", None) or getattr(module, "task", None)
    if task is None:
        raise ValueError(f"{path}: {type(module).__name__} has no default task; pass "
                         f"task= (one of {', '.join(TASKS)})")
    _check_task(task, path)
    extra.pop("task", None)
    if normalization is not None and "normalization" in extra:
        raise ValueError(f"{path}: normalization given twice (argument and metadata)")
    normalization = extra.pop("normalization", normalization)
    if normalization is None:
        normalization = default_normalization(task, extra)
    if normalization is not None and not isinstance(normalization, dict):
        raise TypeError(f"{path}: normalization must be a dict, got "
                        f"{type(normalization).__name__}")
    schedule = extra.get("schedule")
    if isinstance(schedule, dict) and "parameterization" in schedule:
        extra.setdefault("parameterization", schedule["parameterization"])

    header = {"format": WEIGHTS_FORMAT, "format_version": str(WEIGHTS_FORMAT_VERSION),
              "task": task, "config": json.dumps(config),
              # All parameters (an EMA copy has requires_grad off).
              "n_parameters": str(sum(p.numel() for p in module.parameters()))}
    if normalization is not None:
        header["normalization"] = json.dumps(normalization)
    for key, value in extra.items():
        header[str(key)] = _as_string(value)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous()
               for k, v in portable_state_dict(module).items()}
    atomic_write_bytes(path, safetensors_save(tensors, metadata=header))
    return path


def _raw_metadata(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:  # safetensors raises its own error types
        raise OSError(f"{path} is not a readable safetensors file: {err}") from err


def _format_version(path: Path, metadata: dict) -> int:
    fmt = metadata.get("format")
    if fmt == LEGACY_WEIGHTS_FORMAT or fmt is None:
        return 1  # format v1, or a file written before the format key existed
    if fmt != WEIGHTS_FORMAT:
        raise ValueError(f"{path}: unknown weights format {fmt!r} (expected "
                         f"{WEIGHTS_FORMAT!r})")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise ValueError(f"{path}: format_version {metadata.get('format_version')!r} is "
                         "not a whole number") from None
    if version > WEIGHTS_FORMAT_VERSION:
        raise ValueError(f"{path}: weights format version {version} is newer than this "
                         f"lensenhance reads ({WEIGHTS_FORMAT_VERSION}); upgrade lensenhance")
    return version


def read_weights_metadata(path) -> dict:
    """Return the metadata of a weights file, JSON-valued keys decoded.

    Parameters
    ----------
    path : str or path-like
        A file written by `export_weights` (format v2) or an older (v1) one.

    Returns
    -------
    dict
        The string metadata, with the keys in `JSON_METADATA_KEYS` (``config``,
        ``schedule``, ``scaling``, ``normalization``, ``train_args``, ``val``,
        ``metrics``) decoded, and ``format_version`` as an int (1 for the old
        ``lensenhance-sr-weights`` files).
    """
    path = Path(path)
    metadata = _raw_metadata(path)
    if "config" not in metadata:
        raise ValueError(f"{path} has no model config in its metadata; was it written by "
                         "lensenhance.nn.export_weights?")
    metadata["format_version"] = _format_version(path, metadata)
    for key in JSON_METADATA_KEYS:
        if key in metadata:
            try:
                metadata[key] = json.loads(metadata[key])
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: metadata key {key!r} is not valid JSON: {err}") \
                    from None
    if not isinstance(metadata["config"], dict):
        raise ValueError(f"{path}: the model config is not a JSON object")
    return metadata


def load_weights(path, *, device="cpu") -> nn.Module:
    """Rebuild any registered network from its weights file.

    Parameters
    ----------
    path : str or path-like
        A safetensors file written by `export_weights` (format v1 or v2).
    device : str or torch.device, optional
        Where to put the weights.

    Returns
    -------
    torch.nn.Module
        The network in eval mode, with the file's decoded metadata
        (`read_weights_metadata`) as ``model.metadata``.
    """
    metadata = read_weights_metadata(path)
    try:
        model = model_from_config(metadata["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: cannot rebuild the network from its config: {err}") \
            from err
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit their config: {err}") from err
    model.metadata = metadata
    return model.to(device).eval()


def load_sr_weights(path, *, device="cpu") -> nn.Module:
    """Deprecated: `load_weights` (the same function, which reads every task's files).

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
    import warnings

    warnings.warn("load_sr_weights is deprecated; use load_weights (the same function)",
                  DeprecationWarning, stacklevel=2)
    return load_weights(path, device=device)


# -- migration -----------------------------------------------------------------------------

def _split_safetensors(path: Path) -> tuple[dict, bytes]:
    """The header (a dict) and the raw tensor bytes of a safetensors file."""
    data = path.read_bytes()
    if len(data) < 8:
        raise OSError(f"{path} is not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise OSError(f"{path} is not a safetensors file (header size {size} is too large)")
    try:
        header = json.loads(data[8:8 + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OSError(f"{path} is not a safetensors file: {err}") from None
    return header, data[8 + size:]


def _join_safetensors(header: dict, body: bytes) -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    # safetensors pads the header with spaces so that the tensor data stays 8-byte aligned
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + body


def _infer_task(path: Path, metadata: dict) -> str:
    if metadata.get("task"):
        return metadata["task"]
    from .sr import BASELINES, OPTIONAL_ARCHITECTURES, SR_ARCHITECTURES

    architecture = json.loads(metadata["config"]).get("architecture")
    if architecture in SR_ARCHITECTURES + OPTIONAL_ARCHITECTURES + BASELINES:
        return "sr"  # format v1 was the SR format
    raise ValueError(f"{path}: cannot tell the task of a {architecture!r} network; pass "
                     f"task= (one of {', '.join(TASKS)})")


def migrate_weights(path, *, task: str | None = None, normalization: dict | None = None,
                    out=None, overwrite: bool = False) -> Path:
    """Rewrite a weights file's metadata to format v2, leaving every tensor byte as it is.

    Only the safetensors header changes: ``format``, ``format_version``, ``task`` and
    ``normalization`` are set, and ``parameterization`` is copied out of a diffusion
    ``schedule``; all other metadata is kept. Files already at v2 are left alone.

    Parameters
    ----------
    path : str or path-like
        A format v1 (or v2) weights file.
    task : str, optional
        The file's task, when its metadata has none (v1 SR files are ``"sr"``).
    normalization : dict, optional
        Default: `default_normalization` of the task.
    out : str or path-like, optional
        Where to write the migrated file; default: replace ``path`` (atomically).
    overwrite : bool, optional
        Replace an existing ``out`` (ignored when ``out`` is ``path``).

    Returns
    -------
    pathlib.Path
        The migrated file.
    """
    path = Path(path)
    metadata = _raw_metadata(path)
    if "config" not in metadata:
        raise ValueError(f"{path} has no model config in its metadata; it is not a "
                         "lensenhance weights file")
    version = _format_version(path, metadata)
    out = path if out is None else Path(out)
    if out != path and out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    header, body = _split_safetensors(path)
    if version < WEIGHTS_FORMAT_VERSION:
        if task is not None and metadata.get("task", task) != task:
            raise ValueError(f"{path}: task={task!r} but its metadata says "
                             f"{metadata['task']!r}")
        task = _check_task(task or _infer_task(path, metadata), path)
        if normalization is None and "normalization" not in metadata:
            normalization = default_normalization(task, metadata)
        new = {"format": WEIGHTS_FORMAT, "format_version": str(WEIGHTS_FORMAT_VERSION),
               "task": task}
        if normalization is not None:
            new["normalization"] = json.dumps(normalization)
        schedule = json.loads(metadata["schedule"]) if "schedule" in metadata else None
        if isinstance(schedule, dict) and "parameterization" in schedule:
            new.setdefault("parameterization", schedule["parameterization"])
        header["__metadata__"] = {**metadata, **new}
        # __metadata__ first, as safetensors writes it
        header = {"__metadata__": header.pop("__metadata__"), **header}
    if out == path and version == WEIGHTS_FORMAT_VERSION:
        return path
    atomic_write_bytes(out, _join_safetensors(header, body))
    return out


def update_weights_metadata(path, entries: dict, *, remove=()) -> Path:
    """Set metadata entries of a weights file in place, leaving every tensor byte as it is.

    For figures fitted after training (the calibration of a posterior model's standard
    deviation). Values that are not strings are stored as JSON.

    Parameters
    ----------
    path : str or path-like
        A format v2 weights file.
    entries : dict
        Keys to set; `RESERVED_METADATA_KEYS` are refused.
    remove : sequence of str, optional
        Keys to delete (stale entries).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    reserved = sorted((set(entries) | set(remove)) & set(RESERVED_METADATA_KEYS))
    if reserved:
        raise ValueError(f"{path}: cannot set reserved metadata keys {reserved}")
    header, body = _split_safetensors(path)
    metadata = header.pop("__metadata__", {})
    metadata.update({key: _as_string(value) for key, value in entries.items()})
    for key in remove:
        metadata.pop(key, None)
    header = {"__metadata__": metadata, **header}
    atomic_write_bytes(path, _join_safetensors(header, body))
    return path
