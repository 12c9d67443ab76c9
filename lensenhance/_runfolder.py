"""Output folders of resumable runs: checked, locked, cleaned, tied to their settings.

Every command that writes many files into one folder (``simulate``, ``generate``,
``enhance``/``denoise`` over a catalog) opens it with `open_run_folder`:

1. the path is checked before any work is done (a file, or a folder that cannot be
   created, is an error naming it);
2. an exclusive lock (``.lock``) keeps a second run out while one is writing; the
   kernel drops it when the process dies, however it dies;
3. temporaries left by a killed run (``.tmp-XXXXXXXX-name``, see `lensenhance._atomic`)
   are removed: under the lock no live writer can own them;
4. the folder is claimed only when it is empty or holds an earlier run of the same kind
   (its settings file, `RUN_FILES`): another tool's files (a simulation's truth
   ``catalog.ecsv``, say) are never replaced, not even with ``overwrite``;
5. the run's settings are compared with those recorded by an earlier run in the same
   folder: a rerun with the same settings resumes, one with other settings is refused
   with the differences named, unless the earlier run left nothing but its settings
   (it failed before its first output), so that a failed command never blocks its
   corrected rerun.

`Journal` is an append-only record of finished work (one JSON object a line) that
survives SIGKILL up to the last complete line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from ._atomic import atomic_write_bytes

__all__ = ["open_run_folder", "check_output_folder", "check_claim", "folder_lock",
           "remove_stale_temporaries", "Journal", "RunFolderError", "RUN_FILES"]

LOCK_NAME = ".lock"
# The names `lensenhance._atomic` gives its temporaries.
_TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{8}-")
#: The settings file of each kind of resumable run: it marks a folder as that run's.
RUN_FILES = {"run.json": "enhance/denoise", "generate_run.json": "generate",
             "simulate_run.json": "simulate"}
_LISTED = 4  # entries named in a message


class RunFolderError(ValueError):
    """An output folder that cannot be used (a file, not creatable, locked, other run)."""


def check_output_folder(path, *, option="--out", create=True):
    """Create ``path`` (and its parents) or say clearly why it cannot be a folder.

    Parameters
    ----------
    path : path-like
    option : str, optional
        How the caller names the path in messages.
    create : bool, optional
        False: only check that it could be created (nothing is created), e.g. before
        slower checks that may still fail.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    RunFolderError
        ``path`` or one of its parents is a file, or it cannot be created.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{option} {path}: exists and is not a folder")
    if not create:
        ancestor = path.absolute()
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise RunFolderError(f"{option} {path}: cannot create the folder: {ancestor} "
                                 "is a file")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise RunFolderError(f"{option} {path}: cannot create the folder: {ancestor} "
                                 "is not writable")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunFolderError(f"{option} {path}: cannot create the folder: a part of the "
                             "path is a file") from None
    except OSError as error:
        raise RunFolderError(f"{option} {path}: cannot create the folder "
                             f"({error.strerror or error})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunFolderError(f"{option} {path}: the folder is not writable")
    return path


def _contents(folder):
    """The names in ``folder`` that belong to some run or user: not hidden (the lock,
    temporaries, ``.DS_Store``)."""
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))


def check_claim(folder, settings_name, *, what, option="--out"):
    """Refuse to write a run into a folder that holds anything but runs of its own kind.

    A folder is claimed only when it is empty or holds ``settings_name`` (an earlier run
    of the same kind; its settings are compared by the caller). Anything else is another
    tool's output or a user's files, which a run must never replace, whatever
    ``overwrite`` says.

    Parameters
    ----------
    folder : path-like
        An existing folder.
    settings_name : str
        The settings file of this kind of run (see `RUN_FILES`).
    what : str
        Names the run in the message ("enhance", "generate" ...).
    option : str, optional
        How the caller names the folder in messages.

    Raises
    ------
    RunFolderError
        The folder holds another kind of run, or other files; the message names the
        folder and what is in it.
    """
    folder = Path(folder)
    names = _contents(folder)
    if not names or settings_name in names:
        return
    runs = [f"the output of {_a(RUN_FILES[name])} run ({name})" for name in names
            if name in RUN_FILES]
    shown = ", ".join(names[:_LISTED]) + (f" and {len(names) - _LISTED} more"
                                          if len(names) > _LISTED else "")
    found = runs[0] + f": {shown}" if runs else f"files that no {what} run wrote: {shown}"
    raise RunFolderError(f"{option} {folder}: holds {found}; {_a(what)} run writes only "
                         "into an empty folder or its own earlier run's, and never replaces "
                         f"another tool's files (not even with --overwrite); use another "
                         f"{option}")


def _a(word):
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def remove_stale_temporaries(folder):
    """Remove the temporaries that killed writers left under ``folder``.

    Only call this while holding the folder's lock: a live writer's temporary would
    be removed under it.

    Returns
    -------
    int
        How many were removed.
    """
    removed = 0
    for root, dirs, files in os.walk(folder):
        for name in [d for d in dirs if _TEMPORARY.match(d)]:
            shutil.rmtree(Path(root) / name, ignore_errors=True)
            dirs.remove(name)
            removed += 1
        for name in files:
            if _TEMPORARY.match(name):
                with contextlib.suppress(FileNotFoundError):
                    (Path(root) / name).unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def folder_lock(folder):
    """Hold the exclusive lock of a run folder for the block (see the module docstring).

    Raises
    ------
    RunFolderError
        Another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; runs are trusted
        yield
        return
    path = Path(folder) / LOCK_NAME
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise RunFolderError(f"{folder}: another lensenhance run (pid {owner}) is "
                                 "writing to this folder; wait for it or use another "
                                 "--out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _settings_text(settings):
    return json.dumps(settings, indent=1, sort_keys=True, default=str) + "\n"


def _check_settings(path, settings, *, overwrite, what):
    """Refuse a rerun with other settings; record the settings of this one."""
    if path.is_file() and not overwrite:
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RunFolderError(f"{path}: cannot read the settings of the earlier run "
                                 f"({error}); use --overwrite (overwrite=True) to start "
                                 "afresh") from None
        # A round trip through JSON, so that tuples compare equal to lists.
        current = json.loads(_settings_text(settings))
        changed = [f"{key}: {previous.get(key)!r} -> {value!r}"
                   for key, value in current.items() if previous.get(key) != value]
        # An earlier run that failed before its first output claims nothing.
        if changed and _contents(path.parent) != [path.name]:
            raise RunFolderError(f"{path.parent} holds the output of another {what} run ("
                                 + "; ".join(changed) + "); use another --out (out_dir=), or "
                                 "--overwrite (overwrite=True) to replace it")
        if not changed:
            return True
    atomic_write_bytes(path, _settings_text(settings).encode())
    return False


@contextlib.contextmanager
def open_run_folder(out_dir, *, settings, settings_name, overwrite=False, what="this",
                    option="--out"):
    """Check, lock and clean an output folder, and tie it to the run's settings.

    Parameters
    ----------
    out_dir : path-like
        The folder (created).
    settings : dict
        What makes the run's output what it is (JSON-serialisable); recorded in
        ``out_dir/settings_name`` by the first run.
    settings_name : str
        The settings file, e.g. ``"run.json"``.
    overwrite : bool, optional
        Start afresh: the recorded settings are replaced without comparison.
    what : str, optional
        Names the kind of run in messages ("simulate", "enhance" ...).
    option : str, optional
        How the caller names ``out_dir`` in messages.

    Yields
    ------
    types.SimpleNamespace
        ``path``: the folder, locked for the duration of the block; ``resuming``: True
        when an earlier run with the same settings wrote it.

    Raises
    ------
    RunFolderError
        The folder cannot be used: see `check_output_folder`; another run holds its
        lock; it holds another kind of run or other files (`check_claim`); or an
        earlier run with other settings wrote it (the message names what differs).
    """
    from types import SimpleNamespace

    out_dir = check_output_folder(out_dir, option=option)
    with folder_lock(out_dir):
        remove_stale_temporaries(out_dir)
        check_claim(out_dir, settings_name, what=what, option=option)
        resuming = _check_settings(out_dir / settings_name, settings, overwrite=overwrite,
                                   what=what)
        try:
            yield SimpleNamespace(path=out_dir, resuming=resuming)
        except BaseException:
            # Interrupted: its writers have stopped; what a killed one left goes now,
            # while the lock is still held, not at the next run.
            remove_stale_temporaries(out_dir)
            raise


class Journal:
    """An append-only log of finished work: one JSON object a line.

    A line is written with a single ``write`` and flushed at once, so a run killed at
    any moment leaves every finished record but at most a truncated last line, which
    `read` skips.

    Parameters
    ----------
    path : path-like
    """

    def __init__(self, path):
        self.path = Path(path)
        self._handle = None

    def read(self):
        """The records written so far, oldest first (a truncated last line is skipped)."""
        if not self.path.is_file():
            return []
        records = []
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
        return records

    def reset(self):
        """Forget every record (a run started afresh)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def append(self, record):
        """Write one record and flush it to the operating system."""
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
            # A line cut short by a kill would otherwise glue itself to the next one.
            if self._handle.tell() > 0:
                with open(self.path, "rb") as check:
                    check.seek(-1, os.SEEK_END)
                    if check.read(1) != b"\n":
                        self._handle.write("\n")
        self._handle.write(json.dumps(record, default=str) + "\n")
        self._handle.flush()

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
