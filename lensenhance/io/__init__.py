"""Reading and writing images, catalogs and datasets, and resampling their WCS.

This package is the astropy side of lensenhance: every image that enters the package
goes through `read_image`, which returns a `~astropy.nddata.CCDData` with float32
data (float64 kept on request), a unit, a celestial 2-D WCS (or None), and mask and
uncertainty when known.

One module per concept:

* `lensenhance.io.images`: FITS images, `read_image` and `write_image`;
* `lensenhance.io.catalogs`: catalogs of images with portable paths;
* `lensenhance.io.datasets`: xarray DataArrays and netCDF/zarr datasets;
* `lensenhance.io.deeplense`: the published DeepLense ``.npy`` datasets;
* `lensenhance.io.wcs`: WCS resampling (`upsample_wcs`, `resample_header_wcs`).

Every writer is atomic: it writes a temporary file (or folder) next to the target,
syncs it to disk and moves it into place with `os.replace`, so a failed or interrupted
write never leaves a partial file; nothing is overwritten unless ``overwrite=True``.
"""

from ._common import MissingUnitWarning, WCSResampleWarning
from .catalogs import read_catalog, write_catalog
from .datasets import (
    from_dataarray,
    open_dataset,  # noqa: F401  (deprecated, not in __all__)
    read_dataset,
    save_dataset,  # noqa: F401  (deprecated, not in __all__)
    to_dataarray,
    write_dataset,
)
from .deeplense import read_deeplense
from .images import (
    MASK_EXTNAME,
    SCI_EXTNAME,
    UNCERT_EXTNAME,
    create_image,
    describe_image,
    read_image,
    write_image,
)
from .wcs import downsample_wcs, resample_header_wcs, upsample_wcs

__all__ = [
    "MissingUnitWarning",
    "WCSResampleWarning",
    "read_image",
    "write_image",
    "read_catalog",
    "write_catalog",
    "to_dataarray",
    "from_dataarray",
    "write_dataset",
    "read_dataset",
    "read_deeplense",
    "upsample_wcs",
    "downsample_wcs",
    "resample_header_wcs",
    "describe_image",
    "create_image",
    "MASK_EXTNAME",
    "UNCERT_EXTNAME",
    "SCI_EXTNAME",
]
