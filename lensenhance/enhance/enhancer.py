"""The astropy-facing enhancer: images in, enhanced images out, every pixel accounted for.

`Enhancer` is the bridge between astronomical images and the predictors of
`lensenhance.predict.predictors`. One path for every model:

1. **prepare** (once per image): read any image form (lazily for a FITS file), flag bad
   pixels, fit one robust normalisation for the whole image
   (`lensenhance.predict.normalization.fit_normalization`), normalise, and fill bad pixels from
   their neighbourhood for the network;
2. **predict**: the predictor runs tile by tile (`lensenhance.predict.tiling`), serially, in
   batches on a GPU or with dask;
3. **finish**: undo the normalisation for the mean and the standard deviation, split flux
   over the new pixels for flux-per-pixel units, resample every WCS, mask the bad pixels
   (NaN in the science array), carry the uncertainty and record the provenance.

Bad pixels are non-finite or masked pixels (a CCDData mask, a ``numpy.ma`` mask),
pixels whose uncertainty is not finite or negative, and *cosmic rays and hot pixels*:
the pixels inconsistent with the PSF, found by L.A.Cosmic (van Dokkum 2001, PASP 113,
1420; `astroscrappy`) with a PSF sharpness test
(`lensenhance.predict.pixels.detect_cosmic_rays`; ``cosmic_rays=False`` turns it off).
Bad pixels are filled from their neighbourhood for the network
(`lensenhance.predict.pixels.fill_bad_pixels`), and masked in the output (NaN).

Bright sources are data, however bright. Pixels whose normalised value
``|(x - offset) / scale|`` exceeds ``outlier_threshold`` (default 50: fifty times the
normalisation scale, the 99.5th percentile of the sky-subtracted image, where the bright
parts of a lens sit near 1) are beyond the range the networks were trained on: the
network gets their neighbourhood's values, and the output takes there, and over a
margin of two input pixels, a flux-conserving bicubic interpolation of the input
(`lensenhance.predict.pixels.flux_conserving_upsample`): finite, flagged in the output
mask, counted in the header (``LENRANGE``) and named in a warning (`DomainWarning`).

Each input is also compared with the domain the model was trained on (a shipped card's
``domain``: pixel scale, PSF, noise; `lensenhance.predict.domain.check_domain`); what
differs is named in a `DomainWarning` and the header's ``LEWARN`` cards.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning

from .. import io
from .._device import resolve_device
from .._validation import check_int
from .._version import __version__
from ..predict.domain import DomainWarning, pixel_scale_of
from ..predict.loading import INTERPOLATIONS, load_predictor
from ..predict.normalization import OUTLIER_THRESHOLD
from ..predict.pixels import flux_conserving_upsample, flux_split_factor
from ..predict.scratch import iter_blocks, release_mapped_pages, scratch_array
from .prepare import prepare_image

__all__ = ["Enhancer", "OUTLIER_THRESHOLD", "DomainWarning"]

# Output pixels on a side of the blocks that are finished at once (float64 temporaries of
# 8 MB, whatever the image's width).
_FINISH_BLOCK = 1024
# The output std near filled pixels covers this many times how far a fill error of one
# fill sigma (the neighbours' spread) moves the output: a pixel then moves by at most
# about 1 / _FILL_COVER of its std (issue 22 asks for 0.3).
_FILL_COVER = 8.0
_UNSET = object()


class Enhancer:
    """Super-resolve or denoise images of any size, keeping units, WCS, masks and errors.

    Parameters
    ----------
    model : torch.nn.Module, path or Predictor
        A network mapping normalised ``(batch, 1, y, x)`` to ``(batch, 1, s*y, s*x)``; or
        the path of a weights file written by `lensenhance.nn.export_weights`; or a
        `lensenhance.predict.predictors.Predictor`.
    scale : int, optional
        Upsampling factor (1 for a denoiser); default: the network's ``scale``.
    name : str, optional
        A label for headers and ``repr``.
    self_ensemble : bool, optional
        Average over the 8 rotations and flips (D4 self-ensemble), about 8x slower.
    device : str or torch.device, optional
        ``"auto"`` (default): CUDA when available, else the CPU.
    tile_size : int or None, optional
        Side of the tiles given to the network, halo included (default 576 on a CPU,
        1024 on a GPU); None: each image in one pass (memory grows with the image).
    overlap : int, optional
        Width of the band where neighbouring tiles are blended; default 0 (cores
        butted, exact) for networks without global operations, else half the halo.
    halo : int, optional
        Margin around each tile's used part; default: the network's receptive field
        (`lensenhance.predict.predictors.count_receptive_field`).
    batch_size : int, optional
        Tiles (or images of a stack) per forward pass; on a CPU a batch also holds at
        most ``tile_size**2`` pixels.
    n_draws : int, optional
        Monte-Carlo draws propagating an input uncertainty (0: no output uncertainty).
    normalization : {"sigma_clip", "background2d"}, optional
        How the normalisation is fitted (`lensenhance.predict.normalization.fit_normalization`).
    outlier_threshold : float or None, optional
        Pixels with ``|normalised value|`` above it are beyond the model's range: the
        output interpolates the input there, keeping the flux, and masks them (see the
        module docstring); None: the network gets every value.
    cosmic_rays : bool, optional
        Find cosmic rays and hot pixels, the pixels inconsistent with the PSF
        (`lensenhance.predict.pixels.detect_cosmic_rays`: L.A.Cosmic, van Dokkum 2001,
        with a PSF sharpness test), and treat them as bad pixels.
    psf_fwhm : float, optional
        The inputs' PSF FWHM in arcsec; default: the header's (``PSF_FWHM``, ``PSFFWHM``
        or ``SEEING``), else the model's.
    resample : {None, "model"}, optional
        ``"model"``: reproject each input with a celestial WCS onto the model's pixel
        scale (`reproject`), enhance it there and bring the result back to the input's
        grid (flux per pixel conserved, WCS the input's upsampled). Needs a model with a
        known domain (a shipped one).
    parallel : bool, int or "current-scheduler", optional
        Run tiles with dask (`lensenhance.predict.tiling`).
    seed : int, optional
        Seed of the randomness (Monte-Carlo draws, samples).
    progress : bool, optional
        Show a progress bar over tiles.

    Examples
    --------
    >>> import numpy as np
    >>> import lensenhance as le
    >>> enh = le.Enhancer.interpolation("bicubic", scale=2)
    >>> enh.enhance(np.ones((8, 8))).shape
    (16, 16)
    """

    def __init__(self, model, *, scale=None, name=None, self_ensemble=False, device="auto",
                 tile_size="auto", overlap=None, halo=None, batch_size=8, n_draws=8,
                 normalization="sigma_clip", outlier_threshold=OUTLIER_THRESHOLD,
                 cosmic_rays=True, psf_fwhm=None, resample=None, parallel=False, seed=0,
                 progress=False):
        from ..predict.tiling import DEFAULT_TILE_SIZE, _parallel_setup, check_tiling

        self.device = resolve_device(device)
        predictor = load_predictor(model, device=self.device, scale=scale, name=name,
                                   self_ensemble=self_ensemble, n_draws=n_draws, halo=halo)
        self.predictor = predictor.to(self.device)
        self.name = name or predictor.name
        if tile_size == "auto":
            tile_size = DEFAULT_TILE_SIZE.get(self.device.type, 512)
        self.halo = predictor.halo if halo is None else int(halo)
        if overlap is None:
            overlap = 0 if predictor.exact_tiling else max(2, self.halo // 2)
        check_tiling(tile_size, self.halo, overlap)
        check_int(batch_size, "batch_size")
        if outlier_threshold is not None and not (
                isinstance(outlier_threshold, (int, float, np.number))
                and not isinstance(outlier_threshold, bool) and outlier_threshold > 0):
            raise ValueError(f"outlier_threshold must be a number > 0 or None, got "
                             f"{outlier_threshold!r}")
        if not isinstance(cosmic_rays, (bool, np.bool_)):
            raise TypeError(f"cosmic_rays must be True or False, got {cosmic_rays!r}")
        if psf_fwhm is not None and not (
                isinstance(psf_fwhm, (int, float, np.number)) and not isinstance(psf_fwhm, bool)
                and math.isfinite(psf_fwhm) and psf_fwhm > 0):
            raise ValueError(f"psf_fwhm must be a positive number of arcsec or None, got "
                             f"{psf_fwhm!r}")
        if resample not in (None, "model"):
            raise ValueError(f"resample must be None or 'model', got {resample!r}")
        _parallel_setup(parallel)  # validates
        self.tile_size = None if tile_size is None else int(tile_size)
        self.overlap = int(overlap)
        self.batch_size = int(batch_size)
        self.normalization = normalization
        self.outlier_threshold = outlier_threshold
        self.cosmic_rays = bool(cosmic_rays)
        self.psf_fwhm = None if psf_fwhm is None else float(psf_fwhm)
        self.resample = resample
        if resample == "model" and not (predictor.domain or {}).get("pixel_scale"):
            raise ValueError(f"resample='model' needs the model's pixel scale, and "
                             f"{self.name!r} has no domain (the shipped models do)")
        self.parallel = parallel
        self.seed = check_int(seed, "seed", 0)
        self.progress = bool(progress)

    @classmethod
    def from_pretrained(cls, name, *, device="auto", tile_size="auto", overlap=None,
                        self_ensemble=False, n_samples=None, steps=None, batch_size=8,
                        **kwargs):
        """An Enhancer around one of the shipped models (see `lensenhance.list_pretrained`).

        Parameters
        ----------
        name : str
            A pretrained model of task ``"sr"``, ``"denoise"`` or ``"posterior"``.
        device, tile_size, overlap, self_ensemble, batch_size
            As for `Enhancer`; ``self_ensemble`` applies to the residual networks only.
        n_samples : int, optional
            Samples per pixel of a diffusion (posterior) model (default 16); the residual
            networks draw none and refuse it.
        steps : int, optional
            Sampler steps of a diffusion model (default: the model's).
        **kwargs
            Other `Enhancer` options (``n_draws``, ``parallel``, ``seed``, ``progress``
            ...), and a diffusion model's ``sampler`` and ``sample_batch``.

        Examples
        --------
        >>> import lensenhance as le
        >>> le.Enhancer.from_pretrained("fsrcnn-x2", device="cpu", tile_size=256)
        <Enhancer 'fsrcnn-x2' scale=2 device=cpu tile_size=256 halo=... batch_size=8>
        """
        from ..pretrained import model_card

        task = model_card(name).get("task")  # an unknown name gets the list of models
        if task not in ("sr", "denoise", "posterior"):
            raise ValueError(f"{name!r} is a {task!r} model, not an enhancer")
        return cls.open(name, device=device, tile_size=tile_size, overlap=overlap,
                        self_ensemble=self_ensemble, n_samples=n_samples, steps=steps,
                        batch_size=batch_size, **kwargs)

    @classmethod
    def open(cls, model, *, scale=None, n_samples=None, steps=None, **kwargs):
        """An Enhancer from a model as a user names it on the command line.

        Parameters
        ----------
        model : str or path
            ``"bilinear"`` or ``"bicubic"``; a weights file (a residual network, or a
            diffusion model's, which gives a posterior); or a shipped model's name.
        scale : int, optional
            The baselines' upsampling factor (default 2); for a weights file, as for
            `Enhancer`.
        n_samples, steps : int, optional
            Posterior samples and sampler steps of a diffusion model; refused by the others.
        **kwargs
            Other `Enhancer` options (``device``, ``tile_size``, ...).
        """
        device = resolve_device(kwargs.pop("device", "auto"))
        sampling = {key: kwargs.pop(key) for key in ("sampler", "sample_batch")
                    if key in kwargs}
        if model in INTERPOLATIONS and (n_samples is not None or steps is not None):
            raise ValueError(f"n_samples and steps apply to diffusion models, not {model}")
        predictor = load_predictor(
            model, device=device, scale=scale, name=kwargs.pop("name", None),
            self_ensemble=kwargs.pop("self_ensemble", False),
            n_draws=kwargs.pop("n_draws", 8), halo=kwargs.get("halo"),
            n_samples=n_samples, steps=steps, **sampling)
        return cls(predictor, device=device, **kwargs)

    @classmethod
    def interpolation(cls, mode="bicubic", *, scale=2, **kwargs):
        """A parameter-free baseline (``"bilinear"`` or ``"bicubic"``) behind the same API."""
        if mode not in INTERPOLATIONS:
            raise ValueError(f"mode must be one of {INTERPOLATIONS}, got {mode!r}")
        return cls.open(mode, scale=scale, **kwargs)

    # -- attributes -------------------------------------------------------------------------

    @property
    def scale(self):
        return self.predictor.scale

    @property
    def model(self):
        """The network of a network predictor (None for other predictors)."""
        return getattr(self.predictor, "module", None)

    @property
    def self_ensemble(self):
        return getattr(self.predictor, "self_ensemble", False)

    def __repr__(self):
        tiles = "whole" if self.tile_size is None else self.tile_size
        extra = " self_ensemble" if self.self_ensemble else ""
        if self.predictor.steps is not None:  # a diffusion posterior
            extra += (f" n_samples={self.predictor.n_samples} steps={self.predictor.steps}"
                      f" sampler={self.predictor.sampler!r}")
        return (f"<Enhancer {self.name!r} scale={self.scale} device={self.device} "
                f"tile_size={tiles} halo={self.halo} overlap={self.overlap} "
                f"exact_tiling={self.predictor.exact_tiling} batch_size={self.batch_size}"
                f"{extra}>")

    # -- prepare ----------------------------------------------------------------------------

    def _prepare(self, ccd, name):
        return prepare_image(ccd, name, predictor=self.predictor, psf_fwhm=self.psf_fwhm,
                             normalization=self.normalization,
                             outlier_threshold=self.outlier_threshold,
                             cosmic_rays=self.cosmic_rays)

    # -- finish -----------------------------------------------------------------------------

    def _output_meta(self, prep, *, has_std, options):
        s = self.scale
        meta = prep.ccd.meta
        if isinstance(meta, fits.Header):
            meta = io.resample_header_wcs(meta, s, name=prep.name) if s > 1 else meta.copy()
        else:
            meta = _resample_dict_wcs(dict(meta), s, name=prep.name) if s > 1 else dict(meta)
        sha = self.predictor.weights_hash()
        cards = {
            "LEMODEL": (self.name, "lensenhance model"),
            "LEWSHA": (sha or "none", ""),  # 64 characters leave no room
            "LEVERS": (__version__, "lensenhance version"),
            "LESCALE": (s, "upsampling factor"),
            "LETILE": (options["tile_size"] or 0, "tile side incl. halo (0: whole image)"),
            "LEHALO": (options["halo"], "tile halo (input pixels)"),
            "LEOVLAP": (options["overlap"], "tile blending band (input pixels)"),
            "LESEED": (options["seed"], "seed of the randomness"),
            "LEOUTLR": (self.outlier_threshold or 0.0,
                        "model's range: |normalised value| (0: off)"),
            "LENBAD": (prep.n_bad, "input pixels masked (NaN/mask/cosmic)"),
            "LENCR": (prep.n_cosmic, "of which cosmic rays/hot pixels"),
            "LECRAY": (self.cosmic_rays, "cosmic rays sought (L.A.Cosmic + PSF)"),
            "LENRANGE": (prep.n_bright, "input px beyond the model's range"),
            "LENINTP": (prep.n_interpolated,
                        "input px interpolated (source + margin), masked"),
            "LEFLUX": (self._flux_factor(prep), "factor on values (flux split)"),
        }
        if has_std:
            cards["UNCTYPE"] = (self.predictor.uncertainty_type, "what UNCERT holds")
        if prep.sigma_estimate is not None:
            cards["LESIGEST"] = (prep.sigma_estimate, "input sigma estimated (sky, data unit)")
        for index, message in enumerate(prep.warnings):
            cards["LEWARN" + (str(index + 1) if index else "")] = (message[:68], "")
        for key, (value, comment) in cards.items():
            meta[key] = (value, comment) if isinstance(meta, fits.Header) else value
        prep.norm.to_meta(meta)
        note = (f"lensenhance {__version__}: enhanced by {self.name} (x{s}); "
                f"{prep.n_bad} bad pixels filled for the network and masked; "
                f"{prep.n_interpolated} pixels of sources beyond the model's range "
                "interpolated (flux kept) and masked")
        if isinstance(meta, fits.Header):
            meta.add_history(note)
        else:
            history = meta.get("HISTORY", [])
            meta["HISTORY"] = [*([history] if isinstance(history, str) else history), note]
        return meta

    def _flux_factor(self, prep):
        return flux_split_factor(prep.ccd.unit, self.scale, name=prep.name)

    def _finish_arrays(self, prep, data, std, samples, mask_out):
        """Undo the normalisation in place, block by block; NaN at bad pixels."""
        s = self.scale
        factor = self._flux_factor(prep)
        norm = prep.norm
        for _, block, _ in iter_blocks(prep.bad.shape, block=max(1, _FINISH_BLOCK // s)):
            region_out = tuple(slice(b.start * s, b.stop * s) for b in block)
            bad = prep.bad[block]
            if s > 1:
                bad = np.repeat(np.repeat(bad, s, axis=0), s, axis=1)
            data[region_out] = np.where(bad, np.nan, norm.invert(data[region_out]) * factor)
            if std is not None:
                std[region_out] = np.where(bad, np.nan, norm.invert_std(std[region_out]) * factor)
            if samples is not None:
                samples[(slice(None), *region_out)] = np.where(
                    bad, np.nan, norm.invert(samples[(slice(None), *region_out)]) * factor)
            if mask_out is not None:
                mask_out[region_out] = bad
            release_mapped_pages(data, std, samples, mask_out, prep.bad)
        for window, region, values, sigma in prep.boxes:
            # flux-conserving bicubic of the input where the model's range was left
            out = tuple(slice(w.start * s, min(w.stop, n) * s)
                        for w, n in zip(window, prep.bad.shape))
            region = np.repeat(np.repeat(region, s, axis=0), s, axis=1)
            value = flux_conserving_upsample(values, s, factor=factor)
            data[out] = np.where(region, value, data[out])
            if std is not None:
                spread = np.repeat(np.repeat(sigma, s, axis=0), s, axis=1) * factor
                std[out] = np.where(region, spread, std[out])
            if samples is not None:
                samples[(slice(None), *out)] = np.where(region, value,
                                                        samples[(slice(None), *out)])
            if mask_out is not None:
                mask_out[out] |= region

    def _options(self, tile_size, overlap, parallel, seed, progress):
        from ..predict.tiling import _parallel_setup, check_tiling

        options = {
            "tile_size": self.tile_size if tile_size is _UNSET else tile_size,
            "overlap": self.overlap if overlap is _UNSET else overlap,
            "parallel": self.parallel if parallel is _UNSET else parallel,
            "seed": self.seed if seed is _UNSET else check_int(seed, "seed", 0),
            "progress": self.progress if progress is _UNSET else progress,
            "halo": self.halo,
        }
        check_tiling(options["tile_size"], options["halo"], options["overlap"])
        _parallel_setup(options["parallel"])
        return options

    def _gives_std(self, prep):
        # An estimated sigma is for the network's input only (Predictor.gives_std).
        return self.predictor.gives_std(prep.sigma is not None
                                        and prep.sigma_estimate is None)

    def _predict(self, preps, outputs, options, noise_keys=None):
        from ..predict.tiling import predict_images

        if noise_keys is None:
            noise_keys = list(range(len(preps)))
        sigmas = [p.sigma for p in preps]
        has_sigma = [s is not None for s in sigmas]
        # One predictor call mixes images only when all have (or all lack) a sigma.
        groups = {flag: [i for i, h in enumerate(has_sigma) if h == flag] for flag in (0, 1)}
        for flag, indices in groups.items():
            if not indices:
                continue
            predict_images(self.predictor, [preps[i].image for i in indices],
                           sigmas=[sigmas[i] for i in indices] if flag else None,
                           outputs=[outputs[i] for i in indices],
                           tile_size=options["tile_size"], halo=options["halo"],
                           overlap=options["overlap"], batch_size=self.batch_size,
                           max_batch_pixels=_batch_pixels(self.device, options["tile_size"]),
                           parallel=options["parallel"], seed=options["seed"],
                           noise_keys=[noise_keys[i] for i in indices],
                           zero_levels=[-preps[i].norm.offset / preps[i].norm.scale
                                        for i in indices]
                           if self.predictor.uses_zero_level else None,
                           progress=options["progress"])
        for prep, out, noise_key in zip(preps, outputs, noise_keys):
            if out["std"] is None or prep.fill_sigma is None or self.predictor.n_samples:
                continue
            # How far the fills' own error moves the output, from two passes with the
            # filled pixels moved up and down by their uncertainty: the std covers
            # _FILL_COVER times that (a diffusion posterior's sampler sees the sigma and
            # widens its spread itself).
            shape = out["mean"].shape
            widest = scratch_array(shape, np.float32)
            moved_image = scratch_array(prep.image.shape, np.float32)
            for sign in (1.0, -1.0):
                for _, block, _ in iter_blocks(prep.image.shape):
                    moved_image[block] = prep.image[block] + sign * prep.fill_sigma[block]
                    release_mapped_pages(moved_image, prep.image, prep.fill_sigma)
                moved = {"mean": scratch_array(shape, np.float32), "std": None,
                         "samples": None}
                predict_images(self.predictor, [moved_image],
                               sigmas=[prep.sigma] if self.predictor.needs_sigma else None,
                               outputs=[moved], tile_size=options["tile_size"],
                               halo=options["halo"], overlap=options["overlap"],
                               batch_size=self.batch_size,
                               max_batch_pixels=_batch_pixels(self.device,
                                                              options["tile_size"]),
                               parallel=options["parallel"], seed=options["seed"],
                               noise_keys=[noise_key], progress=False)
                for _, block, _ in iter_blocks(shape):
                    np.maximum(widest[block], np.abs(moved["mean"][block] - out["mean"][block]),
                               out=widest[block])
                    release_mapped_pages(widest, moved["mean"], out["mean"])
            for _, block, _ in iter_blocks(shape):
                spread = _FILL_COVER * widest[block]
                out["std"][block] = np.sqrt(out["std"][block] ** 2 + spread**2)
                release_mapped_pages(widest, out["std"])

    def _enhance_ccds(self, ccds, names, options, *, return_samples=False):
        if self.resample == "model":
            if return_samples:
                raise ValueError("return_samples is not supported with resample='model'")
            return [self._enhance_resampled(ccd, name, options)
                    for ccd, name in zip(ccds, names)]
        return self._enhance_on_grid(ccds, names, options, return_samples=return_samples)

    def _enhance_resampled(self, ccd, name, options):
        """Reproject onto the model's pixel scale, enhance, reproject back (`reproject`)."""
        target = self.predictor.domain["pixel_scale"]
        scale_in = pixel_scale_of(ccd.wcs)
        if scale_in is None:
            warnings.warn(f"{name}: no celestial WCS, so no pixel scale: not resampled to "
                          "the model's", DomainWarning, stacklevel=5)
            return self._enhance_on_grid([ccd], [name], options)[0]
        ratio = scale_in / target
        if abs(ratio - 1) < 0.01:
            return self._enhance_on_grid([ccd], [name], options)[0]
        flux = flux_split_factor(ccd.unit, 2, name=name) < 1  # flux per pixel, not per area
        wcs = ccd.wcs.celestial.deepcopy()
        if wcs.wcs.has_cd():
            wcs.wcs.cd = wcs.wcs.cd / ratio
        else:
            wcs.wcs.cdelt = wcs.wcs.cdelt / ratio
        wcs.wcs.crpix = (wcs.wcs.crpix - 0.5) * ratio + 0.5  # pixel edges stay put
        shape = tuple(max(1, math.ceil(n * ratio)) for n in ccd.shape)
        wcs.pixel_shape = shape[::-1]
        moved = _reproject(ccd, wcs, shape, flux)
        ((result, _),) = self._enhance_on_grid([moved], [name], options)
        s = self.scale
        back_wcs = io.upsample_wcs(ccd.wcs, s) if s > 1 else ccd.wcs
        back = _reproject(result, back_wcs.celestial, (ccd.shape[0] * s, ccd.shape[1] * s),
                          flux)
        meta = result.meta
        note = (f"input pixel scale {scale_in:.4g}\" -> model's {target:.4g}\" and back",
                "reproject" + (", flux conserved" if flux else ""))
        if isinstance(meta, fits.Header):
            meta["LERESAMP"] = (note[0][:68], note[1])
        else:
            meta["LERESAMP"] = note[0]
        back.meta = meta
        back.wcs = back_wcs
        return back, None

    def _enhance_on_grid(self, ccds, names, options, *, return_samples=False):
        s = self.scale
        preps = [self._prepare(ccd, name) for ccd, name in zip(ccds, names)]
        n_samples = self.predictor.n_samples
        if return_samples and not n_samples:
            raise ValueError(f"{self.name} gives no samples (return_samples needs a "
                             "probabilistic predictor, e.g. a diffusion model)")
        outputs = []
        for prep in preps:
            dtype = np.float64 if prep.ccd.data.dtype.itemsize == 8 else np.float32
            shape = (prep.image.shape[0] * s, prep.image.shape[1] * s)
            outputs.append({
                "mean": np.zeros(shape, dtype),
                "std": np.zeros(shape, dtype) if self._gives_std(prep) else None,
                "samples": np.zeros((n_samples, *shape), dtype) if return_samples else None,
            })
        self._predict(preps, outputs, options)
        results = []
        for prep, out in zip(preps, outputs):
            mask = np.zeros(out["mean"].shape, bool)
            self._finish_arrays(prep, out["mean"], out["std"], out["samples"], mask)
            ccd = prep.ccd
            wcs = io.upsample_wcs(ccd.wcs, s) if (ccd.wcs is not None and s > 1) else ccd.wcs
            meta = self._output_meta(prep, has_std=out["std"] is not None, options=options)
            result = CCDData(out["mean"], unit=ccd.unit, wcs=wcs,
                             mask=mask if mask.any() else None, meta=meta,
                             uncertainty=None if out["std"] is None
                             else StdDevUncertainty(out["std"]), copy=False)
            results.append((result, out["samples"]))
        return results

    # -- public API -------------------------------------------------------------------------

    def enhance(self, image, *, hdu=None, tile_size=_UNSET, overlap=_UNSET, parallel=_UNSET,
                seed=_UNSET, progress=_UNSET, return_samples=False):
        """Enhance one image or a stack of images.

        Parameters
        ----------
        image : ndarray, masked array, Quantity, NDData/CCDData, HDU, HDUList, str/path,
            xarray.DataArray or list of these
            A 2-D image, a 3-D stack ``(n, y, x)`` (ndarray, Quantity or DataArray with an
            ``image`` dimension), or a list.
        hdu : int or str, optional
            The HDU to read when ``image`` is a FITS file or HDUList.
        tile_size, overlap, parallel, seed, progress : optional
            Override the enhancer's settings for this call.
        return_samples : bool, optional
            Also return the predictor's samples (probabilistic predictors only), as an
            `xarray.DataArray` ``(sample, y, x)`` in the output's unit.

        Returns
        -------
        Same kind as the input where that makes sense: an ndarray for an ndarray (bad
        pixels NaN; float64 stays float64), a masked array for a masked array, a Quantity
        for a Quantity, an xarray.DataArray for a DataArray (its dims, name, attrs and
        coordinates kept, pixel coordinates and the WCS resampled, the provenance in
        attrs; the mean only: use CCDData for the uncertainty), and a CCDData (unit kept,
        every WCS resampled, mask, uncertainty and provenance in ``meta``) for everything
        FITS-like. A list for a list. With ``return_samples``, ``(result, samples)``.
        """
        options = self._options(tile_size, overlap, parallel, seed, progress)
        if hdu is not None and not _is_file_like(image):
            raise ValueError(f"hdu={hdu!r} applies only to FITS files and HDULists, not to "
                             f"{type(image).__name__} input")
        if isinstance(image, list) and not isinstance(image, fits.HDUList):
            ccds = [self._read(item, hdu) for item in image]
            results = self._enhance_ccds([c for c, _ in ccds], [n for _, n in ccds], options,
                                         return_samples=return_samples)
            outs = [self._to_kind(item, ccd) for item, (ccd, _) in zip(image, results)]
            if return_samples:
                return outs, [self._samples(ccd, smp) for ccd, smp in results]
            return outs
        xr = _xarray_or_none()
        if xr is not None and isinstance(image, xr.DataArray):
            if return_samples:
                raise ValueError("return_samples is not supported for DataArray input")
            return self._enhance_dataarray(image, options)
        if isinstance(image, (np.ndarray, u.Quantity)) and np.ndim(image) == 3:
            if len(image) == 0:
                raise ValueError(f"an empty stack of images (shape {image.shape})")
            ccds = [_read_array(plane) for plane in image]
            results = self._enhance_ccds(ccds, [f"image {i}" for i in range(len(ccds))],
                                         options, return_samples=return_samples)
            stack = np.ma.stack if np.ma.isMaskedArray(image) else np.stack
            stacked = stack([self._to_kind(image, ccd) for ccd, _ in results])
            if isinstance(image, u.Quantity):
                stacked = u.Quantity(stacked, results[0][0].unit, copy=False)
            if return_samples:
                return stacked, [self._samples(ccd, smp) for ccd, smp in results]
            return stacked
        ccd, name = self._read(image, hdu)
        ((result, samples),) = self._enhance_ccds([ccd], [name], options,
                                                  return_samples=return_samples)
        out = self._to_kind(image, result)
        return (out, self._samples(result, samples)) if return_samples else out

    def enhance_file(self, source, path, *, hdu=None, overwrite=False, meta=None,
                     history=None, noise_key=0, tile_size=_UNSET, overlap=_UNSET,
                     parallel=_UNSET, seed=_UNSET, progress=_UNSET):
        """Enhance a FITS image into a FITS file, with memory bounded by a few tiles.

        The input is memory-mapped and the output is written through memory maps inside
        an atomic write (`lensenhance.io.create_image`): the science image (bad pixels
        NaN), a MASK extension when there are bad pixels and an UNCERT extension when the
        input has an uncertainty.

        Parameters
        ----------
        source : str or path
            The input FITS file.
        path : str or path
            The output FITS file.
        hdu : int or str, optional
            The input HDU.
        overwrite : bool, optional
            Replace an existing output.
        meta : dict, optional
            More header cards for the output: ``{keyword: value}`` or
            ``{keyword: (value, comment)}`` (provenance, e.g. a catalog row's key).
        history : str or list of str, optional
            More HISTORY cards.
        noise_key : int, optional
            The key of this image's random numbers (with the seed): `enhance_files`
            gives each file its own, and the same key gives the same samples here.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        options = self._options(tile_size, overlap, parallel, seed, progress)
        ccd = self._open_for_file(source, path, hdu=hdu, overwrite=overwrite)
        if self.resample == "model":
            return self._write_resampled(ccd, str(source), path, options, meta=meta,
                                         history=history, overwrite=overwrite)
        prep = self._prepare(ccd, str(source))
        with self._file_outputs(prep, path, options, meta=meta, history=history,
                                overwrite=overwrite) as outputs:
            self._predict([prep], [outputs], options, noise_keys=[noise_key])
        return Path(path)

    def enhance_files(self, jobs, *, tile_size=_UNSET, overlap=_UNSET, parallel=_UNSET,
                      seed=_UNSET, progress=_UNSET):
        """Enhance several FITS files in shared forward passes; one result per file.

        The tiles of all the files go through the predictor together (a diffusion
        posterior draws the samples of many cutouts in one batch), and each file is
        written as by `enhance_file`, with the same result for the same ``noise_key``.
        A file that cannot be read or prepared fails alone.

        Parameters
        ----------
        jobs : list of dict
            Each with ``source`` and ``path``, and optionally ``hdu``, ``overwrite``,
            ``meta``, ``history`` and ``noise_key`` (default the job's index): the
            arguments of `enhance_file`.
        tile_size, overlap, parallel, seed, progress : optional
            As for `enhance_file`.

        Returns
        -------
        list
            Per job, the written path or the exception that stopped it.
        """
        options = self._options(tile_size, overlap, parallel, seed, progress)
        results, ready = [None] * len(jobs), []
        for index, job in enumerate(jobs):
            try:
                ccd = self._open_for_file(job["source"], job["path"], hdu=job.get("hdu"),
                                          overwrite=job.get("overwrite", False))
                if self.resample == "model":
                    results[index] = self._write_resampled(
                        ccd, str(job["source"]), job["path"], options, meta=job.get("meta"),
                        history=job.get("history"), overwrite=job.get("overwrite", False))
                    continue
                ready.append((index, job, self._prepare(ccd, str(job["source"]))))
            except Exception as error:  # one bad file never stops the others
                results[index] = error
        if ready:
            try:
                with contextlib.ExitStack() as stack:
                    outputs = [stack.enter_context(self._file_outputs(
                        prep, job["path"], options, meta=job.get("meta"),
                        history=job.get("history"), overwrite=job.get("overwrite", False)))
                        for _, job, prep in ready]
                    self._predict([prep for _, _, prep in ready], outputs, options,
                                  noise_keys=[job.get("noise_key", index)
                                              for index, job, _ in ready])
                for index, job, _ in ready:
                    results[index] = Path(job["path"])
            except Exception as error:  # the shared pass failed: every file in it did
                for index, _, _ in ready:
                    results[index] = error
        return results

    def _open_for_file(self, source, path, *, hdu, overwrite):
        """The input of a file-to-file run, memory-mapped, after the output checks."""
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"enhance_file needs a FITS path, got {type(source).__name__}")
        if Path(path).exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists; pass overwrite=True to replace it")
        return io.read_image(source, hdu=hdu, dtype=None, memmap=True)

    @contextlib.contextmanager
    def _file_outputs(self, prep, path, options, *, meta, history, overwrite):
        """The memory-mapped arrays of an output file; finished and written on exit."""
        ccd = prep.ccd
        s = self.scale
        shape = (prep.image.shape[0] * s, prep.image.shape[1] * s)
        has_std = self._gives_std(prep)
        out_meta = self._output_meta(prep, has_std=has_std, options=options)
        for key, value in (meta or {}).items():
            out_meta[key] = value
        wcs = io.upsample_wcs(ccd.wcs, s) if (ccd.wcs is not None and s > 1) else ccd.wcs
        dtype = np.float64 if ccd.data.dtype.itemsize == 8 else np.float32
        with io.create_image(path, shape=shape, dtype=dtype, unit=ccd.unit, wcs=wcs,
                             meta=out_meta, mask=bool(prep.n_bad or prep.boxes),
                             uncertainty=has_std,
                             overwrite=overwrite, history=history) as arrays:
            yield {"mean": arrays.data, "std": arrays.uncertainty, "samples": None}
            self._finish_arrays(prep, arrays.data, arrays.uncertainty, None, arrays.mask)

    def _write_resampled(self, ccd, name, path, options, *, meta, history, overwrite):
        """`enhance_file` with ``resample="model"``: enhanced in memory, written atomically."""
        from pathlib import Path

        ((result, _),) = self._enhance_ccds([ccd], [name], options)
        out_meta = result.meta
        for key, value in (meta or {}).items():
            out_meta[key] = value
        has_std = result.uncertainty is not None
        with io.create_image(path, shape=result.shape, dtype=result.data.dtype,
                             unit=result.unit, wcs=result.wcs, meta=out_meta,
                             mask=result.mask is not None, uncertainty=has_std,
                             overwrite=overwrite, history=history) as arrays:
            arrays.data[...] = result.data
            if has_std:
                arrays.uncertainty[...] = result.uncertainty.array
            if result.mask is not None:
                arrays.mask[...] = result.mask
        return Path(path)

    def _read(self, image, hdu):
        if isinstance(image, np.ndarray) and not isinstance(image, u.Quantity):
            return _read_array(image), f"array of shape {image.shape}"
        if isinstance(image, u.Quantity):
            return _read_array(image), f"Quantity of shape {image.shape}"
        if isinstance(image, (NDData, fits.HDUList, fits.PrimaryHDU, fits.ImageHDU,
                              fits.CompImageHDU, str, tuple)) or hasattr(image, "__fspath__"):
            kwargs = {} if isinstance(image, NDData) else {"hdu": hdu}
            name = str(image) if isinstance(image, (str, os.PathLike)) else type(image).__name__
            return io.read_image(image, dtype=None, **kwargs), name
        if isinstance(image, list):
            raise TypeError("a list is taken as a list of images, and this one holds a "
                            "list; give one image as an array (numpy.asarray)")
        raise TypeError(f"cannot enhance an object of type {type(image).__name__}; give an "
                        "ndarray, Quantity, NDData/CCDData, HDU, FITS path or DataArray")

    @staticmethod
    def _to_kind(template, ccd):
        data = ccd.data  # bad pixels are NaN already
        if isinstance(template, u.Quantity):
            return u.Quantity(data, ccd.unit, copy=False)
        if np.ma.isMaskedArray(template):
            mask = ccd.mask if ccd.mask is not None else np.zeros(data.shape, bool)
            return np.ma.MaskedArray(data, mask=mask)
        if isinstance(template, np.ndarray):
            return data
        return ccd

    def _samples(self, ccd, samples):
        import xarray as xr

        return xr.DataArray(samples, dims=("sample", "y", "x"),
                            attrs={"unit": ccd.unit.to_string()})

    def _enhance_dataarray(self, da, options):
        """A DataArray like ``da``: its dims, name, attrs and other coordinates kept, the
        pixel coordinates and the WCS resampled, float64 kept, the provenance in attrs
        (or, where it differs between images, in coordinates along the image axis)."""
        import xarray as xr

        stack = da if da.ndim == 3 else da.expand_dims("_image")
        image_dim, y_dim, x_dim = stack.dims
        ccds = io.from_dataarray(stack, dtype=None)
        results = [ccd for ccd, _ in self._enhance_ccds(
            ccds, [f"DataArray {da.name!r}[{i}]" for i in range(len(ccds))], options)]
        s = self.scale
        coords = {}
        for key, coord in stack.coords.items():
            if key == "wcs":  # the input grid's; the output's comes from to_dataarray below
                continue
            if not ({y_dim, x_dim} & set(coord.dims)):
                coords[key] = coord
                continue
            values = _upsample_coordinate(coord.values, s) if coord.ndim == 1 else None
            if values is None:
                warnings.warn(f"DataArray {da.name!r}: dropped the coordinate {key!r}, which "
                              "is not evenly spaced along its pixel axis and cannot be "
                              "resampled", AstropyUserWarning, stacklevel=3)
            else:
                coords[key] = (coord.dims, values, coord.attrs)
        # The data, unit and resampled WCS (attrs or per-image coordinate), stored the
        # way to_dataarray stores them; dims, name, attrs and coordinates are da's.
        made = io.to_dataarray(results, dtype=None)
        attrs = {**da.attrs, "unit": made.attrs["unit"]}
        attrs.pop("wcs", None)
        if "wcs" in made.attrs:
            attrs["wcs"] = made.attrs["wcs"]
        if "wcs" in made.coords:
            coords["wcs"] = (image_dim, made.coords["wcs"].values)
        for key in results[0].meta:
            if not (key.startswith("LE") or key == "UNCTYPE"):
                continue
            values = [ccd.meta.get(key) for ccd in results]
            if len(set(map(str, values))) == 1:
                attrs[key] = values[0]
            else:
                coords[key] = (image_dim, np.array(values))
        out = xr.DataArray(made.values, dims=stack.dims, coords=coords, attrs=attrs,
                           name=da.name)
        return out if da.ndim == 3 else out.isel({image_dim: 0}, drop=True)


def _reproject(ccd, wcs, shape, flux):
    """``ccd`` on another celestial grid (`reproject`: bicubic up, exact areas down).

    Flux per pixel is conserved (``flux``: the Jacobian of the pixel areas is applied) or
    surface brightness kept; the uncertainty follows the same map; pixels that are masked,
    NaN, or outside the input come out masked.
    """
    from astropy.wcs.utils import proj_plane_pixel_area
    from reproject import reproject_exact, reproject_interp

    data = np.asarray(ccd.data, np.float64)
    bad = ~np.isfinite(data)
    if ccd.mask is not None:
        bad |= np.asarray(ccd.mask, bool)
    source = ccd.wcs.celestial
    area = proj_plane_pixel_area(wcs) / proj_plane_pixel_area(source)
    finer = area < 1

    def move(values):
        # Onto finer pixels: bicubic interpolation (anti-aliasing would blur what the
        # model needs); onto coarser ones: exact overlap areas, an exact flux average.
        values = np.where(bad, np.nan, values)
        if finer:
            out, footprint = reproject_interp((values, source), wcs, shape_out=shape,
                                              order="bicubic")
        else:
            out, footprint = reproject_exact((values, source), wcs, shape_out=shape)
        # Flux per pixel scales with the pixel area; surface brightness does not.
        return (out * area if flux else out), footprint

    out, footprint = move(data)
    uncertainty = None
    if ccd.uncertainty is not None:
        sigma = ccd.uncertainty.represent_as(StdDevUncertainty).array
        moved, _ = move(np.asarray(sigma, np.float64))
        uncertainty = StdDevUncertainty(moved)
    mask = ~np.isfinite(out) | (footprint <= 0)
    if uncertainty is not None:
        mask |= ~np.isfinite(uncertainty.array)
    return CCDData(out.astype(ccd.data.dtype if ccd.data.dtype.kind == "f" else np.float32),
                   unit=ccd.unit, wcs=wcs, mask=mask if mask.any() else None,
                   uncertainty=uncertainty, meta=ccd.meta.copy())


def _is_file_like(image):
    """Input whose HDU can be chosen: a FITS path, an HDUList, or a list of them."""
    if isinstance(image, list):
        return all(_is_file_like(item) for item in image)
    return isinstance(image, (str, os.PathLike, fits.HDUList))


def _upsample_coordinate(values, scale):
    """Pixel-centre coordinates on the finer grid, for evenly spaced ones (else None)."""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf" or len(values) < 2:
        return None
    step = np.diff(values.astype(np.float64))
    if not np.allclose(step, step[0]):
        return None
    # Output pixel k is centred on input pixel position (k + 0.5) / scale - 0.5.
    positions = (np.arange(len(values) * scale) + 0.5) / scale - 0.5
    return values[0] + step[0] * positions


def _resample_dict_wcs(meta, scale, *, name):
    """`lensenhance.io.resample_header_wcs` for a dict meta (a CCDData made by hand).

    Its FITS-like cards go through the same resampling as a header's; the ones resampled
    are updated and the ones removed are dropped, so no stale WCS survives in a dict either.
    """
    header, original = fits.Header(), {}
    for key, value in meta.items():
        if isinstance(key, str) and isinstance(value, (str, int, float, np.number)):
            try:
                header[key] = value
            except (ValueError, KeyError):  # not a FITS keyword: nothing of a WCS
                continue
            original[key.upper()] = key
    new = io.resample_header_wcs(header, scale, name=name)
    for upper, key in original.items():
        if upper not in new:
            del meta[key]
    for upper in dict.fromkeys(new.keys()):
        meta[original.get(upper, upper)] = new[upper]
    return meta


def _batch_pixels(device, tile_size):
    """On a CPU a batch holds at most one full tile's pixels: more only costs memory."""
    if device.type != "cpu":
        return None
    return (tile_size or 512) ** 2


def _read_array(array):
    # A plain array has no unit to lose: take it as dimensionless without a warning.
    return io.read_image(array, unit=None if isinstance(array, u.Quantity) else "",
                         dtype=None)


def _xarray_or_none():
    try:
        import xarray
    except ImportError:  # pragma: no cover - xarray is a dependency
        return None
    return xarray


