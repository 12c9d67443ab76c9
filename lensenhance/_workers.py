"""Worker processes that die with the process that started them (standard library only).

A process pool's workers block on a pipe that they themselves hold open, so when the
parent is killed (SIGKILL, OOM killer) they wait forever: orphans that hold memory and,
for a run folder, could still rename a file into it. `watch_parent`, run as a pool's
``initializer``, starts a thread in each worker that ends the worker within a fraction of
a second once the parent is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time

__all__ = ["watch_parent", "process_context", "POLL_SECONDS"]

#: How often a worker checks that its parent is alive.
POLL_SECONDS = 0.25


def _start_time(pid):
    """The start time of process ``pid`` (Linux ``/proc``), or None where unknown.

    Compared with the value seen at start, it tells a live parent from a new process
    that was given the dead parent's pid.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _alive(pid, start):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS, Windows): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    # A killed parent whose own parent has not reaped it yet is a zombie (Z): gone.
    if fields[0] in (b"Z", b"X"):
        return False
    return start is None or fields[19] == start


def _watch(pid, start, interval):
    while _alive(pid, start):
        time.sleep(interval)
    # The parent is gone: nobody will read what this worker produces.
    os._exit(1)


def watch_parent(pid, *, interval=POLL_SECONDS):
    """End this process soon after process ``pid`` has ended (a daemon thread polls it).

    Parameters
    ----------
    pid : int
        The process whose death should end this one: the process that created the pool
        (with the ``forkserver`` start method a worker's own parent is the fork server,
        which outlives a killed parent while workers remain).
    interval : float, optional
        Seconds between checks.
    """
    start = _start_time(pid)
    thread = threading.Thread(target=_watch, args=(pid, start, interval), daemon=True,
                              name="lensenhance-watch-parent")
    thread.start()
    return thread


def process_context(preload=()):
    """A multiprocessing context for worker pools: ``forkserver`` where it exists.

    Workers forked from a server that has already imported ``preload`` start fast, and
    forking from it is safe in a parent that runs threads (torch, dask); elsewhere
    (macOS, Windows) ``spawn``.
    """
    if "forkserver" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        ctx = multiprocessing.get_context("forkserver")
        if preload:
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")
