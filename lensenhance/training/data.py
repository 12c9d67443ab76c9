"""Where training and evaluation pairs come from: simulations, saved datasets, FITS catalogues.

Every source ends as aligned stacks of normalised images, normalised exactly as `Enhancer`
normalises an image at inference: the LR image's robust offset and scale, and for the HR
image the same numbers divided by ``scale**2`` (flux per pixel splits over the s x s fine
pixels). A network trained on these pairs therefore sees at inference what it saw in
training.
"""

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .._validation import check_int

__all__ = ["PairSource", "ArrayPairSource", "ArrayImageSource", "CLASSES", "INVARIANT_TRUTH",
           "as_image_stack", "default_scaling",
           "generation_images", "normalize_pairs",
           "simulated_pairs", "dataset_pairs", "catalog_pairs", "load_pairs", "training_pairs"]


def normalize_pairs(lr, hr, *, scale, method="sigma_clip", unit="electron/s"):
    """Normalise stacks of LR/HR pairs exactly as the Enhancer normalises its input.

    Each LR image gets `~lensenhance.predict.normalization.fit_image_normalization` (the
    Enhancer's own rule, outlier refit included) and its HR target
    `~lensenhance.predict.normalization.normalize_target` with the flux split of ``unit``
    (`lensenhance.predict.pixels.flux_split_factor`), which the Enhancer undoes on its output.

    Parameters
    ----------
    lr : array-like, shape (n, y, x)
    hr : array-like, shape (n, scale*y, scale*x)
    scale : int
        The HR/LR pixel ratio; 1 for denoising pairs.
    method : str, optional
        The normalisation method.
    unit : str or astropy unit, optional
        The images' unit (the simulator's electron/s by default).

    Returns
    -------
    lr_norm, hr_norm : numpy.ndarray (float32)
    """
    from ..predict.normalization import fit_image_normalization, normalize_target
    from ..predict.pixels import flux_split_factor

    lr = np.asarray(lr, dtype=np.float32)
    hr = np.asarray(hr, dtype=np.float32)
    if lr.ndim != 3 or hr.ndim != 3 or len(lr) != len(hr):
        raise ValueError(f"lr {lr.shape} and hr {hr.shape} must be stacks of equal length")
    if hr.shape[1:] != (lr.shape[1] * scale, lr.shape[2] * scale):
        raise ValueError(f"hr images {hr.shape[1:]} are not {scale} x lr images "
                         f"{lr.shape[1:]}")
    split = flux_split_factor(_unit(unit), scale)
    lr_out = np.empty_like(lr)
    hr_out = np.empty_like(hr)
    for i in range(len(lr)):
        norm = fit_image_normalization(lr[i], method=method)
        lr_out[i] = norm.apply(lr[i])
        hr_out[i] = normalize_target(hr[i], norm, split)
    return lr_out, hr_out


def _unit(unit):
    from astropy import units as u

    return None if unit is None else u.Unit(unit)


def pairs_overrides(preset, scale, lr_on_preset_grid, num_pix=None):
    """The preset overrides with which `simulated_pairs` simulates: none, the HR grid
    ``scale`` times finer than the preset's, or the preset's pixels on a field of
    ``num_pix`` pixels."""
    from ..simulate import PRESETS

    native = PRESETS[preset]
    overrides = {} if num_pix is None else {"num_pix": int(num_pix)}
    if lr_on_preset_grid:
        overrides = {"num_pix": overrides.get("num_pix", native.num_pix) * scale,
                     "pixel_scale": native.pixel_scale / scale}
    return overrides


def simulated_pairs(n, *, preset="model_i", scale=2, substructure="all", seed=0, workers=1,
                    progress=True, lr_on_preset_grid=False, num_pix=None):
    """Simulate ``n`` raw (unnormalised) LR/HR pairs, the classes in equal parts.

    With ``lr_on_preset_grid`` the HR grid is ``scale`` times finer than the preset's
    (``num_pix * scale`` pixels of ``pixel_scale / scale``), so that the LR images lie on
    the preset's own grid: pairs for a super-resolution model that takes images made on
    that grid (a generator's output, say) to a finer one. ``num_pix`` replaces the
    preset's field size (in its own pixels).

    Returns
    -------
    xarray.Dataset
        The simulator's dataset (``hr``, ``lr``, ``lr_sigma`` and truth coordinates),
        the classes concatenated along ``image``.
    """
    import xarray as xr

    from ..simulate import LensSimulator

    classes = ("no_sub", "cdm", "axion") if substructure == "all" else (substructure,)
    parts = []
    for k, name in enumerate(classes):
        count = len(range(k, n, len(classes)))
        if count == 0:
            continue
        # One independent stream per class, derived from the run seed.
        class_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        sim = LensSimulator.from_preset(preset, substructure=name, seed=class_seed,
                                        **pairs_overrides(preset, scale, lr_on_preset_grid,
                                                          num_pix))
        parts.append(sim.simulate_pairs(count, scale=scale, workers=workers,
                                        progress=progress))
    return xr.concat(parts, dim="image", combine_attrs="override") if len(parts) > 1 \
        else parts[0]


def dataset_pairs(path, *, scale=None):
    """Raw ``(lr, hr)`` stacks from a dataset written by ``lensenhance simulate``."""
    from ..io import read_dataset

    ds = read_dataset(path)
    lr, hr = ds["lr"].values, ds["hr"].values
    if scale is not None and hr.shape[1] != lr.shape[1] * scale:
        raise ValueError(f"{path}: hr/lr size ratio is {hr.shape[1] / lr.shape[1]:g}, "
                         f"not {scale}")
    return lr, hr


def catalog_pairs(path, *, lr_column="lr_path", hr_column="hr_path", hdu=None):
    """Raw ``(lr, hr)`` stacks from a catalogue of LR/HR FITS pairs (e.g. real survey data).

    Rows whose files cannot be read or whose shapes don't match are skipped with a warning
    naming the file; an error is raised if none is left.
    """
    import warnings

    from ..io import read_catalog, read_image

    table = read_catalog(path, path_columns=(lr_column, hr_column))
    for column in (lr_column, hr_column):
        if column not in table.colnames:
            raise ValueError(f"{path}: catalogue has no column {column!r} "
                             f"(columns: {', '.join(table.colnames)})")
    lrs, hrs = [], []
    for row in table:
        try:
            lr = read_image(row[lr_column], hdu=hdu, unit="").data
            hr = read_image(row[hr_column], hdu=hdu, unit="").data
        except (OSError, ValueError, TypeError) as error:
            warnings.warn(f"{path}: skipping a row: {error}", stacklevel=2)
            continue
        if lrs and (lr.shape != lrs[0].shape or hr.shape != hrs[0].shape):
            warnings.warn(f"{path}: skipping {row[lr_column]}: shape {lr.shape} differs from "
                          f"the first row's {lrs[0].shape}", stacklevel=2)
            continue
        lrs.append(lr)
        hrs.append(hr)
    if not lrs:
        raise ValueError(f"{path}: no readable LR/HR pairs")
    return np.stack(lrs), np.stack(hrs)


def load_pairs(spec, *, scale=2, n=4000, preset="model_i", seed=0, workers=1,
               progress=True, lr_on_preset_grid=False, noise_free_lr=False):
    """Raw ``(lr, hr)`` stacks from a spec: ``"simulate"``, a dataset, an .npz or a catalogue.

    Parameters
    ----------
    spec : str or path-like
        ``"simulate"`` simulates ``n`` pairs of ``preset`` now (classes in equal parts,
        streams derived from ``seed``); a ``.nc``/``.zarr`` path is a dataset written by
        ``lensenhance simulate``; an ``.npz`` holds arrays ``lr`` and ``hr``; an
        ``.ecsv``/``.fits`` path is a catalogue with ``lr_path`` and ``hr_path`` columns.
    lr_on_preset_grid : bool, optional
        For ``"simulate"``: see `simulated_pairs`.
    noise_free_lr : bool, optional
        For ``"simulate"``: the LR image is the HR image summed over ``scale`` x ``scale``
        blocks without noise (for models that take noise-free images, e.g. a generator's).
    """
    if str(spec) == "simulate":
        ds = simulated_pairs(n, preset=preset, scale=scale, seed=seed, workers=workers,
                             progress=progress, lr_on_preset_grid=lr_on_preset_grid)
        if noise_free_lr:
            from ..simulate.render import bin_image

            return bin_image(ds["hr"].values, scale).astype(np.float32), ds["hr"].values
        return ds["lr"].values, ds["hr"].values
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset, .npz or catalogue")
    if path.suffix in (".nc", ".zarr"):
        return dataset_pairs(path, scale=scale)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            missing = {"lr", "hr"} - set(arrays.files)
            if missing:
                raise ValueError(f"{path}: lacks the arrays {sorted(missing)}")
            return arrays["lr"], arrays["hr"]
    return catalog_pairs(path)


def training_pairs(spec="simulate", *, scale=2, patch_size=48, n=4000, n_val=64,
                   preset="model_i", seed=1, workers=1, progress=True,
                   lr_on_preset_grid=False, noise_free_lr=False):
    """Normalised training source and validation pairs for `lensenhance.training.train_sr`.

    For ``"simulate"`` the validation images are a separate simulation (its own stream of
    ``seed``); for data on disk the last ``n_val`` images of a fixed shuffle are held out.

    Returns
    -------
    source : ArrayPairSource
        Random aligned patches with D4 augmentation.
    val : tuple of numpy.ndarray
        Whole normalised ``(lr, hr)`` validation images.
    """
    options = {"lr_on_preset_grid": lr_on_preset_grid, "noise_free_lr": noise_free_lr}
    lr, hr = load_pairs(spec, scale=scale, n=n, preset=preset, seed=seed, workers=workers,
                        progress=progress, **options)
    if str(spec) == "simulate":
        val_lr, val_hr = load_pairs(spec, scale=scale, n=n_val, preset=preset,
                                    seed=seed + 10_000, workers=workers, progress=False,
                                    **options)
    else:
        if len(lr) <= n_val:
            raise ValueError(f"{spec}: {len(lr)} pairs; need more than n_val={n_val}")
        order = np.random.default_rng(seed).permutation(len(lr))
        val_lr, val_hr = lr[order[-n_val:]], hr[order[-n_val:]]
        lr, hr = lr[order[:-n_val]], hr[order[:-n_val]]
    lr, hr = normalize_pairs(lr, hr, scale=scale)
    return (ArrayPairSource(lr, hr, patch_size=patch_size, scale=scale),
            normalize_pairs(val_lr, val_hr, scale=scale))


# --------------------------------------------------------------------------- sources


@runtime_checkable
class PairSource(Protocol):
    """Protocol of the training-pair sources accepted by `train_sr`.

    A pair source has an integer attribute ``scale`` and a method
    ``sample(batch_size, rng) -> (lr, hr)`` returning two float32 numpy arrays,
    ``lr`` of shape ``(batch_size, 1, h, w)`` and ``hr`` of shape
    ``(batch_size, 1, scale*h, scale*w)``, aligned pixel for pixel and already
    normalised as the network sees them. Every random number must come from
    ``rng`` (a `numpy.random.Generator`): the training loop passes a generator
    seeded by ``(seed, rank, step)``, which is what makes runs reproducible,
    resumable to the same state, and different across distributed ranks.
    """

    scale: int

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return ``batch_size`` aligned ``(lr, hr)`` pairs drawn with ``rng``."""
        ...


def as_image_stack(array, name: str) -> np.ndarray:
    """Return ``array`` as a finite float32 ``(N, y, x)`` stack (accepts (N, 1, y, x))."""
    stack = np.asarray(array, dtype=np.float32)
    if stack.ndim == 4 and stack.shape[1] == 1:
        stack = stack[:, 0]
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    if stack.ndim != 3:
        raise ValueError(f"{name} must be an image stack (n, y, x), got shape {stack.shape}")
    if not np.all(np.isfinite(stack)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return stack


def _d4_numpy(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """`lensenhance.nn.ensemble.d4_transform` (the one D4) on an array."""
    from ..nn.ensemble import d4_transform

    return d4_transform(image, k, flip)


class ArrayPairSource:
    """Random aligned patches of in-memory (LR, HR) image pairs, with D4 augmentation.

    Parameters
    ----------
    lr, hr : array-like
        Image stacks ``(n, h, w)`` and ``(n, scale*h, scale*w)`` (a channel axis of
        length 1 is accepted), already normalised.
    patch_size : int or None, optional
        Side of the HR patches (a multiple of ``scale``); None uses whole images
        (which must then be square when ``augment`` is on).
    scale : int, optional
        Upsampling factor relating the two grids.
    augment : bool, optional
        Apply a random rotation by a multiple of 90 degrees and a random flip to each
        pair (the same to LR and HR).
    """

    def __init__(self, lr, hr, *, patch_size: int | None = 48, scale: int = 2,
                 augment: bool = True):
        check_int(scale, "scale")
        self.lr = as_image_stack(lr, "lr")
        self.hr = as_image_stack(hr, "hr")
        n, h, w = self.lr.shape
        if len(self.hr) != n:
            raise ValueError(f"lr and hr hold different numbers of images: {n} and {len(self.hr)}")
        if self.hr.shape[1:] != (h * scale, w * scale):
            raise ValueError(f"hr images {self.hr.shape[1:]} are not {scale} x the lr images "
                             f"{(h, w)}")
        if patch_size is None:
            if augment and h != w:
                raise ValueError("whole-image pairs must be square for rotation augmentation; "
                                 "give a patch_size")
            self._lr_patch = None
        else:
            check_int(patch_size, "patch_size")
            if patch_size % scale:
                raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}")
            if patch_size > min(h, w) * scale:
                raise ValueError(f"patch_size {patch_size} exceeds the HR images "
                                 f"{self.hr.shape[1:]}")
            self._lr_patch = patch_size // scale
        self.patch_size = patch_size
        self.scale = scale
        self.augment = bool(augment)

    def __len__(self) -> int:
        return len(self.lr)

    def __repr__(self) -> str:
        return (f"ArrayPairSource(n={len(self)}, lr={self.lr.shape[1:]}, hr={self.hr.shape[1:]}, "
                f"patch_size={self.patch_size}, scale={self.scale}, augment={self.augment})")

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``batch_size`` aligned patches ``(B, 1, p/s, p/s)``, ``(B, 1, p, p)``."""
        n, h, w = self.lr.shape
        s = self.scale
        ph, pw = (h, w) if self._lr_patch is None else (self._lr_patch, self._lr_patch)
        index = rng.integers(0, n, size=batch_size)
        ys = rng.integers(0, h - ph + 1, size=batch_size)
        xs = rng.integers(0, w - pw + 1, size=batch_size)
        ks = rng.integers(0, 4, size=batch_size) if self.augment else np.zeros(batch_size, int)
        flips = rng.integers(0, 2, size=batch_size) if self.augment else ks
        lr_out, hr_out = [], []
        for i, y, x, k, flip in zip(index, ys, xs, ks, flips):
            lr_patch = self.lr[i, y:y + ph, x:x + pw]
            hr_patch = self.hr[i, y * s:(y + ph) * s, x * s:(x + pw) * s]
            lr_out.append(_d4_numpy(lr_patch, int(k), bool(flip)))
            hr_out.append(_d4_numpy(hr_patch, int(k), bool(flip)))
        return (np.ascontiguousarray(np.stack(lr_out)[:, np.newaxis]),
                np.ascontiguousarray(np.stack(hr_out)[:, np.newaxis]))


class ArrayImageSource:
    """Random whole images with class labels, with D4 augmentation: a generator's data.

    Parameters
    ----------
    images : array-like, shape (n, y, x)
        Images as the network sees them (already scaled).
    labels : array-like of int, shape (n,), optional
        Class of each image (default all 0).
    augment : bool, optional
        A random rotation by a multiple of 90 degrees and a random flip per image (the
        classes of lensing images do not depend on orientation).
    """

    def __init__(self, images, labels=None, *, augment: bool = True):
        self.images = as_image_stack(images, "images")
        n, h, w = self.images.shape
        if augment and h != w:
            raise ValueError(f"images must be square for rotation augmentation, got {(h, w)}")
        self.labels = (np.zeros(n, dtype=np.int64) if labels is None
                       else np.asarray(labels, dtype=np.int64))
        if self.labels.shape != (n,):
            raise ValueError(f"{n} images but labels of shape {self.labels.shape}")
        self.augment = bool(augment)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        counts = np.bincount(self.labels).tolist()
        return (f"ArrayImageSource(n={len(self)}, shape={self.images.shape[1:]}, "
                f"class_counts={counts}, augment={self.augment})")

    def sample(self, batch_size: int, rng: np.random.Generator):
        """Draw ``(images (B, 1, y, x), labels (B,))`` using only ``rng``."""
        index = rng.integers(0, len(self), size=batch_size)
        ks = rng.integers(0, 4, size=batch_size) if self.augment else np.zeros(batch_size, int)
        flips = rng.integers(0, 2, size=batch_size) if self.augment else ks
        out = [_d4_numpy(self.images[i], int(k), bool(f)) for i, k, f in zip(index, ks, flips)]
        return np.ascontiguousarray(np.stack(out)[:, np.newaxis]), self.labels[index]


#: The classes of the DeepLense presets, in label order.
CLASSES = ("no_sub", "cdm", "axion")

#: Truth parameters of a lensing image that do not change when it is rotated or flipped
#: (the targets a D4-augmented network can learn), from the simulator's coordinates.
INVARIANT_TRUTH = ("theta_E", "ellipticity", "shear", "lens_light_mag", "lens_light_radius",
                   "source_mag", "source_radius", "source_offset")


def _invariant_truth(ds):
    """`INVARIANT_TRUTH` from a simulated dataset, float32 arrays along ``image``."""
    c = {k: np.asarray(ds[k].values, dtype=np.float64) for k in ds.coords
         if ds[k].dims == ("image",) and ds[k].dtype.kind == "f"}
    derived = {"ellipticity": np.hypot(c["e1"], c["e2"]),
               "shear": np.hypot(c["gamma1"], c["gamma2"]),
               "source_offset": np.hypot(c["source_x"] - c["lens_x"],
                                         c["source_y"] - c["lens_y"])}
    return {name: derived.get(name, c.get(name)).astype(np.float32)
            for name in INVARIANT_TRUTH}


def default_scaling(images, preset, *, softening=None, maximum=None) -> dict:
    """The asinh stretch ``{"softening", "maximum"}`` of generator training images.

    Given values win; otherwise 0.01 and 20 (data unit) for the physical presets, and
    0.5 % of the median peak and the median peak for the DeepLense ones (Model I peaks
    near 0.2 electron/s, Model II near 4).
    """
    if str(preset).startswith("deeplense"):
        peak = float(np.median(np.asarray(images).reshape(len(images), -1).max(axis=1)))
        auto = {"softening": 5e-3 * peak, "maximum": peak}
    else:
        auto = {"softening": 0.01, "maximum": 20.0}
    return {"softening": auto["softening"] if softening is None else float(softening),
            "maximum": auto["maximum"] if maximum is None else float(maximum)}


def generation_images(n, *, preset="model_ii", seed=0, workers=1, progress=True,
                      cache=None, truth=True, num_pix=None, binned=1):
    """Noise-free lensing images of the three classes and their labels, for generators.

    The simulator's noise-free ``hr`` images at the preset's own pixel scale (its native
    grid, ``scale=2`` pairs whose ``hr`` is that grid), classes in equal parts in the
    order of `CLASSES`.

    Parameters
    ----------
    n : int
        Number of images.
    preset, seed, workers, progress, num_pix
        As for `simulated_pairs`.
    binned : int, optional
        Sum the images over ``binned`` x ``binned`` blocks: the noise-free LR of the
        preset's pairs, which a super-resolution model trained on them (``--noise-free-lr``)
        takes back to the preset's grid. A generator of these is one half of a chain.
    cache : path-like, optional
        An ``.npz`` file: read when it exists and was made with the same arguments,
        written otherwise (simulating takes minutes; resumed trainings reuse it).
    truth : bool, optional
        Return the truth parameters in ``attrs["truth"]`` (a cache without them is then
        simulated again).

    Returns
    -------
    images : numpy.ndarray, float32, shape (n, y, x)
        Flux per pixel in the simulator's unit.
    labels : numpy.ndarray of int, shape (n,)
        Index into `CLASSES`.
    attrs : dict
        ``preset``, ``pixel_scale``, ``unit``, and ``truth``: the `INVARIANT_TRUTH`
        parameters of every image (arrays of length n).
    """
    import json

    key = {"n": int(n), "preset": preset, "seed": int(seed)}
    # Default grids keep the keys of caches written before these options.
    key.update({} if num_pix is None else {"num_pix": int(num_pix)})
    key.update({} if binned == 1 else {"binned": int(binned)})
    key = json.dumps(key, sort_keys=True)
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as stored:
            stored_truth = {name: stored[f"truth_{name}"] for name in INVARIANT_TRUTH
                            if f"truth_{name}" in stored.files}
            # Caches written before the truth was kept are simulated again if it is needed.
            complete = len(stored_truth) == len(INVARIANT_TRUTH) or not truth
            if str(stored["key"]) == key and complete:
                attrs = json.loads(str(stored["attrs"]))
                if stored_truth:
                    attrs["truth"] = stored_truth
                return stored["images"], stored["labels"], attrs
    ds = simulated_pairs(n, preset=preset, scale=2, seed=seed, workers=workers,
                         progress=progress, num_pix=num_pix)
    images = ds["hr"].values.astype(np.float32)
    if binned > 1:
        from ..simulate.render import bin_image

        images = bin_image(images, binned).astype(np.float32)
    labels = np.array([CLASSES.index(str(s)) for s in ds["substructure"].values])
    attrs = {"preset": preset, "pixel_scale": float(ds.attrs["hr_pixel_scale"]) * binned,
             "unit": str(ds.attrs["unit"])}
    truth_values = _invariant_truth(ds)
    if cache is not None:
        import io

        from .._atomic import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, images=images, labels=labels, key=np.array(key),
                 attrs=np.array(json.dumps(attrs)),
                 **{f"truth_{name}": values for name, values in truth_values.items()})
        atomic_write_bytes(Path(cache), buffer.getvalue())
    return images, labels, {**attrs, "truth": truth_values}
