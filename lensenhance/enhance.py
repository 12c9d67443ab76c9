"""The astropy-facing enhancer: images in, enhanced images out, units and WCS kept.

`Enhancer` owns the bridge between astronomical images and the pure-torch networks of
`lensenhance.nn`: it reads any image form, records a robust normalisation and undoes it,
conserves flux when pixels are split, upsamples the WCS and the mask, fills masked pixels
before the network sees them and masks them again afterwards, and picks the device.
"""

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData

from . import io
from .normalization import fit_normalization

__all__ = ["Enhancer"]


def _is_surface_brightness(unit):
    """True for units per solid angle (Jy/arcsec2, MJy/sr), whose values don't split."""
    unit = u.Unit(unit)
    for base, power in zip(unit.bases, unit.powers):
        if power < 0 and (base.physical_type in ("angle", "solid angle")):
            return True
    return False


def _default_device(device):
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Enhancer:
    """Super-resolve or denoise images with a network, keeping units, WCS and masks.

    Parameters
    ----------
    model : torch.nn.Module
        Maps normalised images ``(batch, 1, y, x)`` to ``(batch, 1, s*y, s*x)``.
    scale : int
        The upsampling factor of ``model`` (1 for a denoiser).
    name : str, optional
        A label for the history cards and ``repr``.
    self_ensemble : bool, optional
        Average the network over the 8 rotations and flips of the image (D4
        self-ensemble): exactly equivariant, about 8 times slower.
    device : str or torch.device, optional
        Default: CUDA when available, else the CPU.
    batch_size : int, optional
        Images per forward pass when enhancing a stack.
    normalization : str, optional
        The `lensenhance.normalization.fit_normalization` method.

    Examples
    --------
    >>> import lensenhance as le
    >>> enh = le.Enhancer.interpolation("bicubic", scale=2)
    >>> enh.enhance(np.ones((8, 8))).shape
    (16, 16)
    """

    def __init__(self, model, *, scale, name=None, self_ensemble=False, device=None,
                 batch_size=16, normalization="sigma_clip"):
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.device = _default_device(device)
        self.model = model.to(self.device).eval()
        self.scale = int(scale)
        self.name = name or type(model).__name__
        self.self_ensemble = bool(self_ensemble)
        self.batch_size = int(batch_size)
        self.normalization = normalization

    @classmethod
    def from_pretrained(cls, name, **kwargs):
        """An Enhancer around one of the shipped models (see `lensenhance.list_pretrained`).

        Keyword arguments go to `Enhancer`.
        """
        from .models import load_pretrained, model_card

        card = model_card(name)
        if card.get("task") != "sr":
            raise ValueError(f"{name!r} is a {card.get('task')!r} model, not an enhancer")
        device = _default_device(kwargs.pop("device", None))
        model = load_pretrained(name, device=device)
        return cls(model, scale=card["scale"], name=name, device=device, **kwargs)

    @classmethod
    def interpolation(cls, mode="bicubic", *, scale=2, **kwargs):
        """A parameter-free baseline (``"bilinear"`` or ``"bicubic"``) behind the same API."""
        from .nn import Interpolation

        return cls(Interpolation(mode=mode, scale=scale), scale=scale, name=mode, **kwargs)

    def __repr__(self):
        return (f"<{type(self).__name__}({self.name!r}, scale={self.scale}, "
                f"self_ensemble={self.self_ensemble}, device='{self.device}')>")

    # -- core: normalised float32 stacks through the network ---------------------------

    def _run(self, stack):
        """Run the network on a (n, y, x) float32 stack of normalised images."""
        import torch

        from .nn import d4_self_ensemble

        outputs = []
        with torch.inference_mode():
            for start in range(0, len(stack), self.batch_size):
                batch = torch.from_numpy(stack[start:start + self.batch_size, None]).to(
                    self.device)
                if self.self_ensemble:
                    result = d4_self_ensemble(self.model, batch)
                else:
                    result = self.model(batch)
                outputs.append(result[:, 0].float().cpu().numpy())
        return np.concatenate(outputs)

    def _enhance_ccds(self, ccds):
        """Enhance a list of CCDData; same-shaped images share forward passes."""
        prepared = []
        for ccd in ccds:
            data = np.asarray(ccd.data, dtype=np.float32)
            bad = ~np.isfinite(data)
            if ccd.mask is not None:
                bad |= np.asarray(ccd.mask, dtype=bool)
            norm = fit_normalization(data, mask=bad, method=self.normalization)
            # Masked pixels become the background level (0 once normalised) so that a
            # NaN cannot spread through the convolutions; they are masked again below.
            normalised = np.where(bad, 0.0, norm.apply(data)).astype(np.float32)
            prepared.append((ccd, normalised, bad, norm))

        results = [None] * len(prepared)
        shapes = {}
        for index, (_, normalised, _, _) in enumerate(prepared):
            shapes.setdefault(normalised.shape, []).append(index)
        for indices in shapes.values():
            outputs = self._run(np.stack([prepared[i][1] for i in indices]))
            for i, output in zip(indices, outputs):
                results[i] = output
        return [self._finish(ccd, bad, norm, output)
                for (ccd, _, bad, norm), output in zip(prepared, results)]

    def _finish(self, ccd, bad, norm, output):
        s = self.scale
        unit = ccd.unit if ccd.unit is not None else u.dimensionless_unscaled
        # Flux per pixel splits over the s*s new pixels; surface brightness does not.
        flux_factor = 1.0 if _is_surface_brightness(unit) else 1.0 / s**2
        data = (norm.invert(output) * flux_factor).astype(np.float32)
        mask = np.repeat(np.repeat(bad, s, axis=0), s, axis=1) if s > 1 else bad.copy()
        wcs = io.upsample_wcs(ccd.wcs, s) if (ccd.wcs is not None and s > 1) else ccd.wcs
        note = (f"lensenhance: enhanced by {self.name} (scale {s}, self_ensemble="
                f"{self.self_ensemble}); {int(bad.sum())} masked/NaN pixels filled with the "
                "background and masked in the output")
        # A copy of the input's meta (header or dict) with the step recorded, ccdproc-style.
        if isinstance(ccd.meta, fits.Header):
            meta = ccd.meta.copy()
            meta.add_history(note)
        else:
            meta = dict(ccd.meta)
            history = meta.get("HISTORY", [])
            meta["HISTORY"] = [*([history] if isinstance(history, str) else history), note]
        norm.to_meta(meta)
        return CCDData(data, unit=unit, wcs=wcs, mask=mask if mask.any() else None, meta=meta)

    # -- public API ----------------------------------------------------------------------

    def enhance(self, image, *, hdu=None):
        """Enhance one image or a stack of images.

        Parameters
        ----------
        image : ndarray, Quantity, NDData/CCDData, HDU, HDUList, str/path, xarray.DataArray
            or list of these
            A 2-D image, a 3-D stack ``(n, y, x)`` (ndarray, Quantity or DataArray with an
            ``image`` dimension), or a list.
        hdu : int or str, optional
            The HDU to read when ``image`` is a FITS file or HDUList.

        Returns
        -------
        Same kind as the input where that makes sense: an ndarray for an ndarray (masked
        and NaN pixels NaN), a Quantity for a Quantity, an xarray.DataArray for a
        DataArray, and a CCDData (unit kept, WCS upsampled, mask carried) for everything
        FITS-like. A list for a list.
        """
        if isinstance(image, list) and not isinstance(image, fits.HDUList):
            return [self.enhance(item, hdu=hdu) for item in image]
        xr = _xarray_or_none()
        if xr is not None and isinstance(image, xr.DataArray):
            return self._enhance_dataarray(image)
        if isinstance(image, (np.ndarray, u.Quantity)) and np.ndim(image) == 3:
            outputs = self._enhance_ccds([_read_array(plane) for plane in image])
            return np.stack([self._to_kind(image, out) for out in outputs])
        if isinstance(image, np.ndarray) or isinstance(image, u.Quantity):
            return self._to_kind(image, self._enhance_ccds([_read_array(image)])[0])
        if isinstance(image, (NDData, fits.HDUList, fits.PrimaryHDU, fits.ImageHDU,
                              fits.CompImageHDU, str)) or hasattr(image, "__fspath__") \
                or isinstance(image, tuple):
            kwargs = {} if isinstance(image, NDData) else {"hdu": hdu}
            return self._enhance_ccds([io.read_image(image, **kwargs)])[0]
        raise TypeError(f"cannot enhance an object of type {type(image).__name__}; give an "
                        "ndarray, Quantity, NDData/CCDData, HDU, FITS path or DataArray")

    @staticmethod
    def _to_kind(template, ccd):
        data = np.where(ccd.mask, np.nan, ccd.data) if ccd.mask is not None else ccd.data
        if isinstance(template, u.Quantity):
            return u.Quantity(data, ccd.unit, copy=False)
        return data

    def _enhance_dataarray(self, da):
        if da.ndim == 2:
            ccds = io.from_dataarray(da.expand_dims("image"))
            return io.to_dataarray(self._enhance_ccds(ccds)).isel(image=0)
        return io.to_dataarray(self._enhance_ccds(io.from_dataarray(da)))


def _read_array(array):
    # A plain array has no unit to lose: take it as dimensionless without a warning.
    return io.read_image(array, unit=None if isinstance(array, u.Quantity) else "")


def _xarray_or_none():
    try:
        import xarray
    except ImportError:  # pragma: no cover - xarray is a dependency
        return None
    return xarray


def enhance_files(paths, out_dir, *, enhancer, overwrite=False, suffix=None, hdu=None,
                  progress=True):
    """Enhance FITS files one by one into ``out_dir``; a bad file does not stop the batch.

    Parameters
    ----------
    paths : iterable of path-like
        Input FITS files.
    out_dir : path-like
        Output folder (created); each output is ``<stem>_<suffix>.fits``.
    enhancer : Enhancer
    overwrite : bool
        Replace existing outputs; otherwise an existing output counts as a failure.
    suffix : str, optional
        Default: the enhancer's name.

    Returns
    -------
    dict
        ``written`` (list of output paths) and ``failures`` (input path -> reason).
    """
    from pathlib import Path

    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = suffix or enhancer.name.replace(" ", "_")
    written, failures = [], {}
    for path in tqdm(list(paths), desc="enhance", unit="image", disable=not progress):
        path = Path(path)
        target = out_dir / f"{path.name.removesuffix('.gz').removesuffix('.fits')}_{suffix}.fits"
        try:
            if target.exists() and not overwrite:
                raise FileExistsError(f"{target} exists (use overwrite)")
            io.write_image(enhancer.enhance(path, hdu=hdu), target, overwrite=overwrite)
        except (OSError, ValueError, TypeError, KeyError) as error:
            failures[str(path)] = str(error)
            continue
        written.append(target)
    return {"written": written, "failures": failures}
