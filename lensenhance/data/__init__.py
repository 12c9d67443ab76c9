"""Small data files shipped with the package, for examples and tests."""

from pathlib import Path

__all__ = ["DATA_DIR", "hsc_sample", "hsc_sources"]

DATA_DIR = Path(__file__).parent


def hsc_sample():
    """The eight shipped HSC Wide vs Deep/UltraDeep cutout pairs.

    Returns
    -------
    astropy.table.Table
        Columns ``path`` (Wide depth), ``target_path`` (Deep/UltraDeep), ``name`` and
        ``split``; paths are absolute. See ``hsc_sample/README.md`` for the provenance and
        the acknowledgement (HSC-SSP, Aihara et al. 2018).
    """
    from ..io import read_catalog

    return read_catalog(DATA_DIR / "hsc_sample" / "catalog.ecsv",
                        path_columns=("path", "target_path"))


def hsc_sources():
    """The 24 shipped HSC Deep/UltraDeep galaxy cutouts used as lensed sources.

    The sources of the ``deeplense_model_iv`` preset (lenstronomy ``INTERPOL``): 64x64
    cutouts at 0.168"/px from the ``train`` split of the HSC set, as they are there (no
    background subtracted). See ``hsc_sources/README.md`` for the selection rule, the
    provenance and the acknowledgement (HSC-SSP, Aihara et al. 2018).

    Returns
    -------
    images : numpy.ndarray
        float32, shape (24, 64, 64).
    names : list of str
        The cutouts' names in the HSC set, in the order of ``images``.
    """
    from astropy.io import fits

    with fits.open(DATA_DIR / "hsc_sources" / "hsc_dud_train_sources.fits") as hdul:
        images = hdul[0].data.astype("float32")
        names = [str(name) for name in hdul["NAMES"].data["name"]]
    return images, names
