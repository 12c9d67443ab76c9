"""Rendering and noise: lenstronomy ray shooting on a fixed grid, PSF, binning, noise.

Speed comes from building everything that does not change between images once per
process (:class:`Renderer`, cached by :func:`get_renderer`): the ray-shooting grid, the
PSF kernel, and one lenstronomy ``LensModel``/``LightModel`` per profile list (images
with the same number of subhalos or clumps share one). Per image only new keyword
arguments are passed.

Pixel grid: column ``j`` of an ``n``-pixel grid is at x = -(j - (n - 1) / 2) * d (x is
the RA offset, east to the left as on the sky) and row ``i`` at
y = (i - (n - 1) / 2) * d (Dec offset), so the lens frame's origin is the image centre.
Images are flux per pixel in electron/s.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

from .noise import observe_preset
from .physics import draw_scene

__all__ = ["Renderer", "get_renderer", "bin_image", "gaussian_kernel_1d", "simulate_block",
           "lens_light_images"]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def gaussian_kernel_1d(fwhm_pix, *, truncate=4.0):
    """Pixel-integrated, normalised 1-D Gaussian of FWHM ``fwhm_pix`` (pixels).

    The 2-D Gaussian PSF is the outer product of two of these (it is separable).
    """
    if not fwhm_pix > 0:
        raise ValueError(f"PSF FWHM must be positive, got {fwhm_pix} pixels")
    sigma = fwhm_pix / FWHM_PER_SIGMA
    half = max(1, int(np.ceil(truncate * sigma)))
    edges = (np.arange(-half, half + 2) - 0.5) / sigma
    kernel = np.diff(special.ndtr(edges))
    return kernel / kernel.sum()


def bin_image(image, factor):
    """Sum ``factor`` x ``factor`` blocks of the last two axes (flux is conserved).

    Parameters
    ----------
    image : array_like, shape (..., ny, nx)
        Flux per pixel; ny and nx must be divisible by ``factor``.
    factor : int
        Block size.
    """
    image = np.asarray(image)
    factor = int(factor)
    ny, nx = image.shape[-2:]
    if factor < 1 or ny % factor or nx % factor:
        raise ValueError(f"image of shape {image.shape} cannot be binned by {factor}")
    shape = image.shape[:-2] + (ny // factor, factor, nx // factor, factor)
    return image.reshape(shape).sum(axis=(-3, -1))


class Renderer:
    """Noise-free, PSF-convolved images of scenes of one preset on an ``num_pix`` grid.

    Rays are traced through ``preset.supersampling``**2 points per pixel. The lens
    galaxy's Sersic cusp is the one feature that this misses badly (its central pixel
    would take the cusp's value at one point), so the ``2 * CORE + 1`` pixels square
    around the lens centre take the lens light from ``CORE_SUPERSAMPLING``**2 points each.
    """

    CORE = 3
    CORE_SUPERSAMPLING = 10

    def __init__(self, preset, num_pix):
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LightModel.light_model import LightModel

        self._lens_model_cls, self._light_model_cls = LensModel, LightModel
        self.preset = preset
        self.num_pix = int(num_pix)
        d, ss = preset.pixel_scale, int(preset.supersampling)
        self.kernel = gaussian_kernel_1d(preset.psf_fwhm / d)
        # a margin of half a kernel so that light just outside the field is convolved in
        self.pad = len(self.kernel) // 2
        self._n_pad = n_pad = self.num_pix + 2 * self.pad
        self._x, self._y = self._grid(n_pad, ss, d)
        self._xc, self._yc = self._grid(n_pad, 1, d)  # pixel centres
        ass = int(preset.adaptive_supersampling)
        self._adaptive_dx, self._adaptive_dy = self._grid(1, ass, d)
        self._adaptive_area = (d / ass) ** 2
        self._shape = (n_pad * ss, n_pad * ss)
        self._subpixel_area = (d / ss) ** 2
        # the core patch, as offsets from its central pixel's centre
        size = 2 * self.CORE + 1
        self._core_x, self._core_y = self._grid(size, self.CORE_SUPERSAMPLING, d)
        self._core_area = (d / self.CORE_SUPERSAMPLING) ** 2
        self._models = {}
        self._interpol_images = {}

    @staticmethod
    def _grid(n, ss, d):
        """Flattened (x, y) of ``ss`` x ``ss`` points per pixel of an n x n grid."""
        u = (np.arange(n * ss) + 0.5) / ss - 0.5 * n
        y, x = np.meshgrid(u * d, -u * d, indexing="ij")
        return x.ravel(), y.ravel()

    def __repr__(self):
        return (f"<Renderer {self.preset.name} {self.num_pix}x{self.num_pix}, "
                f"{len(self._models)} model lists cached>")

    def _model(self, cls, names):
        key = (cls.__name__, names)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = cls(list(names))
        return model

    def _light_model(self, names, kwargs):
        """The cached ``LightModel`` of ``names``, its ``INTERPOL`` caches valid for ``kwargs``.

        lenstronomy's ``Interpol`` builds its interpolator from the first image it is given
        and keeps it whatever image comes next, so the caches are deleted whenever the
        images differ from the previous call's (the same array objects reuse them).
        """
        model = self._model(self._light_model_cls, names)
        if "INTERPOL" in names:
            images = tuple(k.get("image") for k in kwargs)
            last = self._interpol_images.get(names)
            if last is None or any(a is not b for a, b in zip(last, images)):
                model.delete_interpol_caches()
                self._interpol_images[names] = images  # keeps them alive: `is` is safe
        return model

    def _to_pixels(self, surface_brightness):
        flux = (surface_brightness * self._subpixel_area).reshape(self._shape)
        ss = self.preset.supersampling
        return bin_image(flux, ss) if ss > 1 else flux

    def _lens_light(self, scene):
        kwargs = scene.kwargs_lens_light
        model = self._light_model(scene.lens_light_model_list, kwargs)
        flux = self._to_pixels(model.surface_brightness(self._x, self._y, kwargs))
        # pixel (row, column) nearest to the lens light centre, in the padded grid
        d, n, c = self.preset.pixel_scale, self._n_pad, self.CORE
        column = int(np.clip(round((n - 1) / 2 - kwargs[0]["center_x"] / d), c, n - 1 - c))
        row = int(np.clip(round((n - 1) / 2 + kwargs[0]["center_y"] / d), c, n - 1 - c))
        x0 = -(column - (n - 1) / 2) * d
        y0 = (row - (n - 1) / 2) * d
        core = model.surface_brightness(self._core_x + x0, self._core_y + y0, kwargs)
        size = 2 * c + 1
        core = bin_image((core * self._core_area).reshape(size * self.CORE_SUPERSAMPLING, -1),
                         self.CORE_SUPERSAMPLING)
        flux[row - c:row + c + 1, column - c:column + c + 1] = core
        return flux

    def _refine(self, flux, lens, source, scene):
        """Re-trace the bright source pixels (and their neighbours) more finely, in place."""
        bright = flux > self.preset.adaptive_threshold * flux.max()
        index = np.flatnonzero(ndimage.binary_dilation(bright, iterations=1))
        if index.size == 0:
            return
        x = (self._xc[index, None] + self._adaptive_dx).ravel()
        y = (self._yc[index, None] + self._adaptive_dy).ravel()
        bx, by = lens.ray_shooting(x, y, scene.kwargs_lens)
        sb = source.surface_brightness(bx, by, scene.kwargs_source).reshape(index.size, -1)
        flux.ravel()[index] = sb.sum(axis=1) * self._adaptive_area

    def render(self, scene):
        """PSF-convolved flux per pixel (electron/s) of ``scene``, shape (num_pix, num_pix)."""
        lens = self._model(self._lens_model_cls, scene.lens_model_list)
        source = self._light_model(scene.source_model_list, scene.kwargs_source)
        bx, by = lens.ray_shooting(self._x, self._y, scene.kwargs_lens)
        flux = self._to_pixels(source.surface_brightness(bx, by, scene.kwargs_source))
        if self.preset.adaptive_supersampling > self.preset.supersampling:
            self._refine(flux, lens, source, scene)
        if scene.lens_light_model_list:
            flux += self._lens_light(scene)
        return self._observe(flux)

    def render_lens_light(self, scene):
        """The lens galaxy's light alone, as `render` adds it: PSF-convolved flux per pixel
        (electron/s), shape (num_pix, num_pix); zeros when ``scene`` has no lens light."""
        if not scene.lens_light_model_list:
            return np.zeros((self.num_pix, self.num_pix))
        return self._observe(self._lens_light(scene))

    def _observe(self, flux):
        """Convolve padded-grid ``flux`` with the PSF and crop the margin."""
        flux = ndimage.convolve1d(flux, self.kernel, axis=0, mode="constant")
        flux = ndimage.convolve1d(flux, self.kernel, axis=1, mode="constant")
        p = self.pad
        return flux[p:flux.shape[0] - p, p:flux.shape[1] - p]


_RENDERERS = {}


def get_renderer(preset, num_pix):
    """The process-wide :class:`Renderer` for ``(preset, num_pix)``, built on first use."""
    key = (preset, int(num_pix))
    renderer = _RENDERERS.get(key)
    if renderer is None:
        if len(_RENDERERS) >= 16:  # bound the memory of long sessions trying many presets
            _RENDERERS.clear()
        renderer = _RENDERERS[key] = Renderer(preset, num_pix)
    return renderer


def lens_light_images(preset, substructures, seeds, num_pix):
    """The lens galaxy's light alone in simulated images, from their seeds and classes.

    Each scene is re-drawn from its image seed exactly as `simulate_block` draws it, and
    its lens light rendered as in the image (PSF-convolved, times ``preset.flux_scale``),
    so that ``clean - lens_light`` is the lensed source alone.

    Parameters
    ----------
    preset : Preset or str
        The preset that simulated the images, or its name in ``PRESETS``.
    substructures : sequence of str
        Each image's class (the dataset's ``substructure`` coordinate).
    seeds : sequence of int
        Each image's seed (the dataset's ``seed`` coordinate).
    num_pix : int
        The images' side: ``preset.num_pix``, or for ``hr`` of pairs its next multiple
        of the scale.

    Returns
    -------
    numpy.ndarray, float32, shape (n, num_pix, num_pix)
        Flux per pixel (electron/s); zeros for a preset without lens light.
    """
    if isinstance(preset, str):
        from .presets import PRESETS

        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    substructures, seeds = list(substructures), [int(s) for s in seeds]
    if len(substructures) != len(seeds):
        raise ValueError(f"{len(substructures)} classes for {len(seeds)} seeds")
    renderer = get_renderer(preset, num_pix)
    out = np.zeros((len(seeds), renderer.num_pix, renderer.num_pix), np.float32)
    for i, (substructure, seed) in enumerate(zip(substructures, seeds)):
        scene = draw_scene(preset, str(substructure), np.random.default_rng(seed), seed=seed)
        out[i] = preset.flux_scale * renderer.render_lens_light(scene)
    return out


def simulate_block(preset, mode, classes, seeds, option, refit=False):
    """Simulate images ``seeds`` (one int each) of classes ``classes``; run by the workers.

    ``mode`` is ``"pairs"`` (``option`` = scale), ``"snr"`` (``option`` = exposure ratio)
    or ``"image"``. ``refit``: also fill ``sub_chi2_refit`` (a smooth-model fit per image,
    about a second each). Returns a dict of float32 stacks and the list of truth rows.
    """
    d = preset.pixel_scale
    if mode == "pairs":
        scale = int(option)
        num_pix = -(-preset.num_pix // scale) * scale  # next multiple of scale
    else:
        num_pix = preset.num_pix
    renderer = get_renderer(preset, num_pix)
    out, truths = {}, []
    for substructure, seed in zip(classes, seeds):
        rng = np.random.default_rng(seed)
        scene = draw_scene(preset, substructure, rng, seed=seed)
        truth = scene.truth
        clean = preset.flux_scale * renderer.render(scene)
        t = truth["exposure_time"]
        if substructure != "no_sub":
            from .detectability import substructure_chi2

            truth.update(substructure_chi2(preset, scene, clean, renderer,
                                           refit=refit, num_pix=num_pix))
        if mode == "pairs":
            expected = bin_image(clean, scale)
            lr, sigma = observe_preset(preset, expected, exposure_time=t,
                                       pixel_scale=scale * d, rng=rng)
            images = {"hr": clean, "lr": lr, "lr_sigma": sigma}
        elif mode == "snr":
            expected = clean
            low, low_sigma = observe_preset(preset, clean, exposure_time=t, pixel_scale=d,
                                            rng=rng)
            high, high_sigma = observe_preset(preset, clean, exposure_time=t, pixel_scale=d,
                                              rng=rng, exposure_ratio=option)
            images = {"low": low, "low_sigma": low_sigma, "high": high,
                      "high_sigma": high_sigma, "clean": clean}
            sigma = low_sigma
        elif mode == "image":
            expected = clean
            image, sigma = observe_preset(preset, clean, exposure_time=t, pixel_scale=d,
                                          rng=rng)
            images = {"image": image, "sigma": sigma, "clean": clean}
        else:
            raise ValueError(f"unknown mode {mode!r}")
        truth["peak_snr"] = float(np.max(expected / sigma))
        truths.append(truth)
        for name, image in images.items():
            out.setdefault(name, []).append(image)
    return {name: np.asarray(stack, dtype=np.float32) for name, stack in out.items()}, truths
