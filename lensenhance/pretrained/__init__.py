"""Registry of the pretrained weights that ship inside the package, with their model cards.

Each model is two files in ``weights/``: ``NAME.safetensors`` (the weights, format v2:
task, network configuration, input normalisation and, for diffusion models, the noise
schedule in the safetensors metadata; see `lensenhance.nn.weights`) and ``NAME.json``
(its model card). Everything loads offline.

Model cards follow one schema per task (`CARD_KEYS`, checked by `validate_card`):

- every card: ``name``, ``task``, ``architecture``, ``parameters``, ``preset`` (the
  simulation preset of the training data), ``command`` (the command that rebuilds the
  weights), ``steps``, ``wall_time_s``, ``machine``, ``sha256`` (of the weights file),
  ``license`` and ``metrics``: a dict of figures that holds ``n`` (the number of images
  they come from) and ``command`` (the command that measured them);
- ``sr`` and ``denoise`` add ``scale`` (1 for denoising) and ``degradation``;
- ``generate`` adds ``image_size``, ``pixel_scale`` (arcsec), ``unit``, ``classes`` and
  ``schedule``; its metrics name the Frechet and kernel distances ``fd`` and ``kid``,
  next to the real-vs-real floors ``fd_floor`` and ``kid_floor`` at the same n;
- ``classify`` adds ``classes``; its metrics hold ``accuracy``;
- ``features`` adds nothing; its metrics hold the regression error (for the
  theta_E network, ``theta_e_mae_arcsec``).
"""

import hashlib
import json
import re
from pathlib import Path

__all__ = ["TASKS", "COMMON_CARD_KEYS", "TASK_CARD_KEYS", "CARD_KEYS", "list_pretrained",
           "sr_models_for", "best_by_validation", "model_card", "validate_card",
           "weights_path", "file_sha256", "load_pretrained", "load_feature_network",
           "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).parent / "weights"

#: Tasks of the shipped models (the same as `lensenhance.nn.weights.TASKS`; repeated here
#: so that reading cards never imports torch).
TASKS = ("sr", "denoise", "generate", "classify", "features", "posterior")

#: Keys every model card has.
COMMON_CARD_KEYS = ("name", "task", "architecture", "parameters", "preset", "command",
                    "steps", "wall_time_s", "machine", "sha256", "license", "metrics")

#: Keys a card of each task has besides `COMMON_CARD_KEYS`.
TASK_CARD_KEYS = {
    "sr": ("scale", "degradation"),
    "denoise": ("scale", "degradation"),
    "generate": ("image_size", "pixel_scale", "unit", "classes", "schedule"),
    "classify": ("classes",),
    "features": (),
    "posterior": ("scale", "degradation", "base_model", "schedule", "calibration"),
}

#: Every key a card of each task must have.
CARD_KEYS = {task: COMMON_CARD_KEYS + extra for task, extra in TASK_CARD_KEYS.items()}

# key -> (accepted types, description) for the keys whose type is fixed
_STR = (str,)
_INT = (int,)
_NUMBER = (int, float)
_TYPES = {
    "name": (_STR, "a string"), "task": (_STR, "a string"), "architecture": (_STR, "a string"),
    "parameters": (_INT, "an integer"), "preset": (_STR, "a string"),
    "command": (_STR, "a string"), "steps": (_INT, "an integer"),
    "wall_time_s": (_NUMBER, "a number"), "machine": (_STR, "a string"),
    "sha256": (_STR, "a string"), "license": (_STR, "a string"),
    "metrics": ((dict,), "a dict"), "scale": (_INT, "an integer"),
    "degradation": (_STR, "a string"), "image_size": (_INT, "an integer"),
    "pixel_scale": (_NUMBER, "a number"), "unit": (_STR, "a string"),
    "classes": ((list,), "a list"), "schedule": ((dict,), "a dict"),
    "base_model": (_STR, "a string"), "calibration": ((dict,), "a dict"),
}


def _check_task(task):
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def list_pretrained(*, task=None):
    """Names of the pretrained models shipped with the package.

    Parameters
    ----------
    task : {'sr', 'denoise', 'generate', 'classify', 'features'}, optional
        Only models of this task.

    Returns
    -------
    list of str
    """
    _check_task(task)
    names = []
    for card_path in sorted(WEIGHTS_DIR.glob("*.json")):
        name = card_path.stem
        if not (WEIGHTS_DIR / f"{name}.safetensors").is_file():
            continue
        if task is None or json.loads(card_path.read_text()).get("task") == task:
            names.append(name)
    return names


def sr_models_for(*, scale=2, preset="model_i", lr_on_preset_grid=False,
                  noise_free_lr=False):
    """The shipped residual SR models trained for one set-up of the LR images.

    Parameters
    ----------
    scale : int, optional
    preset : str, optional
        The simulation preset of the training data.
    lr_on_preset_grid, noise_free_lr : bool, optional
        As for `lensenhance.training.data.load_pairs`: models for a generator's noise-free
        images are trained so, and are no choice for observed (noisy) images.

    Returns
    -------
    list of str
    """
    setup = {"scale": scale, "preset": preset, "lr_on_preset_grid": lr_on_preset_grid,
             "noise_free_lr": noise_free_lr}
    defaults = {"preset": "model_i", "lr_on_preset_grid": False, "noise_free_lr": False}
    return [name for name in list_pretrained(task="sr")
            if all(model_card(name).get(key, defaults.get(key)) == value
                   for key, value in setup.items())]


def best_by_validation(names):
    """The model whose card has the best validation PSNR of its training run, or None.

    The rule the package uses wherever it picks "the best model" (the demo, the
    reference of `lensenhance benchmark sr`): the validation images belong to each
    training run (its ``--data-seed``), never to a benchmark, so the choice is not made
    on the images the model is then scored on. Models without that figure (diffusion
    models) are no candidates.

    Examples
    --------
    >>> best_by_validation(sr_models_for(scale=2)) in sr_models_for(scale=2)
    True
    """
    scored = {name: model_card(name).get("val_psnr_normalised") for name in names}
    scored = {name: value for name, value in scored.items() if value is not None}
    return max(scored, key=scored.get) if scored else None


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    available = list_pretrained()
    if name not in available:
        raise ValueError(f"no pretrained model named {name!r}; available: "
                         f"{', '.join(available) if available else 'none'}")


def model_card(name):
    """The model card of a pretrained model, as a dict (see the module docstring).

    Keys include ``task``, ``architecture``, ``preset`` (the simulation preset of the
    training data), ``command`` (the command that rebuilds the weights), ``steps``,
    ``wall_time_s``, ``metrics`` (with their ``n``) and ``sha256``; SR cards add
    ``scale`` and ``degradation``.
    """
    _check_name(name)
    return json.loads((WEIGHTS_DIR / f"{name}.json").read_text())


def validate_card(card, *, raise_errors=True):
    """Check a model card against its task's schema.

    Parameters
    ----------
    card : dict
        A model card (`model_card`).
    raise_errors : bool, optional
        Raise on the first invalid card (default) or return the problems.

    Returns
    -------
    list of str
        The problems found (empty for a valid card), when ``raise_errors`` is False.

    Raises
    ------
    TypeError
        If ``card`` is not a dict.
    ValueError
        If the card breaks the schema; the message lists every problem.
    """
    if not isinstance(card, dict):
        raise TypeError(f"a model card must be a dict, got {type(card).__name__}")
    label = f"model card {card.get('name', '?')!r}"
    problems = []
    task = card.get("task")
    if task not in TASKS:
        problems.append(f"task is {task!r}; expected one of {', '.join(TASKS)}")
        required = COMMON_CARD_KEYS
    else:
        required = CARD_KEYS[task]
    missing = [key for key in required if key not in card]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    for key in required:
        if key not in card or key not in _TYPES:
            continue
        types, description = _TYPES[key]
        value = card[key]
        # bool is an int to Python, never to a card
        if not isinstance(value, types) or isinstance(value, bool):
            problems.append(f"{key} must be {description}, got {value!r}")
    sha = card.get("sha256")
    if isinstance(sha, str) and not re.fullmatch(r"[0-9a-f]{64}", sha):
        problems.append(f"sha256 must be 64 lower-case hex digits, got {sha!r}")
    metrics = card.get("metrics")
    if isinstance(metrics, dict):
        n = metrics.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            problems.append(f"metrics must hold n, the number of images the figures come "
                            f"from (a positive integer), got {n!r}")
        if not isinstance(metrics.get("command"), str):
            problems.append("metrics must hold command, the command that measured them")
    for key in ("parameters", "steps"):
        if isinstance(card.get(key), int) and card[key] < 0:
            problems.append(f"{key} must not be negative, got {card[key]}")
    if isinstance(card.get("scale"), int) and card["scale"] < 1:
        problems.append(f"scale must be at least 1, got {card['scale']}")
    classes = card.get("classes")
    if isinstance(classes, list) and not all(isinstance(c, str) for c in classes):
        problems.append(f"classes must be a list of strings, got {classes!r}")
    if problems and raise_errors:
        raise ValueError(f"{label} does not follow the {task!r} card schema: "
                         + "; ".join(problems))
    return problems


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
    """Build the network of a pretrained model of any task and load its weights.

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
        The network in eval mode, with its weights file's metadata as ``.metadata``.
    """
    from ..nn.weights import load_weights

    path = weights_path(name)
    if verify:
        expected = model_card(name).get("sha256")
        actual = file_sha256(path)
        if expected != actual:
            raise OSError(f"{path}: SHA-256 {actual} does not match the model card's "
                          f"{expected}; the file is corrupt or was replaced")
    return load_weights(path, device=device)


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
