"""Worker processes that die with the process that started them (standard library only).

A process pool's workers block on a pipe that they themselves hold open, so when the
parent is killed (SIGKILL, OOM killer) they wait forever: orphans that hold memory and,
for a run folder, could still rename a file into it. `watch_parent`, run as a pool's
``initializer``, starts a thread in each worker that ends the worker within a fraction of
a second once the parent is gone.
"""

from __future__ import annotations

import _thread
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time

__all__ = ["watch_parent", "process_context", "POLL_SECONDS", "stop_on_signals",
           "running_task", "stop_processes", "STOP_SECONDS"]

#: How often a worker checks that its parent is alive.
POLL_SECONDS = 0.25
#: How long stopped workers get to finish cleaning up before they are killed.
STOP_SECONDS = 20.0


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


# -- stopping workers cleanly (SIGTERM from a batch scheduler, Ctrl-C) ----------------------

_state = {"task": False, "stopping": False}


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop():
    """What a stop signal does: interrupt the task, or end an idle worker at once."""
    _state["stopping"] = True
    if _state["task"]:
        # Unwinds the task: a file it is writing atomically is removed on the way out.
        _thread.interrupt_main()
    else:
        # Between tasks: nothing to clean up. An idle worker holds the pool's queue lock
        # while it waits for work; an exception could leave it held and the other
        # workers waiting on it forever; leaving at once cannot.
        os._exit(0)


def _receive_stops():
    while True:
        signal.sigwait(_STOP_SIGNALS)
        _stop()


def _on_stop_signal(signum, frame):
    _stop()


def stop_on_signals():
    """In a pool worker: make SIGTERM and SIGINT end it cleanly.

    A worker killed by SIGTERM's default action leaves the temporary file of the write
    it was in. With this, the signal interrupts a task run inside `running_task` with
    KeyboardInterrupt, so that its cleanup runs, and then ends the worker; a worker
    between tasks ends at once. Neither prints a traceback. Call it from the pool's
    ``initializer`` (the worker's main thread) before it starts any thread.

    The signals are received by a thread of their own (``sigwait``): a process-directed
    signal may otherwise go to any thread, and a main thread blocked on a lock would never
    see it. The worker should create no semaphores of its own (e.g. tqdm's lock: give
    tqdm a thread lock): they would be reported as leaked when it ends this way.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _on_stop_signal)
        return
    # Blocked here, so in every thread started from now on; only sigwait takes them.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    threading.Thread(target=_receive_stops, daemon=True, name="lensenhance-stop").start()


@contextlib.contextmanager
def running_task():
    """Mark the block as a worker's task for `stop_on_signals`.

    Raises
    ------
    KeyboardInterrupt
        On entry, when the worker was already told to stop: the tasks still queued for
        it end at once.
    """
    if _state["stopping"]:
        raise KeyboardInterrupt("the worker is stopping")
    _state["task"] = True
    try:
        yield
    finally:
        _state["task"] = False
        if _state["stopping"]:
            # Stopped during the task, which has unwound and cleaned up: no lock of the
            # pool is held here, and no more work is wanted.
            os._exit(0)


def stop_processes(processes, *, timeout=STOP_SECONDS):
    """Stop worker processes and wait for them: SIGTERM, then SIGKILL after ``timeout``.

    Workers set up with `stop_on_signals` clean up before they exit; the caller can
    then rely on none of them writing any more.

    Parameters
    ----------
    processes : iterable of multiprocessing.Process
    timeout : float, optional
        Seconds all of them together get to exit before the rest are killed.
    """
    processes = [p for p in processes if p.is_alive()]
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


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
