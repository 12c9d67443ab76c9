"""The engine: predictors, diffusion posteriors, tiling, normalisation, pixels, loading.

Normalised tensors in, a mean (and a standard deviation and samples) out: what the
`~lensenhance.Enhancer` runs on an image's tiles. No FITS, units or WCS here beyond the
unit's flux-split rule (`lensenhance.predict.pixels`).
"""
