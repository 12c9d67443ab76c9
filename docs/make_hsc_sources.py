"""Build lensenhance/data/hsc_sources/hsc_dud_train_sources.fits from the shared HSC set.

The source galaxies of the ``deeplense_model_iv`` preset: 24 Deep/UltraDeep cutouts of
the ``train`` split of ``../shared/data/hsc_wide_dud`` (never ``val``: its rows are those
results are reported on). Re-runnable: ``python docs/make_hsc_sources.py [SHARED_SET]``;
the package itself never needs the shared folder.

Selection rule: the first 24 ``train`` rows in catalog order whose Deep/UltraDeep
cutout, after subtracting the median of its top-left 12 x 12 pixel corner (DeepLenseSim's
50 x 50 corner of 256 px images, at 64 px; `lensenhance.simulate.physics.source_background`),

* has its brightest pixel within 2 px of the centre on each axis (rows and columns
  30-33: a central galaxy), and
* has between -10 % and +10 % of its total flux outside a radius of 24 px from the
  centre (a galaxy that is whole and not blended with a bright neighbour, and a
  background the corner estimates fairly).

The file holds the cutouts as they are in the shared set (float32, no background
subtracted): the primary HDU a (24, 64, 64) cube, the ``NAMES`` table HDU the ``name``
and the catalog ``row`` of each.
"""

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared" / "data" / "hsc_wide_dud"
OUT = ROOT / "lensenhance" / "data" / "hsc_sources" / "hsc_dud_train_sources.fits"
N_SOURCES = 24
CENTRE_TOLERANCE = 2  # pixels, each axis, around the centre (31.5, 31.5)
OUTER_RADIUS = 24.0  # pixels
OUTER_FRACTION = 0.10


def passes(image):
    """The selection check on one cutout (see the module docstring)."""
    from lensenhance.simulate.physics import source_background

    image = np.asarray(image, dtype=np.float64)
    image = image - source_background(image)
    ny, nx = image.shape
    total = image.sum()
    if not total > 0:
        return False
    row, column = np.unravel_index(np.argmax(image), image.shape)
    if abs(row - (ny - 1) / 2) > CENTRE_TOLERANCE + 0.5 or \
            abs(column - (nx - 1) / 2) > CENTRE_TOLERANCE + 0.5:
        return False
    y, x = np.mgrid[:ny, :nx]
    outer = np.hypot(y - (ny - 1) / 2, x - (nx - 1) / 2) > OUTER_RADIUS
    return abs(image[outer].sum()) <= OUTER_FRACTION * total


def main(shared=SHARED):
    shared = Path(shared)
    catalog = Table.read(shared / "catalog.ecsv")
    images, names, rows = [], [], []
    for index, entry in enumerate(catalog):
        if entry["split"] != "train":  # val rows are for reported results only
            continue
        image = fits.getdata(shared / entry["target_path"]).astype(np.float32)
        if image.shape != (64, 64) or not passes(image):
            continue
        images.append(image)
        names.append(str(entry["name"]))
        rows.append(index)
        if len(images) == N_SOURCES:
            break
    if len(images) < N_SOURCES:
        raise RuntimeError(f"only {len(images)} cutouts pass the check")
    primary = fits.PrimaryHDU(np.stack(images))
    header = primary.header
    header["ORIGIN"] = ("HSC-SSP via ander-db/DDPM-HSC", "Aihara et al. 2018, PASJ 70, S4")
    header["SURVEY"] = ("HSC-SSP Deep/UltraDeep", "cutouts of the train split only")
    header["PIXSCALE"] = (0.168, "[arcsec] HSC pixel")
    header["COMMENT"] = "Source galaxies of lensenhance's deeplense_model_iv preset;"
    header["COMMENT"] = "built by docs/make_hsc_sources.py (selection rule there)."
    table = fits.BinTableHDU(Table({"name": names, "row": np.array(rows, np.int32)}),
                             name="NAMES")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, table]).writeto(OUT, overwrite=True)
    print(f"{OUT}: {len(images)} cutouts, {OUT.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(*sys.argv[1:])
