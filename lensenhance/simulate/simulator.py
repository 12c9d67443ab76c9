"""`LensSimulator`: seeded, dask-parallel simulation of lensing images and pairs."""

from __future__ import annotations

import math
from itertools import count

import numpy as np

from .._validation import check_int
from .physics import TRUTH_FIELDS, draw_scene
from .presets import PRESETS, SUBSTRUCTURES, Preset
from .render import simulate_block

__all__ = ["LensSimulator", "tan_wcs", "truth_header", "UNIT"]

#: Unit of every simulated image: flux per pixel in electrons per second.
UNIT = "electron / s"

_MAX_BLOCK = 64  # images per dask task: amortises the task overhead, keeps progress live
_RUN_IDS = count()


def tan_wcs(shape, pixel_scale, *, ra=150.0, dec=2.2):
    """A gnomonic (TAN) WCS centred on an image, north up and east left.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)``.
    pixel_scale : float
        Pixel size in arcsec.
    ra, dec : float, optional
        Sky position (deg, ICRS) of the image centre.

    Returns
    -------
    astropy.wcs.WCS
    """
    from astropy.wcs import WCS

    ny, nx = (int(s) for s in shape)
    if not pixel_scale > 0:
        raise ValueError(f"pixel_scale must be positive, got {pixel_scale}")
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"dec must be within [-90, 90] deg, got {dec}")
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [float(ra) % 360.0, float(dec)]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]  # FITS pixels are 1-based
    wcs.wcs.cdelt = [-pixel_scale / 3600.0, pixel_scale / 3600.0]
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (nx, ny)
    wcs.wcs.set()
    return wcs


def _substructures(substructure):
    """A tuple of classes from 'no_sub' | 'cdm' | 'axion' | 'all' | a sequence of them."""
    if isinstance(substructure, str):
        classes = SUBSTRUCTURES if substructure == "all" else (substructure,)
    else:
        classes = tuple(substructure)
    bad = [c for c in classes if c not in SUBSTRUCTURES]
    if not classes or bad:
        raise ValueError(f"substructure must be one of {SUBSTRUCTURES}, 'all' or a sequence "
                         f"of them, got {substructure!r}")
    return classes


def _image_seeds(seed_sequence, n, indices=None):
    """One 63-bit integer seed per image, spawned from the run's SeedSequence.

    With ``indices``, only those images' seeds: child ``i`` of a fresh SeedSequence is
    built directly (entropy, spawn key + ``(i,)``), the same as ``spawn(n)[i]``, without
    spawning the ``n`` children of a large run for every part of it.
    """
    if indices is None:
        children = seed_sequence.spawn(n)
    else:
        children = [np.random.SeedSequence(seed_sequence.entropy,
                                           spawn_key=(*seed_sequence.spawn_key, int(i)),
                                           pool_size=seed_sequence.pool_size)
                    for i in indices]
    return [int(child.generate_state(1, np.uint64)[0] >> np.uint64(1)) for child in children]


def _check_indices(indices, n):
    """A list of distinct image indices in ``range(n)``."""
    try:
        values = [int(i) for i in indices]
    except (TypeError, ValueError):
        raise TypeError(f"indices must be a sequence of integers, got {indices!r}") from None
    if any(i != j for i, j in zip(values, indices)):
        raise TypeError(f"indices must be integers, got {indices!r}")
    if not values:
        raise ValueError("indices is empty")
    bad = [i for i in values if not 0 <= i < n]
    if bad:
        raise ValueError(f"indices must lie in range({n}); got {bad[0]}")
    if len(set(values)) != len(values):
        raise ValueError("indices must be distinct")
    return values


class LensSimulator:
    """Strong-lensing images of one preset, with exact noise and truth parameters.

    Parameters
    ----------
    preset : Preset or str
        A :class:`~lensenhance.simulate.presets.Preset` or the name of one in ``PRESETS``.
    substructure : str or sequence of str, optional
        ``"no_sub"`` (default), ``"cdm"``, ``"axion"``, ``"all"`` or a sequence of classes;
        with several, image ``i`` of a run gets class ``classes[i % len(classes)]``, so
        the classes come in equal parts.
    seed : int or numpy.random.SeedSequence, optional
        Seeds the simulator. Each ``simulate_*`` call without its own ``seed`` draws the
        next independent stream from it, so a new simulator with the same seed repeats
        the same sequence of results. None: fresh entropy.

    Notes
    -----
    Image ``i`` of a run is simulated from its own integer seed (the ``seed``
    coordinate), spawned from the run's ``numpy.random.SeedSequence``; the result is
    therefore identical for any number of workers, and ``draw_scene(seed)`` rebuilds
    its lens system.
    """

    def __init__(self, preset, *, substructure="no_sub", seed=None):
        if isinstance(preset, str):
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
            preset = PRESETS[preset]
        if not isinstance(preset, Preset):
            raise TypeError(f"preset must be a Preset or a preset name, got "
                            f"{type(preset).__name__}")
        self.preset = preset
        self.substructures = _substructures(substructure)
        self._seed_sequence = (seed if isinstance(seed, np.random.SeedSequence)
                               else np.random.SeedSequence(seed))

    @classmethod
    def from_preset(cls, name, *, substructure="no_sub", seed=None, **overrides):
        """A simulator for preset ``name`` with some of its fields replaced.

        Parameters
        ----------
        name : {'model_i', 'model_ii', 'model_iii'}
            Preset name (see ``PRESETS`` and the docs tables).
        substructure, seed
            As for the class.
        **overrides
            Preset fields to replace, e.g. ``psf_fwhm=0.1`` or ``lens_axis_ratio=1.0``;
            a number given for a drawn field fixes it.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
        return cls(preset, substructure=substructure, seed=seed)

    def __repr__(self):
        return (f"LensSimulator(preset={self.preset.name!r}, "
                f"substructure={'+'.join(self.substructures)!r}, "
                f"entropy={self._seed_sequence.entropy})")

    # -- seeds -------------------------------------------------------------------------

    def _run_sequence(self, seed):
        """The SeedSequence of one run: the next child of the simulator's, or the first
        child of ``seed``'s (so ``from_preset(..., seed=s)``'s first run equals any
        simulator's run with ``seed=s``)."""
        if seed is None:
            return self._seed_sequence.spawn(1)[0]
        if not isinstance(seed, np.random.SeedSequence):
            seed = np.random.SeedSequence(seed)
        return seed.spawn(1)[0]

    def _class_of(self, index):
        return self.substructures[index % len(self.substructures)]

    def draw_scene(self, seed, *, substructure=None):
        """The lens system of image seed ``seed``: lenstronomy profiles, kwargs and truth.

        Parameters
        ----------
        seed : int
            An image seed (the ``seed`` coordinate of a simulated dataset).
        substructure : str, optional
            Class; by default the simulator's (its first, when it has several).

        Returns
        -------
        Scene
        """
        seed = check_int(seed, "seed", 0)
        substructure = self.substructures[0] if substructure is None else substructure
        return draw_scene(self.preset, substructure, np.random.default_rng(seed), seed=seed)

    # -- runs --------------------------------------------------------------------------

    def _run(self, mode, n, option, *, workers, progress, seed, desc, indices=None,
             refit=False):
        n = check_int(n, "n")
        workers = check_int(workers, "workers")
        if indices is not None:
            if seed is None:
                # The simulator's next stream would differ from the full run's.
                raise ValueError("indices needs the run's seed: pass seed= as well")
            indices = _check_indices(indices, n)
        run = self._run_sequence(seed)
        seeds = _image_seeds(run, n, indices)
        images = list(range(n)) if indices is None else indices
        classes = [self._class_of(i) for i in images]
        blocks = _compute_blocks(self.preset, mode, option, classes, seeds, workers=workers,
                                 progress=progress, desc=desc, refit=bool(refit))
        arrays = {name: np.concatenate([b[0][name] for b in blocks]) for name in blocks[0][0]}
        truths = [t for b in blocks for t in b[1]]
        return arrays, truths, run, images

    def _attrs(self, run, **extra):
        from .. import __version__

        p = self.preset
        attrs = {
            "preset": p.name,
            "preset_description": p.description,
            "substructure": "+".join(self.substructures),
            "unit": UNIT,
            "psf": "gaussian",
            "psf_fwhm": p.psf_fwhm,
            "pixel_scale": p.pixel_scale,
            "magnitude_zero_point": p.magnitude_zero_point,
            "sky_brightness": p.sky_brightness,
            "read_noise": p.read_noise,
            "num_exposures": p.num_exposures,
            "z_lens": p.z_lens,
            "z_source": p.z_source,
            "cosmology": f"FlatLambdaCDM(H0={p.H0:g}, Om0={p.Om0:g})",
            "run_entropy": str(run.entropy),
            "run_spawn_key": ",".join(str(k) for k in run.spawn_key),
            "noise": ("Poisson(source + lens light electrons) + Gaussian(sky electrons + "
                      "num_exposures * read_noise**2)" if p.noise == "poisson_gaussian" else
                      "DeepLenseSim Model I: counts t*(m + N(0, sqrt(m/t)) + N(0, "
                      f"{p.background_rms:g})), then Poisson"),
            "family": p.family,
            "flux_scale": p.flux_scale,
            "software": f"lensenhance {__version__}",
        }
        attrs.update(extra)
        return attrs

    def simulate_pairs(self, n, *, scale=2, workers=1, progress=True, seed=None,
                       indices=None, refit=False):
        """Simulate ``n`` high-resolution / low-resolution pairs.

        The HR grid has the preset's pixel scale and is the preset's image size rounded
        up to a multiple of ``scale`` (model_i x4: 152 x 152, i.e. one extra pixel on
        each side), centred on the same point; the LR pixel is ``scale`` times larger.

        Parameters
        ----------
        n : int
            Number of pairs.
        scale : int, optional
            Binning factor (2 or 4 are the benchmarks' choices).
        workers : int, optional
            Worker processes (dask); the result does not depend on it.
        progress : bool, optional
            Show a progress bar.
        seed : int, optional
            Seed of this run; by default the simulator's next stream.
        indices : sequence of int, optional
            Simulate only these images of the ``n``-image run (``seed`` required): each
            is identical to the same image of the whole run, so a large run can be done
            in parts, or resumed.
        refit : bool, optional
            Fill the ``sub_chi2_refit`` coordinate (a least-squares refit of the smooth
            model per image with substructure, about a second each); NaN otherwise.

        Returns
        -------
        xarray.Dataset
            ``hr`` (image, y_hr, x_hr): the sky convolved with the PSF on the fine grid,
            noise-free, flux per fine pixel in electron/s; ``lr`` (image, y, x): ``hr``
            summed over ``scale`` x ``scale`` blocks plus Poisson and background noise;
            ``lr_sigma``: the exact standard deviation of ``lr``, so that
            ``(lr - binned hr) / lr_sigma`` has mean 0 and standard deviation 1. Truth
            parameters are coordinates along ``image``; attrs hold the pixel scales,
            PSF, unit and preset.
        """
        scale = check_int(scale, "scale", 2)
        arrays, truths, run, images = self._run(
            "pairs", n, scale, workers=workers, progress=progress, seed=seed,
            desc=f"{self.preset.name} x{scale} pairs", indices=indices, refit=refit)
        d = self.preset.pixel_scale
        attrs = self._attrs(run, scale=scale, hr_pixel_scale=d, lr_pixel_scale=scale * d,
                            hr_num_pix=arrays["hr"].shape[-1],
                            lr_num_pix=arrays["lr"].shape[-1])
        variables = {
            "hr": (("image", "y_hr", "x_hr"), arrays["hr"],
                   {"long_name": "noise-free PSF-convolved sky, fine grid", "units": UNIT}),
            "lr": (("image", "y", "x"), arrays["lr"],
                   {"long_name": "observed image: binned hr + noise", "units": UNIT}),
            "lr_sigma": (("image", "y", "x"), arrays["lr_sigma"],
                         {"long_name": "standard deviation of lr", "units": UNIT}),
        }
        return _dataset(variables, truths, attrs, {"": scale * d, "_hr": d}, images)

    def simulate_snr_pairs(self, n, *, exposure_ratio=10.0, workers=1, progress=True,
                           seed=None, indices=None, refit=False):
        """Simulate ``n`` scenes observed at low and at high signal-to-noise.

        Both observations are on the preset's native grid; the deep one has
        ``exposure_ratio`` times the exposure time (the background noise scales with
        it, the read noise does not), so its noise is about ``sqrt(exposure_ratio)``
        times lower. Both are in electron/s, directly comparable.

        Parameters
        ----------
        n : int
            Number of scenes.
        exposure_ratio : float, optional
            Deep / shallow exposure time, > 1. Default 10.
        workers, progress, seed, indices, refit
            As for `simulate_pairs`.

        Returns
        -------
        xarray.Dataset
            ``low``, ``low_sigma``, ``high``, ``high_sigma`` and the noise-free
            ``clean`` image, dims (image, y, x), with the truth coordinates (the
            ``exposure_time`` is that of ``low``).
        """
        if not isinstance(exposure_ratio, (int, float, np.integer, np.floating)) or \
                isinstance(exposure_ratio, bool) or not exposure_ratio > 1:
            raise ValueError(f"exposure_ratio must be a number > 1, got {exposure_ratio!r}")
        arrays, truths, run, images = self._run(
            "snr", n, float(exposure_ratio), workers=workers, progress=progress, seed=seed,
            desc=f"{self.preset.name} SNR pairs", indices=indices, refit=refit)
        attrs = self._attrs(run, exposure_ratio=float(exposure_ratio))
        long_names = {
            "low": "shallow observation", "low_sigma": "standard deviation of low",
            "high": "deep observation", "high_sigma": "standard deviation of high",
            "clean": "noise-free PSF-convolved sky",
        }
        variables = {name: (("image", "y", "x"), arrays[name],
                            {"long_name": long_names[name], "units": UNIT})
                     for name in long_names}
        return _dataset(variables, truths, attrs, {"": self.preset.pixel_scale}, images)

    def simulate_image(self, *, ra=150.0, dec=2.2, seed=None, substructure=None, binning=1):
        """One observed image on the preset's native grid, as a CCDData.

        Parameters
        ----------
        ra, dec : float, optional
            Sky position (deg) of the image centre, where the lens is.
        binning : int, optional
            Observe with pixels ``binning`` times the preset's: the image is then the
            ``lr`` of ``simulate_pairs(scale=binning)`` for the same seed (the input the
            shipped x2/x4 super-resolution models are trained for).
        seed : int, optional
            The image seed (a dataset's ``seed`` coordinate gives the same lens system);
            by default the simulator's next stream.
        substructure : str, optional
            Class; by default the simulator's (with several: ``classes[seed % k]``).

        Returns
        -------
        astropy.nddata.CCDData
            Flux per pixel in electron/s, a TAN WCS at (ra, dec) with the preset's pixel
            scale, a StdDevUncertainty (the exact noise), and the truth parameters in the
            header (``meta``).
        """
        from astropy import units as u
        from astropy.nddata import CCDData, StdDevUncertainty

        if seed is None:
            seed = _image_seeds(self._seed_sequence.spawn(1)[0], 1)[0]
        seed = check_int(seed, "seed", 0)
        if substructure is None:
            substructure = self.substructures[seed % len(self.substructures)]
        _substructures(substructure)
        binning = check_int(binning, "binning", 1)
        p = self.preset
        if binning == 1:
            arrays, truths = simulate_block(p, "image", [substructure], [seed], None)
        else:
            pairs, truths = simulate_block(p, "pairs", [substructure], [seed], binning)
            arrays = {"image": pairs["lr"], "sigma": pairs["lr_sigma"]}
        pixel_scale = p.pixel_scale * binning
        meta = truth_header(truths[0])
        meta["PRESET"] = (p.name, "lensenhance simulation preset")
        meta["PIXSCALE"] = (pixel_scale, "[arcsec] pixel scale")
        meta["PSF_FWHM"] = (p.psf_fwhm, "[arcsec] Gaussian PSF FWHM")
        meta["EXPTIME"] = (truths[0]["exposure_time"], "[s] total exposure time")
        return CCDData(arrays["image"][0], unit=u.Unit(UNIT),
                       uncertainty=StdDevUncertainty(arrays["sigma"][0]),
                       wcs=tan_wcs(arrays["image"].shape[1:], pixel_scale, ra=ra, dec=dec),
                       meta=meta)


def truth_header(truth):
    """A FITS header with one card per truth parameter (NaN values are left out).

    Keys longer than 8 characters become HIERARCH cards; comments carry the unit and
    are shortened to fit the 80-character card.
    """
    from astropy.io import fits

    header = fits.Header()
    for key, value in truth.items():
        if isinstance(value, float) and not math.isfinite(value):
            continue
        unit, meaning = TRUTH_FIELDS.get(key, ("", key))
        value = value.item() if isinstance(value, np.generic) else value
        card_key = key.upper() if len(key) <= 8 else f"HIERARCH {key.upper()}"
        card = fits.Card(card_key, value)
        room = 80 - len(card.image.rstrip()) - 3  # " / " before the comment
        comment = (f"[{unit}] " if unit else "") + meaning
        header.append(fits.Card(card_key, value, comment[:max(room, 0)]))
    return header


def _dataset(variables, truths, attrs, grids, images=None):
    """Assemble the xarray Dataset: images, truth coordinates along image, pixel grids."""
    import xarray as xr

    n = len(truths)
    coords = {"image": np.arange(n) if images is None else np.asarray(images, np.int64)}
    for key in [*TRUTH_FIELDS, "peak_snr", "seed"]:
        values = np.array([t[key] for t in truths])
        unit, meaning = TRUTH_FIELDS.get(key, ("", ""))
        if key == "peak_snr":
            meaning = "max of expected / sigma over the recorded (lr or low) image"
        if key == "seed":
            meaning = "image seed (LensSimulator.draw_scene rebuilds the scene)"
            values = values.astype(np.int64)
        coords[key] = ("image", values, {"units": unit, "long_name": meaning})
    for suffix, pixel_scale in grids.items():
        size = next(v[1].shape[-1] for v in variables.values() if v[0][-1] == "x" + suffix)
        offsets = (np.arange(size) - (size - 1) / 2.0) * pixel_scale
        coords["y" + suffix] = ("y" + suffix, offsets,
                                {"units": "arcsec", "long_name": "Dec offset from the centre"})
        coords["x" + suffix] = ("x" + suffix, -offsets,
                                {"units": "arcsec", "long_name": "RA offset (east positive)"})
    return xr.Dataset(variables, coords=coords, attrs=attrs)


# -- parallel execution ---------------------------------------------------------------------


def _compute_blocks(preset, mode, option, classes, seeds, *, workers, progress, desc,
                    refit=False):
    """Run `simulate_block` over blocks of images with dask; returns blocks in order."""
    import dask

    n = len(seeds)
    size = max(1, min(_MAX_BLOCK, math.ceil(n / (4 * workers))))
    run_id = next(_RUN_IDS)
    tasks, sizes = [], {}
    for i, start in enumerate(range(0, n, size)):
        stop = min(n, start + size)
        key = f"lensenhance-simulate-{run_id}-{i}"
        sizes[key] = stop - start
        tasks.append(dask.delayed(simulate_block, pure=False)(
            preset, mode, classes[start:stop], seeds[start:stop], option, refit,
            dask_key_name=key))
    with _ProgressBar(n, sizes, enabled=progress, desc=desc):
        if workers == 1:
            return list(dask.compute(*tasks, scheduler="synchronous"))
        return list(_compute_in_pool(tasks, workers))


def _compute_in_pool(tasks, workers):
    from concurrent.futures.process import BrokenProcessPool

    import dask

    from .pool import discard_pool, get_pool

    for attempt in (0, 1):
        try:
            return dask.compute(*tasks, scheduler="processes", pool=get_pool(workers),
                                num_workers=workers)
        except BrokenProcessPool as error:
            discard_pool(workers)  # a worker died (e.g. killed): start afresh once
            if attempt:
                raise BrokenProcessPool(
                    f"simulator worker processes died ({error}). In a script, run the "
                    "simulation under `if __name__ == '__main__':` (worker processes "
                    "import the main module), or use workers=1") from error


class _ProgressBar:
    """A tqdm bar advanced by the number of images of each finished dask task."""

    def __init__(self, total, sizes, *, enabled, desc):
        self.total, self.sizes, self.enabled, self.desc = total, sizes, enabled, desc

    def __enter__(self):
        if not self.enabled:
            return self
        from dask.callbacks import Callback
        from tqdm.auto import tqdm

        bar = self.bar = tqdm(total=self.total, desc=self.desc, unit="img")
        sizes = self.sizes

        class _Callback(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                bar.update(sizes.get(key, 0))

        self.callback = _Callback()
        self.callback.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.callback.__exit__(*exc)
            self.bar.close()
        return False

