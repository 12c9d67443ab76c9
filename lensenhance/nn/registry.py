"""The registry of network architectures: one name per architecture, one way to build it.

Every network of `lensenhance.nn` carries a JSON-ready ``config`` dict,
``{"architecture": name, **constructor_arguments}``; `model_from_config` looks ``name``
up here and calls the registered class with the rest, which is how a weights file
rebuilds its network (`lensenhance.nn.weights.load_weights`).

Architectures register in one of two ways:

- `register_architecture` is a class decorator, for classes whose module is imported
  anyway (the residual SR networks of `lensenhance.nn.sr`);
- `register_lazy_architecture` records a ``"module:Class"`` string that is imported on
  first use, for architectures with heavy or optional imports (escnn, diffusers), so
  that importing `lensenhance.nn` never pulls those in.

Nothing here assumes a scale, a number of channels or a call signature: a registered
network may map ``(x, t, cond)`` to an image of the same size as well as ``x`` to an
upsampled one. Standard library only.
"""

from __future__ import annotations

import importlib

__all__ = [
    "register_architecture",
    "register_lazy_architecture",
    "get_architecture",
    "list_architectures",
    "build_model",
    "model_from_config",
]

# name -> class (or other callable returning a module), imported already
_ARCHITECTURES: dict[str, object] = {}

# name -> "module:attribute", imported on first use
_LAZY: dict[str, str] = {
    "efsrcnn": "lensenhance.nn.equivariant:EquivariantFSRCNN",  # needs escnn
    "localunet": "lensenhance.nn.localunet:LocalUNet",
    "raunet": "lensenhance.nn.raunet:RAUNet",
    "smallresnet": "lensenhance.nn.resnet:SmallResNet",
    "unet": "lensenhance.nn.unet:DiffusionUNet",  # needs diffusers
}


def _check_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"an architecture name must be a non-empty str, got {name!r}")
    if name != name.lower():
        raise ValueError(f"architecture names are lower case, got {name!r}")
    return name


def _same_definition(a, b) -> bool:
    # A re-imported module (importlib.reload, a test's fresh import) defines a new class
    # object with the same qualified name: that is the same architecture, not a clash.
    return a is b or (getattr(a, "__module__", None) == getattr(b, "__module__", 0)
                      and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", 0))


def register_architecture(name: str, *, overwrite: bool = False):
    """Class decorator: record ``cls`` as the architecture ``name``.

    Parameters
    ----------
    name : str
        The name stored as ``config["architecture"]`` (lower case).
    overwrite : bool, optional
        Replace another class already registered under ``name``.

    Returns
    -------
    callable
        The decorator; it returns the class unchanged, except that a class without an
        ``architecture`` attribute gets ``architecture = name``.

    Raises
    ------
    ValueError
        If ``name`` is taken by another class, or the class says it is another
        architecture.

    Examples
    --------
    >>> from torch import nn
    >>> @register_architecture("tinynet")  # doctest: +SKIP
    ... class TinyNet(nn.Module):
    ...     def __init__(self, *, channels=4):
    ...         super().__init__()
    ...         self.config = {"architecture": "tinynet", "channels": channels}
    """
    _check_name(name)

    def decorator(cls):
        if not callable(cls):
            raise TypeError(f"register_architecture({name!r}) needs a class or callable, "
                            f"got {type(cls).__name__}")
        declared = getattr(cls, "architecture", None) if isinstance(cls, type) else None
        if declared and declared != name:
            raise ValueError(f"{cls.__qualname__}.architecture is {declared!r}, but it is "
                             f"being registered as {name!r}")
        existing = _ARCHITECTURES.get(name)
        if existing is not None and not overwrite and not _same_definition(existing, cls):
            raise ValueError(f"architecture {name!r} is already registered "
                             f"({_describe(existing)}); pass overwrite=True to replace it")
        if isinstance(cls, type) and not declared:
            cls.architecture = name
        _ARCHITECTURES[name] = cls
        _LAZY.pop(name, None)  # the class itself now answers for the lazy entry
        return cls

    return decorator


def register_lazy_architecture(name: str, target: str, *, overwrite: bool = False) -> None:
    """Record an architecture by ``"module:Class"``, imported the first time it is used.

    Parameters
    ----------
    name : str
        The architecture name.
    target : str
        ``"package.module:ClassName"``.
    overwrite : bool, optional
        Replace another entry under ``name``.
    """
    _check_name(name)
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise ValueError(f"a lazy architecture must be given as 'module:Class', got {target!r}")
    if not overwrite and (name in _ARCHITECTURES or _LAZY.get(name, target) != target):
        raise ValueError(f"architecture {name!r} is already registered; pass overwrite=True "
                         "to replace it")
    _ARCHITECTURES.pop(name, None)
    _LAZY[name] = target


def _describe(entry) -> str:
    if isinstance(entry, str):
        return entry
    module = getattr(entry, "__module__", None)
    qualname = getattr(entry, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else repr(entry)


def list_architectures() -> list[str]:
    """Names of every registered architecture (lazy entries included, none imported).

    Returns
    -------
    list of str
        Sorted names.
    """
    return sorted({*_ARCHITECTURES, *_LAZY})


def get_architecture(name: str):
    """The class (or builder) registered as ``name``; imports a lazy entry on first use.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the registered ones).
    ImportError
        If a lazy entry's module cannot be imported (a missing optional dependency).
    """
    if not isinstance(name, str):
        raise TypeError(f"an architecture name must be a str, got {type(name).__name__}")
    if name not in _ARCHITECTURES and name not in _LAZY:
        _import_builtin()  # the first lookup may come before lensenhance.nn.sr is imported
    if name in _ARCHITECTURES:
        return _ARCHITECTURES[name]
    if name not in _LAZY:
        raise ValueError(f"unknown architecture {name!r}; choose from "
                         f"{', '.join(list_architectures())}")
    target = _LAZY[name]
    module_name, attribute = target.split(":")
    module = importlib.import_module(module_name)  # an optional dependency may fail here
    try:
        cls = getattr(module, attribute)
    except AttributeError as err:
        raise ImportError(f"architecture {name!r}: {module_name} has no {attribute}") from err
    if _LAZY.get(name) == target:  # the module did not register itself
        register_architecture(name, overwrite=True)(cls)
    return _ARCHITECTURES[name]


def _import_builtin() -> None:
    # The residual SR networks register themselves when their module is imported.
    importlib.import_module("lensenhance.nn.sr")


def build_model(name: str, **kwargs):
    """Build the architecture ``name`` with constructor arguments ``kwargs``.

    Parameters
    ----------
    name : str
        One of `list_architectures`.
    **kwargs
        The class's constructor arguments.

    Returns
    -------
    torch.nn.Module
        A network whose ``config`` rebuilds it through `model_from_config`.
    """
    cls = get_architecture(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"architecture {name!r} ({_describe(cls)}): {err}") from err


def model_from_config(config: dict):
    """Rebuild a network from its ``config`` dict (as every registered network stores it).

    Parameters
    ----------
    config : dict
        ``{"architecture": name, **constructor_arguments}``.

    Returns
    -------
    torch.nn.Module
    """
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(f"a model config must be a dict with an 'architecture' name, "
                         f"got {config!r}")
    kwargs = dict(config)
    return build_model(kwargs.pop("architecture"), **kwargs)
