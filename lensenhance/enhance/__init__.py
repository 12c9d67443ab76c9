"""The astropy-facing enhancer and the runs built on it.

`Enhancer` (``enhancer.py``) enhances images of any kind; ``catalog.py`` runs it row by
row over a FITS catalog (resume, status, summary); ``evaluation.py`` scores such runs
against truths (``lensenhance evaluate``).
"""

from .enhancer import OUTLIER_THRESHOLD, Enhancer

__all__ = ["Enhancer", "OUTLIER_THRESHOLD"]
