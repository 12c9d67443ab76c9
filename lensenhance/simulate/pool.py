"""Worker processes for the simulator, kept alive between runs.

Starting a process and importing lenstronomy in it takes about a second, far longer than
simulating a few hundred images, so the pools are built once per worker count and
reused (each worker also keeps its lenstronomy model objects, see
:func:`~lensenhance.simulate.render.get_renderer`). Workers come from a ``forkserver``
that has already imported the simulator: fast to start, and safe in a parent process
that runs threads (torch, dask). :func:`shutdown_pools` stops them; they also stop when
the interpreter exits.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

__all__ = ["get_pool", "discard_pool", "shutdown_pools"]

_POOLS = {}
# imported once by the forkserver, so that every worker starts with them loaded
_PRELOAD = ["lensenhance.simulate.render", "lenstronomy.LensModel.lens_model",
            "lenstronomy.LightModel.light_model", "lenstronomy.LensModel.Profiles.sie",
            "lenstronomy.LensModel.Profiles.shear", "lenstronomy.LensModel.Profiles.point_mass",
            "lenstronomy.LightModel.Profiles.sersic", "lenstronomy.LightModel.Profiles.gaussian",
            "lenstronomy.Util.param_util", "astropy.cosmology"]


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def get_pool(workers):
    """The shared process pool with ``workers`` processes (created on first use)."""
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=_context())
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
