"""Catalogs of images (ECSV or FITS tables) with portable, checked paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Column, MaskedColumn, Table

from .._atomic import atomic_target
from ._common import _check_readable_file

# Catalog suffixes and the astropy.table format that reads them.
_CATALOG_FORMATS = {
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".fit.gz": "fits",
}


def _catalog_format(path):
    name = Path(path).name.lower()
    for suffix, fmt in sorted(_CATALOG_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ValueError(
        f"{path}: unknown catalog format; use one of {', '.join(_CATALOG_FORMATS)}"
    )


def _path_column_names(table, path_columns):
    """Names of the path columns: those listed that exist, and any ending in ``_path``."""
    if isinstance(path_columns, str):
        path_columns = (path_columns,)
    names = [name for name in path_columns if name in table.colnames]
    return names + [n for n in table.colnames if n.endswith("_path") and n not in names]


def _map_path_column(column, func):
    """A copy of a string column with func applied to its non-empty, unmasked entries."""
    mask = np.ma.getmaskarray(column)
    values = []
    for i, value in enumerate(column):
        if mask[i]:
            values.append("")
            continue
        value = value.decode() if isinstance(value, bytes) else str(value)
        values.append(func(i, value) if value.strip() else value)
    if mask.any():
        return MaskedColumn(values, name=column.name, mask=mask, dtype=str)
    return Column(values, name=column.name, dtype=str)


def read_catalog(path, *, path_columns=("path",), allow_outside=False):
    """Read a catalog of images (ECSV or FITS table) with its paths made absolute.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.ecsv``, ``.fits``, ``.fit`` or ``.fits.gz`` table.
    path_columns : sequence of str, optional
        Columns that hold file paths (those that exist are used); columns whose name
        ends in ``_path`` (``lr_path``, ``hr_path`` ...) are path columns too.
    allow_outside : bool, optional
        Accept paths that resolve outside the catalog's folder. Default False: a
        catalog cannot point at arbitrary files through ``..``, absolute paths or
        symbolic links.

    Returns
    -------
    table : `~astropy.table.Table`
        The catalog; relative paths are resolved against the catalog's folder and every
        path is absolute, with symbolic links resolved.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        ``path`` does not exist or is a folder.
    OSError
        The file cannot be parsed as a table.
    ValueError
        Unknown suffix, or a path leaves the catalog's folder (naming the row).
    """
    path = _check_readable_file(path, "catalog")
    fmt = _catalog_format(path)
    try:
        table = Table.read(path, format=fmt)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise OSError(f"{path}: cannot read the catalog as {fmt} ({exc})") from None
    root = path.resolve().parent
    for name in _path_column_names(table, path_columns):

        def resolve(row, value, name=name):
            resolved = (root / Path(value).expanduser()).resolve()
            if not allow_outside and not resolved.is_relative_to(root):
                raise ValueError(
                    f"{path}: row {row}, column {name!r}: the path {value!r} resolves to "
                    f"{resolved}, outside the catalog's folder {root}; pass "
                    "allow_outside=True to accept it"
                )
            return str(resolved)

        table.replace_column(name, _map_path_column(table[name], resolve))
    return table


def write_catalog(table, path, *, overwrite=False, relative_to=None, path_columns=("path",)):
    """Write a catalog (ECSV or FITS by suffix) atomically, with portable paths.

    Paths that lie inside the catalog's folder are written relative to it, so that the
    folder can be moved as a whole; other paths are written absolute.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The catalog.
    path : str or os.PathLike
        The file to write: ``.ecsv``, ``.fits``, ``.fit`` or ``.fits.gz``.
    overwrite : bool, optional
        Replace an existing file. Default False.
    relative_to : str or os.PathLike, optional
        Folder that the relative paths in ``table`` refer to. By default they already
        refer to the catalog's folder and are written unchanged.
    path_columns : sequence of str, optional
        As in `read_catalog`.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Unknown suffix.
    """
    if not isinstance(table, Table):
        raise TypeError(f"write_catalog: expected an astropy Table, got {type(table).__name__}")
    path = Path(path)
    fmt = _catalog_format(path)
    root = path.parent.resolve()
    base = None if relative_to is None else Path(relative_to).resolve()
    table = table.copy()

    def portable(row, value):
        target = Path(value).expanduser()
        if not target.is_absolute():
            if base is None:
                return target.as_posix()
            target = base / target
        target = target.resolve()
        return target.relative_to(root).as_posix() if target.is_relative_to(root) else str(target)

    for name in _path_column_names(table, path_columns):
        table.replace_column(name, _map_path_column(table[name], portable))
    with atomic_target(path, overwrite=overwrite) as tmp:
        table.write(tmp, format=fmt, overwrite=True)


