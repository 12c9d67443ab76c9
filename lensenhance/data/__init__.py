"""Small data files shipped with the package, for examples and tests."""

from pathlib import Path

__all__ = ["DATA_DIR", "hsc_sample"]

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
