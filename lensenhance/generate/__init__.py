"""`Generator`: lensing images drawn from a diffusion model (``generator.py``)."""

from .generator import Generator, generate_to_disk, super_resolve, to_ccddata

__all__ = ["Generator", "generate_to_disk", "super_resolve", "to_ccddata"]
