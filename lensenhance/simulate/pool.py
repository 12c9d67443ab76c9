"""Worker processes for the simulator, kept alive between runs.

Starting a process and importing lenstronomy in it takes about a second, far longer than
simulating a few hundred images, so the pools are built once per worker count and
reused (each worker also keeps its lenstronomy model objects, see
:func:`~lensenhance.simulate.render.get_renderer`). Workers come from a ``forkserver``
that has already imported the simulator: fast to start, and safe in a parent process
that runs threads (torch, dask). :func:`shutdown_pools` stops them; they also stop when
the interpreter exits, and within a fraction of a second when the parent is killed
(`lensenhance._workers.watch_parent`), so a killed ``lensenhance simulate`` leaves no
orphaned workers.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

from .._workers import process_context, watch_parent

__all__ = ["get_pool", "discard_pool", "shutdown_pools"]

_POOLS = {}
# imported once by the forkserver, so that every worker starts with them loaded
_PRELOAD = ["lensenhance.simulate.render", "lenstronomy.LensModel.lens_model",
            "lenstronomy.LightModel.light_model", "lenstronomy.LensModel.Profiles.sie",
            "lenstronomy.LensModel.Profiles.shear", "lenstronomy.LensModel.Profiles.point_mass",
            "lenstronomy.LightModel.Profiles.sersic", "lenstronomy.LightModel.Profiles.gaussian",
            "lenstronomy.Util.param_util", "astropy.cosmology"]


def get_pool(workers):
    """The shared process pool with ``workers`` processes (created on first use)."""
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = ProcessPoolExecutor(
            workers, mp_context=process_context(_PRELOAD), initializer=watch_parent,
            initargs=(os.getpid(),))
    return pool


def discard_pool(workers):
    """Forget (and stop) the pool of ``workers`` processes, e.g. after a worker died."""
    pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def shutdown_pools():
    """Stop every worker process started by the simulator."""
    for workers in list(_POOLS):
        discard_pool(workers)
