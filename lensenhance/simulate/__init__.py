"""Lenstronomy-backed simulation of strong-lensing images (no torch in this layer).

>>> from lensenhance.simulate import LensSimulator
>>> sim = LensSimulator.from_preset("model_i", substructure="cdm", seed=0)
>>> ds = sim.simulate_pairs(8, scale=2, progress=False)      # doctest: +SKIP
>>> ccd = sim.simulate_image(ra=150.0, dec=2.2)               # doctest: +SKIP

The presets' numbers live in :mod:`lensenhance.simulate.presets`; the physics in
:mod:`~lensenhance.simulate.physics`; rendering and noise in
:mod:`~lensenhance.simulate.render` and :mod:`~lensenhance.simulate.noise`; the substructure's
detectability in :mod:`~lensenhance.simulate.detectability`.
"""

from .noise import background_variance, observe
from .physics import (
    TRUTH_FIELDS,
    LensingDistances,
    Scene,
    de_broglie_length,
    draw_scene,
    einstein_radius,
    velocity_dispersion,
)
from .pool import shutdown_pools
from .presets import PRESETS, SUBSTRUCTURES, Preset, presets_table
from .render import bin_image
from .simulator import UNIT, LensSimulator, tan_wcs, truth_header

__all__ = [
    "LensSimulator",
    "PRESETS",
    "SUBSTRUCTURES",
    "Preset",
    "presets_table",
    "Scene",
    "draw_scene",
    "LensingDistances",
    "einstein_radius",
    "velocity_dispersion",
    "de_broglie_length",
    "TRUTH_FIELDS",
    "bin_image",
    "background_variance",
    "observe",
    "tan_wcs",
    "truth_header",
    "UNIT",
    "shutdown_pools",
]
