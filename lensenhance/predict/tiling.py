"""Blocked inference: any image size, serially, in batches on a GPU, or with dask.

An image (already normalised, once, for the whole image) is cut into a grid of *cores*;
each tile is a core grown by the blending band and by a *halo* of at least the
predictor's receptive field, clipped at the image edges. A tile's prediction is used on
its core and band only; the halo is cropped. Where neighbouring tiles overlap (the band,
``overlap`` input pixels wide), their predictions are blended with linear ramps that sum
to one. So:

* with ``halo`` >= the receptive field, every used pixel of a tile sees what it would
  see in a whole-image run, and the tiled result equals the whole-image one (to float
  rounding) for networks without global operations, with or without blending;
* for networks with global operations (``exact_tiling`` False: RCAN's channel attention,
  diffusion UNets) tiles differ slightly; blending makes the transition smooth.

Standard deviations are blended as variances; samples are blended like means.

Tiles of the same shape are batched (``batch_size``) onto the predictor's device. With
``parallel``, batches run as dask tasks, in the manner of reproject: ``True`` uses a
thread per core, an integer that many threads (each with one torch thread, so the
cores are shared out rather than oversubscribed), and ``"current-scheduler"`` whatever
dask scheduler is active, e.g. a `dask.distributed.Client`. Results are accumulated in
the calling process as they arrive, into arrays that may be memory maps, so memory
stays bounded by a few tiles whatever the image size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .._validation import check_int
from .scratch import release_heap, release_mapped_pages

__all__ = ["Tile", "check_tiling", "plan_tiles", "predict_images",
           "measure_receptive_field", "DEFAULT_TILE_SIZE"]

#: Default tile side (input pixels, halo included) on a CPU and on a GPU. On a CPU, 576
#: cuts a 1024^2 image into 2x2 tiles for a halo up to 32 (3x3 at 512 read 18 % more
#: pixels), with a 4096^2 run's peak memory still near 1 GB (`benchmark speed`).
DEFAULT_TILE_SIZE = {"cpu": 576, "cuda": 1024}


@dataclass(frozen=True)
class Tile:
    """One tile of one image (input pixels, ``(start, stop)`` per axis).

    Attributes
    ----------
    key : int
        Which image of the list.
    read : tuple of two (int, int)
        The region given to the predictor (y, x).
    used : tuple of two (int, int)
        The region whose prediction is kept (core and bands), inside ``read``.
    bands : tuple of two (int, int)
        Width of the blending band at the start and at the end of ``used``, per axis.
    noise_key : int, optional
        The key of the image's random numbers (`position_noise`); default ``key``.
    """

    key: int
    read: tuple
    used: tuple
    bands: tuple
    noise_key: int | None = None

    @property
    def shape(self):
        return tuple(b - a for a, b in self.read)

    def weights(self, scale):
        """Blending weights ``(s*uy, s*ux)`` over the used region (None: all ones)."""
        if not any(any(b) for b in self.bands):
            return None
        profiles = []
        for (a, b), (lo, hi) in zip(self.used, self.bands):
            w = np.ones((b - a) * scale)
            if lo:
                w[:lo * scale] = (np.arange(lo * scale) + 0.5) / (lo * scale)
            if hi:
                w[len(w) - hi * scale:] = 1 - (np.arange(hi * scale) + 0.5) / (hi * scale)
            profiles.append(w)
        return np.outer(*profiles).astype(np.float32)


def check_tiling(tile_size, halo, overlap):
    """Validate tiling options; raise ValueError naming the problem.

    ``tile_size`` None means the whole image in one pass.
    """
    check_int(halo, "halo", 0)
    check_int(overlap, "overlap", 0)
    if tile_size is None:
        return
    check_int(tile_size, "tile_size (or None: the whole image)", 1)
    if overlap >= tile_size:
        raise ValueError(f"overlap ({overlap}) must be smaller than tile_size ({tile_size})")
    if tile_size <= 2 * halo + overlap:
        raise ValueError(
            f"tile_size {tile_size} is too small for a halo of {halo} pixels on each side "
            f"and an overlap of {overlap}: it leaves no core; use tile_size > "
            f"{2 * halo + overlap} (the halo is the network's receptive field)")


def _axis_plan(n, tile_size, halo, overlap, align=1):
    """Per tile along one axis: (read, used, (band_start, band_end)).

    A read region starts on a multiple of ``align`` (its halo grows by up to
    ``align - 1`` pixels), so that a down-sampling network sees the same pooling grid
    in a tile as in the whole image. Every read region of an axis has the same length
    (an edge tile reads further inwards): each new tile shape costs torch's oneDNN
    kernels about 1 MB of cache that is never given back, so tiles of many shapes made
    the peak memory grow with the image.
    """
    if tile_size is None or n <= tile_size:
        return [((0, n), (0, n), (0, 0))]
    core = tile_size - 2 * halo - overlap
    count = math.ceil(n / core)
    edges = [round(i * n / count) for i in range(count + 1)]  # even cores, none tiny
    sizes = np.diff(edges)
    used, bands = [], []
    for i in range(count):
        # a band never exceeds the cores it joins, so that bands never meet
        lo = min(overlap, sizes[i - 1], sizes[i]) if i > 0 else 0
        hi = min(overlap, sizes[i], sizes[i + 1]) if i < count - 1 else 0
        used.append((edges[i] - lo // 2, edges[i + 1] + hi - hi // 2))
        bands.append((int(lo), int(hi)))
    starts = [max(0, (a - halo) // align * align) for a, _ in used]
    length = max(min(n, b + halo) - start for start, (_, b) in zip(starts, used))
    length += (n - length) % align  # so that the last read, ending at n, starts aligned
    if length >= n:
        return [((0, n), (0, n), (0, 0))]
    return [((start, start + length), u, band)
            for start, u, band in zip((min(s, n - length) for s in starts), used, bands)]


def plan_tiles(shape, *, tile_size, halo, overlap=0, key=0, align=1):
    """The tiles of an image of ``shape`` (y, x); see the module docstring.

    ``align``: every tile's read region starts on a multiple of it (a predictor's
    ``tile_alignment``, the down-sampling factor of a U-Net).

    Returns
    -------
    list of Tile

    Examples
    --------
    >>> [tile.read for tile in plan_tiles((100, 60), tile_size=64, halo=8)]
    [((0, 50), (0, 60)), ((25, 75), (0, 60)), ((50, 100), (0, 60))]
    """
    check_tiling(tile_size, halo, overlap)
    if isinstance(align, bool) or int(align) != align or align < 1:
        raise ValueError(f"align must be a positive integer, got {align!r}")
    ys = _axis_plan(shape[0], tile_size, halo, overlap, int(align))
    xs = _axis_plan(shape[1], tile_size, halo, overlap, int(align))
    return [Tile(key, (ry, rx), (uy, ux), (by, bx))
            for ry, uy, by in ys for rx, ux, bx in xs]


def _batches(tiles, batch_size, max_pixels=None):
    """Group tiles of equal shape into batches, keeping the plan's order within a group.

    ``max_pixels`` caps the pixels of a batch (at least one tile), which bounds memory.
    """
    groups = {}
    for tile in tiles:
        groups.setdefault(tile.shape, []).append(tile)
    batches = []
    for shape, group in groups.items():
        size = batch_size
        if max_pixels:
            size = max(1, min(batch_size, max_pixels // (shape[0] * shape[1])))
        batches += [group[i:i + size] for i in range(0, len(group), size)]
    return batches


def _predict_batch(predictor, arrays, sigmas, origins, seed, scale, crops, threads=None,
                   zeros=None):
    """Run the predictor on one batch of tiles; return per tile (mean, std, samples)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    device = predictor.device
    x = torch.from_numpy(np.stack(arrays)[:, None]).to(device)
    sigma = None if sigmas is None else torch.from_numpy(np.stack(sigmas)[:, None]).to(device)
    zero = None if zeros is None else \
        torch.tensor(zeros, dtype=torch.float32).reshape(-1, 1, 1, 1).to(device)
    prediction = predictor(x, sigma=sigma, seed=seed, origins=origins, zero=zero)
    mean = prediction.mean[:, 0].float().cpu().numpy()
    std = None if prediction.std is None else prediction.std[:, 0].float().cpu().numpy()
    samples = None if prediction.samples is None else \
        prediction.samples[:, :, 0].float().cpu().numpy()
    out = []
    for b, (sy, sx) in enumerate(crops):
        out.append((mean[b, sy, sx],
                    None if std is None else std[b, sy, sx],
                    None if samples is None else samples[:, b, sy, sx]))
    return out


def _task_arguments(batch, images, sigmas, scale, zero_levels=None):
    """A batch's tiles, sigmas, noise origins, crops and (or None) data zero levels."""
    arrays, sig, origins, crops = [], [], [], []
    for tile in batch:
        (ry0, ry1), (rx0, rx1) = tile.read
        (uy0, uy1), (ux0, ux1) = tile.used
        arrays.append(np.ascontiguousarray(images[tile.key][ry0:ry1, rx0:rx1],
                                           dtype=np.float32))
        if sigmas is not None:
            sig.append(np.ascontiguousarray(sigmas[tile.key][ry0:ry1, rx0:rx1],
                                            dtype=np.float32))
        origins.append((tile.key if tile.noise_key is None else tile.noise_key, ry0, rx0))
        crops.append((slice((uy0 - ry0) * scale, (uy1 - ry0) * scale),
                      slice((ux0 - rx0) * scale, (ux1 - rx0) * scale)))
    zeros = None if zero_levels is None else [float(zero_levels[t.key]) for t in batch]
    return arrays, (sig if sigmas is not None else None), origins, crops, zeros


def _accumulate(outputs, tile, result, scale, blend):
    mean, std, samples = result
    (uy0, uy1), (ux0, ux1) = tile.used
    region = (slice(uy0 * scale, uy1 * scale), slice(ux0 * scale, ux1 * scale))
    out = outputs[tile.key]
    weights = tile.weights(scale) if blend else None
    if weights is None:
        out["mean"][region] = mean
        if std is not None and out.get("std") is not None:
            out["std"][region] = std ** 2  # variances until the final square root
        if samples is not None and out.get("samples") is not None:
            out["samples"][(slice(None), *region)] = samples
        return
    out["mean"][region] += weights * mean
    if std is not None and out.get("std") is not None:
        out["std"][region] += weights * std ** 2
    if samples is not None and out.get("samples") is not None:
        out["samples"][(slice(None), *region)] += weights * samples


def _parallel_setup(parallel):
    """(number of workers, dask compute kwargs) or None for a serial run."""
    if parallel is False or parallel is None:
        return None
    if parallel == "current-scheduler":
        return 0, {}
    if parallel is True:
        return os.cpu_count() or 1, None
    if isinstance(parallel, (int, np.integer)) and not isinstance(parallel, bool):
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1 workers, got {parallel}")
        return None if parallel == 1 else (int(parallel), None)
    raise ValueError(f"parallel must be False, True, a number of workers or "
                     f"'current-scheduler', got {parallel!r}")


def _distributed_client():
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed comes with dask[distributed]
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _call(predictor, batch, images, sigmas, seed, scale, threads=None, zero_levels=None):
    arrays, sig, origins, crops, zeros = _task_arguments(batch, images, sigmas, scale,
                                                         zero_levels)
    result = _predict_batch(predictor, arrays, sig, origins, seed, scale, crops, threads,
                            zeros)
    release_heap()
    return result


def _run_threads(predictor, batches, images, sigmas, seed, scale, workers, zero_levels):
    """Batches on a dask thread pool, each worker with one torch thread."""
    import dask
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, previous // workers))
    try:
        window = 2 * workers  # bounded memory: a few batches in flight
        for start in range(0, len(batches), window):
            chunk = batches[start:start + window]
            tasks = [dask.delayed(_call, pure=False)(predictor, batch, images, sigmas, seed,
                                                     scale, zero_levels=zero_levels)
                     for batch in chunk]
            results = dask.compute(*tasks, scheduler="threads", num_workers=workers)
            yield from zip(chunk, results)
    finally:
        torch.set_num_threads(previous)


def _run_current_scheduler(predictor, batches, images, sigmas, seed, scale, zero_levels):
    """Batches on the active dask scheduler; with a distributed client, as they finish."""
    client = _distributed_client()
    if client is None:
        import dask

        window = 4 * (os.cpu_count() or 1)
        shared = dask.delayed(predictor, pure=False)
        for start in range(0, len(batches), window):
            chunk = batches[start:start + window]
            tasks = []
            for batch in chunk:
                arrays, sig, origins, crops, zeros = _task_arguments(batch, images, sigmas,
                                                                     scale, zero_levels)
                tasks.append(dask.delayed(_predict_batch, pure=False)(
                    shared, arrays, sig, origins, seed, scale, crops, zeros=zeros))
            yield from zip(chunk, dask.compute(*tasks))
        return
    from distributed import as_completed

    # The network goes to every worker once; each task carries only its tiles.
    remote = client.scatter(predictor, broadcast=True, hash=False)
    window = 2 * max(1, sum(client.nthreads().values()))
    pending = {}

    def submit(batch):
        arrays, sig, origins, crops, zeros = _task_arguments(batch, images, sigmas, scale,
                                                             zero_levels)
        future = client.submit(_predict_batch, remote, arrays, sig, origins, seed, scale,
                               crops, zeros=zeros, pure=False)
        pending[future.key] = batch
        return future

    queue = list(batches)
    running = as_completed([submit(queue.pop(0)) for _ in range(min(window, len(queue)))],
                           with_results=True)
    for future, result in running:
        yield pending.pop(future.key), result
        if queue:
            running.add(submit(queue.pop(0)))


def predict_images(predictor, images, *, sigmas=None, outputs, tile_size, halo=None,
                   overlap=0, batch_size=8, max_batch_pixels=None, parallel=False, seed=0,
                   noise_keys=None, zero_levels=None, progress=False):
    """Run a predictor over normalised images tile by tile, into ``outputs``.

    Parameters
    ----------
    predictor : lensenhance.predict.predictors.Predictor
    images : list of 2-D arrays
        Normalised, finite images (float32; memory maps welcome).
    sigmas : list of 2-D arrays, optional
        Their normalised standard deviations.
    outputs : list of dict
        Per image: ``"mean"`` ``(s*y, s*x)``, and optionally ``"std"`` (same shape) and
        ``"samples"`` ``(S, s*y, s*x)``: zero-filled arrays (memory maps welcome) that
        receive the normalised predictions.
    tile_size : int or None
        Tile side in input pixels, halo included; None: each image in one pass.
    halo : int, optional
        Default: ``predictor.halo``.
    overlap : int, optional
        Width of the blending band between tiles (0: the cores are butted).
    batch_size : int, optional
        Tiles per forward pass.
    max_batch_pixels : int, optional
        Fewer tiles per pass when their pixels would exceed this (on a CPU, batching
        large tiles only costs memory).
    parallel : bool, int or "current-scheduler", optional
        See the module docstring.
    seed : int, optional
        Seed of the predictor's randomness.
    noise_keys : list of int, optional
        The key of each image's random numbers (default its index in ``images``): an
        image given the same key draws the same samples whichever images share its call
        (how a catalog run batches its rows and still equals a run row by row).
    zero_levels : list of float, optional
        Each image's data zero in normalised units (``-offset / scale``), for predictors
        whose std calibration depends on the signal above it (`Predictor.uses_zero_level`).
    progress : bool, optional
        Show a progress bar.
    """
    from dataclasses import replace

    from tqdm.auto import tqdm

    halo = predictor.halo if halo is None else halo
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    tiles = [tile for key, image in enumerate(images)
             for tile in plan_tiles(image.shape, tile_size=tile_size, halo=halo,
                                    overlap=overlap, key=key,
                                    align=getattr(predictor, "tile_alignment", 1))]
    if noise_keys is not None:
        if len(noise_keys) != len(images):
            raise ValueError(f"{len(noise_keys)} noise keys for {len(images)} images")
        tiles = [replace(tile, noise_key=int(noise_keys[tile.key])) for tile in tiles]
    batches = _batches(tiles, int(batch_size), max_batch_pixels)
    scale = predictor.scale
    setup = _parallel_setup(parallel)
    if setup is None:
        stream = ((batch, _call(predictor, batch, images, sigmas, seed, scale,
                                zero_levels=zero_levels))
                  for batch in batches)
    elif setup[0] == 0:
        stream = _run_current_scheduler(predictor, batches, images, sigmas, seed, scale,
                                        zero_levels)
    else:
        stream = _run_threads(predictor, batches, images, sigmas, seed, scale, setup[0],
                              zero_levels)
    blend = overlap > 0
    with tqdm(total=len(tiles), desc="tiles", unit="tile", disable=not progress) as bar:
        for batch, results in stream:
            for tile, result in zip(batch, results):
                _accumulate(outputs, tile, result, scale, blend)
            for out in outputs:
                release_mapped_pages(*out.values())
            release_mapped_pages(*images, *(sigmas or ()))
            bar.update(len(batch))
    for out in outputs:
        if out.get("std") is not None:
            _sqrt_in_rows(out["std"])
    return outputs


def _sqrt_in_rows(array, rows=512):
    for start in range(0, array.shape[0], rows):
        np.sqrt(array[start:start + rows], out=array[start:start + rows])
        release_mapped_pages(array)


def measure_receptive_field(predictor, *, size=None):
    """Measure a predictor's receptive-field radius by its impulse response.

    The predictor runs on a random image and on the same image with its centre pixel
    changed; the radius is the largest distance (input pixels) from the centre of an
    output pixel that changed at all. For a network
    without global operations, tiles with a halo of at least this radius are exact.

    Parameters
    ----------
    predictor : Predictor
    size : int, optional
        Side of the probe image (default: ``4 * predictor.halo + 16``).

    Returns
    -------
    float
        The radius; about ``size / 2`` means the response fills the probe (a global
        operation).
    """
    import torch

    size = int(size or 4 * predictor.halo + 16)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, size, size)).astype(np.float32)
    x[1] = x[0]
    c = size // 2
    x[1, 0, c, c] += 1.0
    with torch.inference_mode():
        mean = predictor(torch.from_numpy(x).to(predictor.device)).mean.float().cpu().numpy()
    change = np.abs(mean[1, 0] - mean[0, 0])
    ys, xs = np.nonzero(change > 0)
    s = predictor.scale
    return float(max(np.abs((ys + 0.5) / s - 0.5 - c).max(),
                     np.abs((xs + 0.5) / s - 0.5 - c).max()))
