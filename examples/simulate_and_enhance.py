"""
Simulate, write, super-resolve and check one lens (a script)
============================================================

Simulate an observed lens, write it as FITS, super-resolve it and check the result.

Run with ``python examples/simulate_and_enhance.py [OUT_DIR]``.
"""

import sys
from pathlib import Path

import numpy as np

import lensenhance as le
from lensenhance.pretrained import best_by_validation, sr_models_for


def main(out_dir="example_out"):
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)

    # A Model-I-like lens with CDM subhalos observed with 0.1" pixels (the input of the x2
    # models): CCDData with unit, TAN WCS and the exact per-pixel noise as uncertainty.
    sim = le.LensSimulator.from_preset("model_i", substructure="cdm", seed=42)
    observed = sim.simulate_image(ra=150.1, dec=2.2, binning=2)
    le.write_image(observed, out_dir / "observed.fits", overwrite=True)

    # Read it back as a user would, and super-resolve it with the shipped x2 model for
    # observed images that has the best validation PSNR in its card (the package's rule,
    # lensenhance.pretrained.best_by_validation).
    image = le.read_image(out_dir / "observed.fits")
    best = best_by_validation(sr_models_for(scale=2))
    enhancer = le.Enhancer.from_pretrained(best) if best else \
        le.Enhancer.interpolation("bicubic", scale=2)
    print(enhancer)
    enhanced = enhancer.enhance(image)
    le.write_image(enhanced, out_dir / "enhanced.fits", overwrite=True)

    # Same unit, twice the pixels, the flux split over them (the total moves by what the
    # network adds, about 1 %), and the WCS still points at the lens.
    print("unit:", image.unit, "->", enhanced.unit)
    print("shape:", image.shape, "->", enhanced.shape)
    print(f"total flux: {np.nansum(image.data):.3f} -> {np.nansum(enhanced.data):.3f}")
    centre_in = image.wcs.pixel_to_world((image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2)
    centre_out = enhanced.wcs.pixel_to_world((enhanced.shape[1] - 1) / 2,
                                             (enhanced.shape[0] - 1) / 2)
    print(f"centre offset: {centre_in.separation(centre_out).to('arcsec'):.2e}")


if __name__ == "__main__":
    main(*sys.argv[1:])
