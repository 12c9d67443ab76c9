"""How visible is an image's substructure? ``sub_chi2`` and ``sub_chi2_refit``.

``sub_chi2`` is the chi-square between the noise-free image with its substructure and the
same scene without it, against the noise the observed image has at the preset's native
pixel scale:

    sub_chi2 = sum(((with - without) / sigma)**2)

No method can tell the classes apart where it is far below the number of pixels' worth
of noise fluctuations (a few tens). It is an optimistic measure: part of the difference
is absorbed by a smooth lens that is slightly different (a little more mass, another
ellipticity, a moved source). ``sub_chi2_refit`` removes that part: the smooth model
(SIE + external shear + the source's Sersic profile; for a real galaxy image, lenstronomy
``INTERPOL``, only its amplitude and centre) is refitted to the noise-free image
with substructure by least squares, starting from the truth, and the chi-square is that
of the best smooth fit. It bounds from above what any method can see of the
substructure itself (a classifier given the smooth model's freedom), in the spirit of
the detectability criteria of Vegetti & Koopmans (2009, MNRAS 400, 1583) and
Despali et al. (2022, MNRAS 510, 2480), which compare the best fits with and without a
subhalo.
"""

from __future__ import annotations

import numpy as np

from .noise import noise_sigma

__all__ = ["substructure_chi2", "refit_smooth", "REFIT_PARAMETERS"]

#: (profile list, index, keyword) of the refitted parameters: SIE, shear, source Sersic;
#: those the scene's profiles do not have (an ``INTERPOL`` source's shape) are left out.
REFIT_PARAMETERS = (
    ("lens", 0, "theta_E"), ("lens", 0, "e1"), ("lens", 0, "e2"),
    ("lens", 0, "center_x"), ("lens", 0, "center_y"),
    ("lens", 1, "gamma1"), ("lens", 1, "gamma2"),
    ("source", 0, "amp"), ("source", 0, "R_sersic"), ("source", 0, "n_sersic"),
    ("source", 0, "e1"), ("source", 0, "e2"),
    ("source", 0, "center_x"), ("source", 0, "center_y"),
)


def _refit_parameters(scene):
    """The entries of `REFIT_PARAMETERS` that ``scene``'s profiles have."""
    return tuple((w, i, k) for w, i, k in REFIT_PARAMETERS
                 if k in (scene.kwargs_lens if w == "lens" else scene.kwargs_source)[i])


def _with_parameters(scene, values, parameters=REFIT_PARAMETERS):
    """A smooth copy of ``scene`` whose refitted ``parameters`` take ``values``."""
    smooth = scene.smooth()
    lens = [dict(k) for k in smooth.kwargs_lens]
    source = [dict(k) for k in smooth.kwargs_source]
    for (which, index, key), value in zip(parameters, values):
        (lens if which == "lens" else source)[index][key] = float(value)
    smooth.kwargs_lens, smooth.kwargs_source = lens, source
    return smooth


def refit_smooth(scene, image, sigma, render, *, max_nfev=200):
    """Least-squares fit of the smooth model to ``image``, starting from ``scene``'s truth.

    Parameters
    ----------
    scene : Scene
        The true scene; its macro model and first source profile are refitted
        (those of `REFIT_PARAMETERS` its profiles have), the lens light and further
        source profiles stay fixed.
    image, sigma : numpy.ndarray
        The noise-free image to fit and the noise it is weighed with.
    render : callable
        Scene -> noise-free image on ``image``'s grid.
    max_nfev : int, optional
        Model evaluations at most.

    Returns
    -------
    chi2 : float
        ``sum(((image - best smooth model) / sigma)**2)``.
    best : Scene
        The best-fitting smooth scene.
    """
    from scipy.optimize import least_squares

    parameters = _refit_parameters(scene)
    start = np.array([(scene.kwargs_lens if w == "lens" else scene.kwargs_source)[i][k]
                      for w, i, k in parameters], dtype=float)
    names = [k for _, _, k in parameters]
    # The source amplitude is fitted in log so that every parameter has a scale of ~0.01.
    amp = names.index("amp")
    x0 = start.copy()
    x0[amp] = np.log(start[amp])

    def values(x):
        v = x.copy()
        v[amp] = np.exp(x[amp])
        return v

    weight = 1.0 / sigma

    def residual(x):
        return ((render(_with_parameters(scene, values(x), parameters)) - image)
                * weight).ravel()

    lower = np.full(x0.shape, -np.inf)
    upper = np.full(x0.shape, np.inf)
    for name, low, high in (("theta_E", 1e-3, np.inf), ("R_sersic", 1e-3, np.inf),
                            ("n_sersic", 0.2, 8.0)):
        if name in names:
            lower[names.index(name)], upper[names.index(name)] = low, high
    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    fit = least_squares(residual, x0, bounds=(lower, upper), x_scale=0.01,
                        diff_step=1e-5, max_nfev=max_nfev)
    best = _with_parameters(scene, values(fit.x), parameters)
    start_chi2 = float(np.sum(residual(x0) ** 2))
    return min(float(np.sum(fit.fun ** 2)), start_chi2), best


def substructure_chi2(preset, scene, clean, renderer, *, refit=False, num_pix=None):
    """``sub_chi2`` (and ``sub_chi2_refit`` when ``refit``) of one rendered scene.

    Parameters
    ----------
    preset : Preset
        The preset: its noise law and flux scale.
    scene : Scene
        The scene with substructure.
    clean : numpy.ndarray
        ``preset.flux_scale * renderer.render(scene)``.
    renderer : Renderer
        The renderer that made ``clean`` (native pixel scale).
    refit : bool, optional
        Also refit the smooth model (`refit_smooth`).

    Returns
    -------
    dict
        ``sub_chi2`` and ``sub_chi2_refit`` (NaN without ``refit``).
    """
    def render(s):
        return preset.flux_scale * renderer.render(s)

    smooth = render(scene.smooth())
    sigma = noise_sigma(preset, smooth, exposure_time=scene.truth["exposure_time"],
                        pixel_scale=preset.pixel_scale)
    chi2 = float(np.sum(((clean - smooth) / sigma) ** 2))
    out = {"sub_chi2": chi2, "sub_chi2_refit": np.nan}
    if refit:
        out["sub_chi2_refit"] = min(chi2, refit_smooth(scene, clean, sigma, render)[0])
    return out
