"""One loader: a model as a user names it -> a `~lensenhance.predict.predictors.Predictor`.

`load_predictor` is the single path from ``"bicubic"``, a shipped model's name, a weights
file (a residual network or a diffusion model's), a `torch.nn.Module` or a predictor to
the predictor the `~lensenhance.Enhancer` runs. The Enhancer's constructors, the command
line and the benchmarks all go through it, so a model is recognised (deterministic or
posterior) in one place.
"""

from __future__ import annotations

import os

__all__ = ["load_predictor", "is_probabilistic", "INTERPOLATIONS"]

#: The parameter-free baselines, by name.
INTERPOLATIONS = ("bilinear", "bicubic")


def _task_of_file(path):
    from ..nn.weights import read_weights_metadata

    try:
        return read_weights_metadata(path).get("task")
    except (OSError, ValueError, KeyError):
        return None  # loading it reports what is wrong with the file


def is_probabilistic(model):
    """True when ``model`` (a shipped name or a weights file) is a diffusion posterior."""
    from ..pretrained import list_pretrained, model_card

    if isinstance(model, str) and model in list_pretrained():
        return model_card(model).get("task") == "posterior"
    return isinstance(model, (str, os.PathLike)) and os.path.isfile(model) \
        and _task_of_file(model) == "posterior"


def load_predictor(model, *, device="cpu", scale=None, name=None, self_ensemble=False,
                   n_draws=8, halo=None, **sampling):
    """The predictor of ``model``.

    Parameters
    ----------
    model : str, path-like, torch.nn.Module or Predictor
        ``"bilinear"`` / ``"bicubic"``; a shipped model's name
        (`lensenhance.list_pretrained`); a weights file written by
        `lensenhance.nn.export_weights` (a diffusion model's gives its posterior); a
        network with a ``scale`` (or pass ``scale``); or a predictor, returned as is.
    device : str or torch.device, optional
        Where the weights go.
    scale : int, optional
        The upsampling factor of an interpolation (default 2) or of a network without
        one; checked against a predictor's or a shipped model's own.
    name : str, optional
        Shown in reprs, headers and catalogs (default: the model's name).
    self_ensemble, n_draws, halo : optional
        Options of a residual network (`~lensenhance.predict.predictors.NetworkPredictor`).
    **sampling
        A diffusion model's ``n_samples``, ``steps``, ``sampler``, ``sample_batch``
        (`~lensenhance.predict.posterior.PosteriorPredictor`); refused for the others.

    Returns
    -------
    Predictor
    """
    import torch

    from .predictors import NetworkPredictor, Predictor

    sampling = {key: value for key, value in sampling.items() if value is not None}
    if isinstance(model, Predictor):
        if scale is not None and scale != model.scale:
            raise ValueError(f"scale={scale} differs from the predictor's {model.scale}")
        return model
    sha = domain = None
    if isinstance(model, str) and model in INTERPOLATIONS:
        from ..nn import Interpolation

        scale = 2 if scale is None else scale
        model, name = Interpolation(mode=model, scale=scale), name or model
    elif isinstance(model, (str, os.PathLike)):
        from ..pretrained import file_sha256, list_pretrained, model_card, weights_path

        shipped = isinstance(model, str) and not os.path.exists(model) \
            and model in list_pretrained()
        if not shipped and not os.path.isfile(model):
            raise ValueError(f"{model!r} is neither a weights file nor a shipped model; "
                             f"shipped: {', '.join(list_pretrained())}")
        task = model_card(model).get("task") if shipped else _task_of_file(model)
        path = weights_path(model) if shipped else model
        name = name or (model if shipped else
                        os.path.basename(str(model)).removesuffix(".safetensors"))
        if task == "posterior":
            from .posterior import load_posterior

            for key, value in (("self_ensemble", self_ensemble), ("halo", halo)):
                if value:
                    raise ValueError(f"{key} does not apply to the diffusion model {name!r}")
            predictor = load_posterior(path, name=name, device=device, **sampling)
            if scale is not None and scale != predictor.scale:
                raise ValueError(f"scale={scale} differs from {name!r}'s {predictor.scale}")
            if shipped:
                predictor.domain = model_card(model).get("domain")
            return predictor
        if shipped and task not in ("sr", "denoise"):
            raise ValueError(f"{name!r} is a {task!r} model, not an enhancer")
        if shipped:
            from ..pretrained import load_pretrained

            card = model_card(model)
            if scale is not None and scale != card["scale"]:
                raise ValueError(f"scale={scale} differs from {name!r}'s {card['scale']}")
            scale, sha = card["scale"], card.get("sha256") or file_sha256(path)
            domain = card.get("domain")
            model = load_pretrained(model, device=device)
        else:
            from ..nn.weights import load_weights

            try:
                model = load_weights(path, device=device)
            except (OSError, ValueError, KeyError) as error:
                raise ValueError(f"{path}: cannot load the network ({error})") from None
            config = getattr(model, "config", {}) or {}
            scale = config.get("scale", getattr(model, "scale", None)) if scale is None \
                else scale
            sha = file_sha256(path)
    elif not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, a weights file, a shipped model's "
                        f"name or a Predictor, got {type(model).__name__}")
    if sampling:
        raise ValueError(f"{name or type(model).__name__!r} is a deterministic network and "
                         f"draws no samples: {', '.join(sampling)} apply to diffusion models "
                         "only")
    scale = getattr(model, "scale", None) if scale is None else scale
    if scale is None:
        raise ValueError(f"{type(model).__name__} has no scale attribute; pass scale=")
    predictor = NetworkPredictor(model.to(device), scale=scale, name=name,
                                 self_ensemble=self_ensemble, n_draws=n_draws, halo=halo,
                                 weights_sha256=sha)
    predictor.domain = domain  # what a shipped model's card says it was trained on
    return predictor
