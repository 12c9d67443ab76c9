"""The astropy-facing generator: lensing images drawn from a trained diffusion model.

`Generator` owns the bridge between the pure-torch diffusion core
(`lensenhance.diffusion`) and astronomical images: it loads a shipped or user-trained
denoising network with its noise schedule and its data scaling, draws images with a
chosen sampler in a few steps, undoes the scaling so the images come back in the training
data's unit (flux per pixel), and labels them with pixel scale, class, sampler settings
and a TAN WCS. An optional super-resolution model trained for the generator's grid takes
the images to a finer pixel scale.

Every image has its own random stream (`lensenhance.diffusion.image_generators`): image
``i`` of ``generate(n, seed=s)`` is the same whatever ``n``, the batch size or the device.
"""

from __future__ import annotations

import json

import numpy as np

from .._device import resolve_device

__all__ = ["Generator", "to_ccddata", "super_resolve", "DEFAULT_GENERATOR", "MAX_GUIDANCE",
           "check_guidance"]

#: The shipped generator `Generator.from_pretrained` and the CLI use by default: the best
#: by the ``generate`` benchmark. ``ddpm-deeplense-ii`` is measured at n = 1000 in the
#: features of a classifier that tells its classes apart
#: (``benchmark_results/generate_n1000.json``); ``ddpm-lens64`` only at n = 200, in the
#: features of a classifier at chance on its classes.
DEFAULT_GENERATOR = "ddpm-deeplense-ii"

#: The largest classifier-free guidance weight accepted. Measured on ``ddpm-lens64`` (6
#: images, DDIM-20): the brightest pixel is 5.0 electron/s at weights 0-3, 19 at 10,
#: 270 at 20 and 6e7 at 50; at 300 pixels reach 1e26 and at 1e6 they overflow.
MAX_GUIDANCE = 10.0


def check_guidance(guidance):
    """``guidance`` as a float in [0, `MAX_GUIDANCE`], or None; ValueError otherwise."""
    if guidance is None:
        return None
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.number)):
        raise TypeError(f"guidance must be a number or None, got {type(guidance).__name__}")
    if not 0 <= float(guidance) <= MAX_GUIDANCE:
        raise ValueError(f"guidance must be between 0 and {MAX_GUIDANCE:g} (0: unconditional, "
                         f"1: conditional; larger weights blow the images up), got "
                         f"{guidance!r}")
    return float(guidance)


class Generator:
    """Draw lensing images from a diffusion model, in the training data's unit.

    Parameters
    ----------
    model : torch.nn.Module
        A denoising network ``model(x_t, t, class_labels=...)`` (e.g.
        `lensenhance.nn.unet.DiffusionUNet`) predicting ``schedule.parameterization``.
    schedule : lensenhance.diffusion.NoiseSchedule
        The noise schedule it was trained with.
    scaling : lensenhance.predict.normalization.AsinhScaling
        Maps the data unit to the network's range; its inverse brings images back.
    classes : sequence of str, optional
        Class names, in label order (empty for an unconditional model).
    pixel_scale : float, optional
        Pixel size of the training images, arcsec.
    unit : str, optional
        Unit of the training images (flux per pixel).
    image_size : int, optional
        Side of the training images, pixels.
    preset : str, optional
        Simulation preset of the training images.
    name : str, optional
        A label for ``repr`` and the attrs.
    device : str or torch.device, optional
        ``"auto"``: CUDA when available, else the CPU.

    Examples
    --------
    >>> import lensenhance as le
    >>> gen = le.Generator.from_pretrained()   # DEFAULT_GENERATOR
    >>> gen.name, gen.classes
    ('ddpm-deeplense-ii', ('no_sub', 'cdm', 'axion'))
    >>> images = gen.generate(2, steps=4, seed=0, progress=False)
    >>> images.dims, images.attrs["unit"]
    (('image', 'y', 'x'), 'electron / s')
    """

    def __init__(self, model, *, schedule, scaling, classes=(), pixel_scale=None, unit=None,
                 image_size=64, preset=None, name=None, device="auto"):
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.schedule = schedule
        self.scaling = scaling
        self.classes = tuple(classes)
        self.pixel_scale = None if pixel_scale is None else float(pixel_scale)
        self.unit = unit
        self.image_size = int(image_size)
        self.preset = preset
        self.name = name or type(model).__name__
        self.weights_sha256 = None

    @classmethod
    def from_weights(cls, path, *, name=None, device="auto"):
        """A Generator from a weights file written by ``lensenhance train ddpm``."""
        from ..nn.weights import load_weights

        return cls._from_model(load_weights(path), name=name or str(path), device=device)

    @classmethod
    def from_pretrained(cls, name=None, *, device="auto"):
        """A Generator around one of the shipped models (``list_pretrained("generate")``).

        ``name`` defaults to `DEFAULT_GENERATOR`, the best by the ``generate`` benchmark.
        """
        from ..pretrained import load_pretrained, model_card

        name = DEFAULT_GENERATOR if name is None else name
        card = model_card(name)
        if card.get("task") != "generate":
            raise ValueError(f"{name!r} is a {card.get('task')!r} model, not a generator")
        # load_pretrained checks the file against the card's SHA-256.
        generator = cls._from_model(load_pretrained(name), name=name, device=device)
        generator.weights_sha256 = card["sha256"]
        return generator

    @classmethod
    def _from_model(cls, model, *, name, device):
        """A Generator from a loaded network and the metadata of its weights file."""
        from ..diffusion import NoiseSchedule
        from ..predict.normalization import AsinhScaling

        meta = model.metadata
        if meta.get("task") != "generate":
            raise ValueError(f"{name} holds a {meta.get('task')!r} model, not a generator")
        return cls(model, schedule=NoiseSchedule.from_dict(meta["schedule"]),
                   scaling=AsinhScaling.from_dict(meta["scaling"]),
                   classes=meta.get("classes", []), pixel_scale=meta.get("pixel_scale"),
                   unit=meta.get("unit"), image_size=meta.get("image_size", 64),
                   preset=meta.get("data_preset"), name=name, device=device)

    def __repr__(self):
        return (f"<Generator({self.name!r}, {self.image_size}x{self.image_size} at "
                f"{self.pixel_scale}\"/px, classes={list(self.classes)}, "
                f"{self.schedule.parameterization}-prediction, device='{self.device}')>")

    # -- labels -------------------------------------------------------------------------

    def _labels(self, n, substructure):
        """Class label of every image: classes in turn, one class, or one per image."""
        if not self.classes:
            if substructure is not None:
                raise ValueError(f"{self.name} is unconditional; substructure must be None")
            return None, [""] * n
        if substructure is None:
            labels = np.arange(n) % len(self.classes)
        else:
            names = [substructure] * n if isinstance(substructure, str) else list(substructure)
            if len(names) != n:
                raise ValueError(f"{len(names)} substructure classes for {n} images")
            unknown = sorted(set(names) - set(self.classes))
            if unknown:
                raise ValueError(f"unknown substructure class {unknown[0]!r}; choose from "
                                 f"{', '.join(self.classes)}")
            labels = np.array([self.classes.index(s) for s in names])
        return labels, [self.classes[k] for k in labels]

    # -- sampling -----------------------------------------------------------------------

    def sample_scaled(self, n, *, steps=50, sampler="ddim", seed=0, labels=None,
                      guidance=None, eta=0.0, batch_size=None, start=0, progress=True,
                      callback=None):
        """Draw ``n`` images in the network's scaled range, ``(n, y, x)`` float32 numpy.

        Images ``start .. start + n - 1`` of the run ``seed`` (see `generate`).
        ``callback(first_index, i, t, x_t, x0_estimate)`` is called after every step of
        every batch.
        """
        import torch
        from tqdm.auto import tqdm

        from ..diffusion import sample

        batch_size = n if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        size = self.image_size
        out = np.empty((n, size, size), dtype=np.float32)
        null = getattr(self.model, "null_label", None)
        with tqdm(total=n, desc=f"generate ({sampler}, {steps} steps)", unit="img",
                  disable=not progress) as bar:
            for first in range(0, n, batch_size):
                count = min(batch_size, n - first)
                batch_labels = None if labels is None else \
                    torch.as_tensor(labels[first:first + count])
                step_callback = None if callback is None else \
                    (lambda i, t, x, x0, _first=first: callback(start + _first, i, t, x, x0))
                x = sample(self.model, (count, 1, size, size), schedule=self.schedule,
                           seed=seed, indices=range(start + first, start + first + count),
                           sampler=sampler, steps=steps, eta=eta, class_labels=batch_labels,
                           null_label=null, guidance=guidance, device=self.device,
                           callback=step_callback)
                out[first:first + count] = x[:, 0].float().cpu().numpy()
                bar.update(count)
        return out

    def generate(self, n, *, steps=50, sampler="ddim", seed=None, substructure=None,
                 guidance=None, eta=0.0, batch_size=None, device=None, enhancer=None,
                 progress=True, callback=None, start=0):
        """Draw ``n`` lensing images.

        Parameters
        ----------
        n : int
            Number of images.
        steps : int, optional
            Network evaluations per image (per guidance branch).
        sampler : {'ddim', 'dpm', 'ddpm'}, optional
            DDIM (deterministic for ``eta=0``), DPM-Solver++ (2nd order) or ancestral
            DDPM (use ``steps=1000`` for the full chain).
        seed : int, optional
            Run seed; image ``i`` draws from its own stream, so it does not depend on
            ``n``, ``batch_size`` or the device. None draws fresh entropy (recorded in
            the attrs, so the run can be repeated).
        substructure : str or sequence of str, optional
            Class of every image (one name) or of each image; None cycles through the
            classes (``no_sub, cdm, axion, no_sub, ...``).
        guidance : float, optional
            Classifier-free guidance weight in [0, `MAX_GUIDANCE`] (1: conditional; > 1
            sharpens the class; 0: unconditional); None runs the conditional network
            alone.
        eta : float, optional
            DDIM stochasticity.
        batch_size : int, optional
            Images per network call (default all at once).
        device : str or torch.device, optional
            Overrides the Generator's device for this call.
        enhancer : str or lensenhance.Enhancer, optional
            A super-resolution model trained for this generator's grid (e.g.
            ``"edsr-lens64-x2"``); the images then have its finer pixel scale.
        progress : bool, optional
            Show a progress bar.
        callback : callable, optional
            ``callback(first_index, i, t, x_t, x0_estimate)`` after each step (scaled
            tensors), e.g. to draw the reverse process.
        start : int, optional
            Index of the first image in the run: ``generate(n - k, start=k, seed=s)``
            returns images ``k .. n-1`` of ``generate(n, seed=s)`` (how a run resumes).

        Returns
        -------
        xarray.DataArray
            ``(image, y, x)`` float32 in ``attrs["unit"]``, with ``substructure`` and
            ``seed`` coordinates along ``image`` and attrs ``pixel_scale`` (arcsec),
            ``preset``, ``sampler``, ``steps``, ``guidance``, ``eta``, ``seed``,
            ``model``, ``weights_sha256`` and ``wcs`` (a TAN WCS header at the pixel
            scale; `to_ccddata` turns the images into CCDData with it).
        """
        from ..diffusion import SAMPLERS, resolve_seed

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        guidance = check_guidance(guidance)
        seed = resolve_seed(seed)
        start = int(start)
        labels, names = self._labels(start + int(n), substructure)
        labels = None if labels is None else labels[start:]
        names = names[start:]
        if device is not None:
            self.device = resolve_device(device)
            self.model.to(self.device)
        scaled = self.sample_scaled(int(n), steps=steps, sampler=sampler, seed=seed,
                                    labels=labels, guidance=guidance, eta=eta,
                                    batch_size=batch_size, progress=progress,
                                    callback=callback, start=start)
        images = self._to_dataarray(self.scaling.invert(scaled), names, seed=seed,
                                    sampler=sampler, steps=steps, guidance=guidance, eta=eta,
                                    start=start)
        if enhancer is not None:
            images = super_resolve(images, enhancer, device=self.device, progress=progress)
        return images

    # -- output -------------------------------------------------------------------------

    def _to_dataarray(self, data, names, *, seed, sampler, steps, guidance, eta, start=0):
        import xarray as xr

        from .._version import __version__
        from ..simulate.simulator import tan_wcs

        n, ny, nx = data.shape
        attrs = {"unit": self.unit or "", "pixel_scale": self.pixel_scale,
                 "preset": self.preset or "", "model": self.name,
                 "weights_sha256": self.weights_sha256 or "", "sampler": sampler,
                 "steps": int(steps), "guidance": "none" if guidance is None else guidance,
                 "eta": float(eta), "seed": int(seed), "software": f"lensenhance {__version__}",
                 "long_name": "generated noise-free lensing image"}
        if self.pixel_scale:
            wcs = tan_wcs((ny, nx), self.pixel_scale)
            attrs["wcs"] = wcs.to_header(relax=True).tostring(sep="\n")
        coords = {"image": np.arange(start, start + n), "substructure": ("image", list(names)),
                  "seed": ("image", np.full(n, int(seed)))}
        return xr.DataArray(data.astype(np.float32), dims=("image", "y", "x"), coords=coords,
                            attrs=attrs, name="generated")

def super_resolve(images, enhancer, *, device="cpu", progress=True):
    """Super-resolve noise-free images, as the second half of a generator chain.

    Parameters
    ----------
    images : xarray.DataArray, shape (image, y, x)
        Flux images with ``unit`` and ``pixel_scale`` attrs (and optionally ``wcs``): the
        output of `Generator.generate`, or simulated images on a generator's grid.
    enhancer : str or lensenhance.Enhancer
        A shipped super-resolution model's name, or an Enhancer. The cosmic-ray search is
        off: nothing in a noise-free image is a cosmic ray, and a sharp feature must not be
        masked as one.
    device : str or torch.device, optional
        Where a named model runs.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    xarray.DataArray
        The images on the finer grid, with the same coordinates; the attrs get the finer
        ``pixel_scale`` and WCS, the ``enhancer`` and the ``generated_pixel_scale``.
    """
    import copy
    import warnings

    import xarray as xr
    from astropy.io.fits.verify import VerifyWarning
    from tqdm.auto import tqdm

    from ..enhance.enhancer import Enhancer

    if isinstance(enhancer, str):
        enhancer = Enhancer.from_pretrained(enhancer, device=device, cosmic_rays=False)
    elif enhancer.cosmic_rays:
        enhancer = copy.copy(enhancer)
        enhancer.cosmic_rays = False
    ccds = to_ccddata(images)
    with warnings.catch_warnings():
        # The class keyword ('substructure') becomes a HIERARCH card in each output
        # header, as intended: no warning per image.
        warnings.simplefilter("ignore", VerifyWarning)
        outputs = [enhancer.enhance(ccd) for ccd in tqdm(ccds, desc="enhance", unit="img",
                                                        disable=not progress)]
    data = np.stack([np.asarray(out.data, dtype=np.float32) for out in outputs])
    # The same image coordinates and attrs on the finer grid (images have no y/x coords).
    enhanced = xr.DataArray(data, dims=images.dims, coords=images.coords,
                            attrs=dict(images.attrs), name=images.name)
    scale = enhancer.scale
    enhanced.attrs.update({"pixel_scale": images.attrs["pixel_scale"] / scale,
                           "enhancer": enhancer.name, "enhancer_scale": scale,
                           "generated_pixel_scale": images.attrs["pixel_scale"]})
    if outputs[0].wcs is not None:
        enhanced.attrs["wcs"] = outputs[0].wcs.to_header(relax=True).tostring(sep="\n")
    enhanced.attrs["long_name"] = (f"{images.attrs.get('long_name', 'lensing image')}, "
                                   f"super-resolved x{scale} by {enhancer.name}")
    return enhanced


def to_ccddata(images):
    """Generated images (a DataArray from `Generator.generate`) as a list of CCDData.

    Each has the images' unit, the TAN WCS at their pixel scale, and the class, seed,
    sampler and model in its header.
    """
    from ..io import from_dataarray

    ccds = from_dataarray(images)
    for ccd in ccds:
        for key, card in (("PIXSCALE", "pixel_scale"), ("SAMPLER", "sampler"),
                          ("STEPS", "steps"), ("GENMODEL", "model")):
            value = images.attrs.get(card)
            if value not in (None, ""):
                ccd.meta[key] = value
    return ccds


def write_reverse_process_gif(frames, path, *, fps=12):
    """Draw the reverse process as an animated GIF (matplotlib + Pillow).

    Parameters
    ----------
    frames : list of (int, numpy.ndarray)
        ``(t, images)`` per step, images ``(k, y, x)`` in the network's scaled range
        (about -1 to 1), shown side by side in a grid.
    path : path-like
        The GIF to write (atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    from .._atomic import atomic_target

    k = frames[0][1].shape[0]
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.3), squeeze=False)
    shown = []
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < k:
            shown.append(ax.imshow(frames[0][1][index], cmap="magma", vmin=-1, vmax=1,
                                   origin="lower", interpolation="nearest"))
    title = fig.suptitle("")

    def draw(j):
        t, images = frames[j]
        for artist, image in zip(shown, images):
            artist.set_data(image)
        title.set_text(f"reverse process: t = {t}")
        return shown

    animation = FuncAnimation(fig, draw, frames=len(frames), blit=False)
    with atomic_target(path, overwrite=True) as tmp:
        animation.save(tmp, writer=PillowWriter(fps=fps))
    plt.close(fig)


_RUN_FILE = "generate_run.json"
_GIF_IMAGES = 16


def generate_to_disk(out_dir, generator, n, *, steps=50, sampler="ddim", seed=None,
                     substructure=None, guidance=None, eta=0.0, batch_size=16, enhancer=None,
                     gif=False, overwrite=False, progress=True):
    """Generate ``n`` images into ``out_dir`` as FITS files with a catalog; resumable.

    Image ``i`` is written to ``lens_<i>.fits`` (atomically) as soon as its batch is done;
    a rerun of the same command writes only the missing files (each image has its own
    random stream, so the result is the same as an uninterrupted run) and a rerun with
    other settings into the same folder is refused (unless the earlier run failed before
    its first image: a failed command never blocks its corrected rerun). A folder that
    holds anything but generate runs is refused. ``catalog.ecsv`` lists every image in
    the folder (a rerun with a smaller ``n`` keeps the others) with its class, seed and
    sampler settings.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created).
    generator : Generator
    n : int
        Number of images.
    steps, sampler, seed, substructure, guidance, eta, enhancer
        As for `Generator.generate`.
    batch_size : int, optional
        Images per network call (and per write).
    gif : bool, optional
        Also write ``reverse_process.gif``: the first images of the first batch drawn,
        step by step.
    overwrite : bool, optional
        Start afresh: regenerate and replace every file (images of the earlier run
        beyond ``n`` are removed).
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    dict
        ``written`` (paths written now), ``skipped`` (images already there), ``catalog``,
        ``n_images`` (images in the folder, all in the catalog), ``gif`` (or None),
        ``seed``.

    Raises
    ------
    lensenhance._runfolder.RunFolderError
        ``out_dir`` is not a folder, is locked by another run, or holds another tool's
        files or a generate run with other settings (a ValueError).
    FloatingPointError
        A drawn image holds a non-finite pixel: it is not written (the images written
        before it stay, and a rerun draws the missing ones again).
    """
    from astropy.table import Table

    from .._atomic import atomic_write_bytes
    from .._runfolder import (
        RunFolderError,
        check_claim,
        check_output_folder,
        folder_lock,
        remove_stale_temporaries,
    )
    from ..diffusion import resolve_seed
    from ..io import write_catalog, write_image

    guidance = check_guidance(guidance)
    settings = {"model": generator.name, "weights_sha256": generator.weights_sha256,
                "steps": int(steps), "sampler": sampler, "substructure": substructure,
                "guidance": guidance, "eta": float(eta),
                "enhancer": enhancer if isinstance(enhancer, (str, type(None)))
                else enhancer.name}
    # Checked and locked before any image is drawn; temporaries of a killed run removed.
    out_dir = check_output_folder(out_dir)
    with folder_lock(out_dir):
        remove_stale_temporaries(out_dir)
        check_claim(out_dir, _RUN_FILE, what="generate")
        run_path = out_dir / _RUN_FILE
        existing = _image_indices(out_dir)
        if run_path.is_file() and not overwrite:
            try:
                previous = json.loads(run_path.read_text())
            except (OSError, ValueError) as error:
                raise RunFolderError(f"{run_path}: cannot read the settings of the earlier "
                                     f"run ({error}); use --overwrite to start afresh") \
                    from None
            changed = [f"{key}: {previous.get(key)!r} -> {value!r}" for key, value in
                       settings.items() if previous.get(key) != value]
            if seed is not None and previous.get("seed") != seed:
                changed.append(f"seed: {previous.get('seed')!r} -> {seed!r}")
            if changed and existing:
                raise RunFolderError(f"{out_dir} holds images of another generate run ("
                                     + "; ".join(changed) + "); use another --out or "
                                     "--overwrite")
            if not changed:
                seed = previous["seed"]
            # else: the earlier run failed before its first image; it claims nothing.
        seed = resolve_seed(seed)
        # Loaded before the run is recorded: a misspelt model fails here, leaving nothing.
        enhancer = _load_enhancer(enhancer, generator)
        if overwrite:
            # Starting afresh: the earlier run's images beyond n would be left unlisted.
            for index in [i for i in existing if i >= int(n)]:
                _image_path(out_dir, index).unlink(missing_ok=True)
            existing = [i for i in existing if i < int(n)]
        atomic_write_bytes(run_path, (json.dumps({**settings, "seed": seed}, indent=1) + "\n")
                           .encode())

        paths = [_image_path(out_dir, i) for i in range(int(n))]
        missing = [i for i, path in enumerate(paths) if overwrite or not path.is_file()]
        frames = []

        def record(first, i, t, x, x0):
            if first == missing[0]:
                frames.append((t, x[:_GIF_IMAGES, 0].float().cpu().numpy()))

        from tqdm.auto import tqdm

        written = []
        chunks = [missing[k:k + batch_size] for k in range(0, len(missing), batch_size)]
        bar = tqdm(total=len(missing), desc=f"generate ({sampler}, {steps} steps)", unit="img",
                   disable=not progress)
        for chunk in chunks:
            # Runs of consecutive indices: each is one generate call.
            runs = np.split(np.array(chunk), np.where(np.diff(chunk) != 1)[0] + 1)
            for run in runs:
                images = generator.generate(
                    len(run), start=int(run[0]), steps=steps, sampler=sampler, seed=seed,
                    substructure=substructure, guidance=guidance, eta=eta,
                    batch_size=batch_size, enhancer=enhancer, progress=False,
                    callback=record if gif and not frames else None)
                for ccd, index in zip(to_ccddata(images), run):
                    if not np.all(np.isfinite(ccd.data)):
                        raise FloatingPointError(
                            f"image {index} of seed {seed} has non-finite pixels; not "
                            f"written to {paths[index]}")
                    write_image(ccd, paths[index], overwrite=True,
                                history=f"lensenhance generate: image {index} of seed {seed}")
                    written.append(paths[index])
                bar.update(len(run))
        bar.close()

        gif_path = None
        if gif and frames:
            gif_path = out_dir / "reverse_process.gif"
            write_reverse_process_gif(frames, gif_path)

        # Every image in the folder: an earlier run of the same settings may have made
        # more than n, with the same seed and so the same streams and classes.
        indices = sorted(set(range(int(n))) | set(existing))
        total = indices[-1] + 1
        if not isinstance(substructure, (str, type(None))):
            indices = list(range(int(n)))  # one class per image: only these have one
            total = int(n)
        labels = generator._labels(total, substructure)[1]
        count = len(indices)
        catalog = Table({"path": [_image_path(out_dir, i).name for i in indices],
                         "image": np.array(indices, dtype=np.int64),
                         "substructure": [labels[i] for i in indices],
                         "seed": np.full(count, seed), "sampler": [sampler] * count,
                         "steps": np.full(count, int(steps)),
                         "guidance": np.full(count, np.nan if guidance is None else guidance)})
        catalog.meta.update({k: ("none" if v is None else v) for k, v in settings.items()})
        catalog_path = out_dir / "catalog.ecsv"
        write_catalog(catalog, catalog_path, overwrite=True)
        return {"written": written, "skipped": int(n) - len(missing), "catalog": catalog_path,
                "n_images": count, "gif": gif_path, "seed": seed}


_IMAGE_NAME = r"^lens_(\d{5,})\.fits$"


def _image_path(out_dir, index):
    return out_dir / f"lens_{index:05d}.fits"


def _image_indices(out_dir):
    """The indices of the images a generate run left in ``out_dir``, sorted."""
    import re

    return sorted(int(match.group(1)) for match in
                  (re.match(_IMAGE_NAME, p.name) for p in out_dir.iterdir()) if match)


def _load_enhancer(enhancer, generator):
    """A pretrained model's name as an Enhancer (loaded once, not once per batch)."""
    if not isinstance(enhancer, str):
        return enhancer
    from ..enhance.enhancer import Enhancer

    return Enhancer.from_pretrained(enhancer, device=generator.device)
