"""lensenhance: simulate, enhance and generate strong gravitational lensing images.

Importing the package is cheap: the torch-backed classes (`Enhancer`, `Generator`)
and the lenstronomy-backed simulator are imported on first use.
"""

from ._version import __version__

__all__ = [
    "__version__",
    "LensSimulator",
    "Enhancer",
    "Generator",
    "LensClassifier",
    "list_pretrained",
    "model_card",
    "read_image",
    "write_image",
    "read_catalog",
    "write_catalog",
    "to_dataarray",
    "from_dataarray",
    "read_dataset",
    "write_dataset",
    "read_deeplense",
    "upsample_wcs",
    "downsample_wcs",
]

# name -> module that defines it; resolved lazily so that `import lensenhance`
# does not pull in torch or lenstronomy.
_LAZY = {
    "LensSimulator": "lensenhance.simulate",
    "Enhancer": "lensenhance.enhance",
    "Generator": "lensenhance.generate",
    "LensClassifier": "lensenhance.classify",
    "list_pretrained": "lensenhance.pretrained",
    "model_card": "lensenhance.pretrained",
    **{name: "lensenhance.io" for name in (
        "read_image", "write_image", "read_catalog", "write_catalog", "to_dataarray",
        "from_dataarray", "read_dataset", "write_dataset", "upsample_wcs", "downsample_wcs",
        # deprecated names, kept for old scripts (not in __all__)
        "open_dataset", "save_dataset")},
    "read_deeplense": "lensenhance.io",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lensenhance' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
