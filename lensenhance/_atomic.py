"""Atomic file writing shared by every layer (standard library only).

A writer gets a temporary path next to the target; only when the block succeeds is the
file synced and moved onto the target with `os.replace`, so a failed or killed write
never leaves a partial file. Nothing is replaced unless ``overwrite=True``.
"""

import contextlib
import os
import secrets
import shutil
from pathlib import Path

__all__ = ["atomic_target", "atomic_write_bytes"]



@contextlib.contextmanager
def atomic_target(path, *, overwrite, directory=False):
    """Yield a temporary path next to ``path``; move it onto ``path`` if the block succeeds.

    The temporary name ends with the target's name so that writers which pick a format
    or a compression from the suffix (``.fits.gz``, ``.ecsv``) behave as for the target.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path}: already exists; pass overwrite=True to replace it")
        if path.is_dir() and not directory:
            raise IsADirectoryError(f"{path}: is a directory; cannot write a file over it")
        if directory and not path.is_dir():
            raise NotADirectoryError(f"{path}: exists and is not a directory")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {parent} does not exist")

    tmp = _create_temporary(parent, path.name, directory=directory)
    try:
        yield tmp
        if directory:
            _replace_directory(tmp, path)
        else:
            _fsync_file(tmp)
            os.replace(tmp, path)
        _fsync_directory(parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _create_temporary(parent, name, *, directory):
    """Create an empty, new file or folder ``parent/.tmp-XXXX-name``.

    Unlike tempfile.mkstemp (mode 0600), the mode is what open() would give: the
    process umask applies.
    """
    while True:
        tmp = parent / f".tmp-{secrets.token_hex(4)}-{name}"
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def _replace_directory(tmp, path):
    # A directory cannot be renamed over a non-empty one: move the old one aside first.
    if path.exists():
        old = _create_temporary(path.parent, path.name, directory=True)
        os.replace(path, old)  # an empty directory can be replaced
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _fsync_file(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_directory(path):
    # Makes the rename itself durable; not possible on every platform (Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data, *, overwrite=True):
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_target(path, overwrite=overwrite) as tmp:
        Path(tmp).write_bytes(data)
