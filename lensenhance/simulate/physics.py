"""Lensing physics of the simulator: distances, Einstein radii, and drawing one scene.

A *scene* is one lens system: lenstronomy profile lists, their keyword arguments, and
the truth parameters that go into the catalog. :func:`draw_scene` draws it from a
:class:`~lensenhance.simulate.presets.Preset` with a numpy Generator, always in the
same order: the macro model, lens light and source first, then the substructure, so
the same image seed gives the same galaxy pair in every substructure class.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from .presets import SUBSTRUCTURES

__all__ = [
    "Scene",
    "LensingDistances",
    "einstein_radius",
    "velocity_dispersion",
    "de_broglie_length",
    "draw_scene",
    "TRUTH_FIELDS",
    "source_images",
    "source_background",
]

#: Truth parameters recorded for every image (name -> (unit, meaning)), in catalog order.
TRUTH_FIELDS = {
    "substructure": ("", "substructure class: no_sub, cdm or axion"),
    "theta_E": ("arcsec", "SIE Einstein radius, from lens_mass and the distances"),
    "lens_mass": ("Msun", "SIE mass inside the Einstein radius (from theta_E when the "
                  "preset fixes theta_e)"),
    "e1": ("", "SIE ellipticity component e1 (lenstronomy convention)"),
    "e2": ("", "SIE ellipticity component e2"),
    "lens_x": ("arcsec", "lens centre x (RA offset)"),
    "lens_y": ("arcsec", "lens centre y (Dec offset)"),
    "gamma1": ("", "external shear gamma1"),
    "gamma2": ("", "external shear gamma2"),
    "velocity_dispersion": ("km/s", "SIS-equivalent velocity dispersion of the lens"),
    "lens_light_mag": ("mag", "lens galaxy total AB magnitude"),
    "lens_light_radius": ("arcsec", "lens galaxy Sersic half-light radius (of the first "
                          "Sersic when there are several)"),
    "lens_light_n_sersic": ("", "lens galaxy Sersic index (of the first Sersic)"),
    "source_mag": ("mag", "source total AB magnitude (unlensed; Sersic without clumps, or "
                   "the INTERPOL image)"),
    "source_radius": ("arcsec", "source Sersic half-light radius"),
    "source_n_sersic": ("", "source Sersic index"),
    "source_e1": ("", "source ellipticity e1"),
    "source_e2": ("", "source ellipticity e2"),
    "source_x": ("arcsec", "source centre x in the source plane"),
    "source_y": ("arcsec", "source centre y in the source plane"),
    "n_clumps": ("", "star-forming clumps in the source"),
    "source_index": ("", "INTERPOL source: index of the galaxy image in the preset's "
                     "source_images (-1 for a Sersic source)"),
    "source_name": ("", "INTERPOL source: the galaxy image's name (file stem); empty for a "
                    "Sersic source"),
    "n_sub": ("", "number of subhalos (cdm) or vortex point masses (axion)"),
    "m_sub_total": ("Msun", "total substructure mass"),
    "axion_mass": ("eV", "axion mass (NaN unless axion)"),
    "vortex_length": ("arcsec", "vortex length = de Broglie wavelength (NaN unless axion)"),
    "exposure_time": ("s", "total exposure time (all exposures)"),
    "sub_chi2": ("", "sum(((with - without substructure) / sigma)**2), noise-free, native "
                 "grid, sigma the observed image's noise"),
    "sub_chi2_refit": ("", "sub_chi2 after refitting a smooth SIE + shear + source (NaN "
                       "unless asked for)"),
}


@functools.lru_cache(maxsize=32)
def _distances(H0, Om0, z_lens, z_source, kind="angular"):
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=H0, Om0=Om0)
    if kind == "luminosity":
        # DeepLenseSim's mass_to_radius: luminosity distances, D_ls = D_s - D_l (a quirk:
        # theta_E of 1e12 Msun is 1.28" instead of 1.66")
        d_l, d_s = cosmo.luminosity_distance(z_lens), cosmo.luminosity_distance(z_source)
        return LensingDistances(cosmo=cosmo, d_l=d_l, d_s=d_s, d_ls=d_s - d_l,
                                z_lens=z_lens, z_source=z_source)
    try:
        d_ls = cosmo.angular_diameter_distance(z_lens, z_source)
    except TypeError:  # astropy < 7 has only the z1z2 spelling
        d_ls = cosmo.angular_diameter_distance_z1z2(z_lens, z_source)
    return LensingDistances(
        cosmo=cosmo,
        d_l=cosmo.angular_diameter_distance(z_lens),
        d_s=cosmo.angular_diameter_distance(z_source),
        d_ls=d_ls,
        z_lens=z_lens,
        z_source=z_source,
    )


@dataclass(frozen=True)
class LensingDistances:
    """Angular-diameter distances of a lens/source pair (astropy Quantities)."""

    cosmo: object
    d_l: object
    d_s: object
    d_ls: object
    z_lens: float
    z_source: float

    @classmethod
    def from_preset(cls, preset):
        return _distances(preset.H0, preset.Om0, preset.z_lens, preset.z_source,
                          preset.distances)

    @functools.cached_property
    def theta_e_sq_per_msun(self):
        """theta_E**2 / M in arcsec**2 per solar mass: 4 G / c**2 * D_ls / (D_l D_s)."""
        from astropy import constants as const
        from astropy import units as u

        k = 4 * const.G * const.M_sun / const.c**2 * self.d_ls / (self.d_l * self.d_s)
        return float((k.decompose() * u.rad**2).to_value(u.arcsec**2))

    @functools.cached_property
    def velocity_per_sqrt_arcsec(self):
        """sigma_v / sqrt(theta_E) in km/s per sqrt(arcsec): c * sqrt(D_s / (4 pi D_ls))."""
        from astropy import constants as const
        from astropy import units as u

        ratio = float((self.d_s / self.d_ls).decompose()) * u.arcsec.to(u.rad)
        return const.c.to_value(u.km / u.s) * np.sqrt(ratio / (4 * np.pi))

    @functools.cached_property
    def de_broglie_arcsec(self):
        """lambda_dB / D_l in arcsec for m_a = 1 eV and v = 1 km/s: h c**2 / (v D_l)."""
        from astropy import constants as const
        from astropy import units as u

        length = const.h * const.c / u.eV * const.c / (u.km / u.s)
        return float((length / self.d_l).decompose()) * u.rad.to(u.arcsec)

    @functools.cached_property
    def lens_cosmo(self):
        from lenstronomy.Cosmo.lens_cosmo import LensCosmo

        return LensCosmo(z_lens=self.z_lens, z_source=self.z_source, cosmo=self.cosmo)


def einstein_radius(mass, *, z_lens=0.5, z_source=1.0, H0=70.0, Om0=0.3):
    """Einstein radius (arcsec) of a lens whose mass inside it is ``mass`` (Msun).

    theta_E = sqrt(4 G M / c**2 * D_ls / (D_l D_s)) with angular-diameter distances in
    a flat LambdaCDM cosmology. It holds for any circular lens (the mean convergence
    inside theta_E is 1), so also for a point mass of mass M.
    """
    dist = _distances(float(H0), float(Om0), float(z_lens), float(z_source))
    return np.sqrt(np.asarray(mass, dtype=float) * dist.theta_e_sq_per_msun)


def velocity_dispersion(theta_e, *, z_lens=0.5, z_source=1.0, H0=70.0, Om0=0.3):
    """SIS velocity dispersion (km/s) with Einstein radius ``theta_e`` (arcsec).

    sigma_v = c * sqrt(theta_E * D_s / (4 pi D_ls)).
    """
    dist = _distances(float(H0), float(Om0), float(z_lens), float(z_source))
    return dist.velocity_per_sqrt_arcsec * np.sqrt(np.asarray(theta_e, dtype=float))


def de_broglie_length(axion_mass, velocity, *, z_lens=0.5, z_source=1.0, H0=70.0, Om0=0.3):
    """Angular de Broglie wavelength (arcsec) at the lens of axions of mass ``axion_mass``.

    lambda_dB = h / (m_a v) = (h c / (m_a c**2)) * (c / v), with ``axion_mass`` in eV and
    ``velocity`` in km/s, divided by the angular-diameter distance to the lens.
    For m_a = 1e-22 eV and v = 250 km/s, lambda_dB = 0.48 kpc.
    """
    dist = _distances(float(H0), float(Om0), float(z_lens), float(z_source))
    m_a = np.asarray(axion_mass, dtype=float)
    return dist.de_broglie_arcsec / (m_a * np.asarray(velocity, dtype=float))


@dataclass
class Scene:
    """One lens system ready for lenstronomy: profile lists, kwargs and truth row."""

    lens_model_list: tuple
    kwargs_lens: list
    source_model_list: tuple
    kwargs_source: list
    lens_light_model_list: tuple
    kwargs_lens_light: list
    truth: dict = field(default_factory=dict)
    #: The first ``n_macro`` lens profiles are the smooth macro model (SIE + shear); the
    #: rest are the substructure.
    n_macro: int = 2

    def smooth(self):
        """The same scene without its substructure (a shallow copy)."""
        return Scene(self.lens_model_list[:self.n_macro], self.kwargs_lens[:self.n_macro],
                     self.source_model_list, self.kwargs_source, self.lens_light_model_list,
                     self.kwargs_lens_light, dict(self.truth), self.n_macro)

    def __repr__(self):
        t = self.truth
        return (f"<Scene {t.get('substructure')}: theta_E={t.get('theta_E', np.nan):.3f}\", "
                f"{len(self.lens_model_list)} lens profiles, "
                f"{len(self.source_model_list)} source profiles>")


#: pyHalo's default cosmology (pyHalo/defaults.py, 2021): the one DeepLenseSim's Models
#: II/III ray-trace through.
PYHALO_COSMOLOGY = {"H0": 69.7, "Om0": 0.0464 + 0.235}


@functools.lru_cache(maxsize=8)
def deflection_factor(z_lens, z_source, z_convention):
    """D_ls/D_s at ``z_source`` over D_ls/D_s at ``z_convention`` (pyHalo's cosmology).

    lenstronomy's multi-plane tracing defines every deflection for a source at
    ``z_convention``; a source at ``z_source`` sees this fraction of it (one lens plane).
    """
    if z_convention is None:
        return 1.0
    H0, Om0 = PYHALO_COSMOLOGY["H0"], PYHALO_COSMOLOGY["Om0"]
    near = _distances(H0, Om0, z_lens, z_source)
    far = _distances(H0, Om0, z_lens, z_convention)
    return float((near.d_ls / near.d_s) / (far.d_ls / far.d_s))


def _ellipticity(q, angle_deg):
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    return phi_q2_ellipticity(np.deg2rad(angle_deg), q)


@functools.cache
def _sersic_profile():
    from lenstronomy.LightModel.Profiles.sersic import SersicElliptic

    return SersicElliptic()


def _sersic_amp(mag, zero_point, radius, n_sersic, e1, e2):
    """Sersic amplitude (lenstronomy ``amp``) whose total flux is the magnitude's e-/s."""
    unit_flux = _sersic_profile().total_flux(amp=1.0, R_sersic=radius, n_sersic=n_sersic,
                                            e1=e1, e2=e2)
    return 10.0 ** (-0.4 * (mag - zero_point)) / unit_flux


#: DeepLenseSim Model IV subtracts from each galaxy image the median of its top-left
#: 50 x 50 pixels, of 256: this fraction of the image side.
_BACKGROUND_CORNER = 50 / 256


def source_background(image):
    """The background DeepLenseSim Model IV subtracts from a source galaxy image.

    The median of the image's top-left corner (first rows, first columns) of side
    ``int(50 / 256 * n)`` pixels, at least 1, ``n`` the shorter image side: Model IV's
    ``median(image[:50, :50])`` of its 256 px images; 12 x 12 pixels at 64 px.
    """
    image = np.asarray(image)
    side = max(1, int(_BACKGROUND_CORNER * min(image.shape)))
    return float(np.median(image[:side, :side]))


@functools.lru_cache(maxsize=8)
def source_images(folder=None):
    """The galaxy images of INTERPOL sources, ready for lenstronomy; cached per process.

    Parameters
    ----------
    folder : str, optional
        A folder whose ``*.fits`` files (in name order) are single galaxy cutouts, read
        with `lensenhance.io.read_image`; None: the shipped HSC Deep/UltraDeep sample
        (`lensenhance.data.hsc_sources`).

    Returns
    -------
    images : tuple of numpy.ndarray
        float64, read-only: each cutout minus its `source_background`, columns reversed
        (the cutouts are taken as east-left like the simulated images, lenstronomy's
        ``INTERPOL`` has x increasing with the column), so that a source rendered with
        ``phi_G = 0`` and no lens looks like the cutout.
    names : tuple of str
        The cutouts' names (file stems for a folder).
    """
    if folder is None:
        from ..data import hsc_sources

        cube, names = hsc_sources()
        raw = list(cube)
    else:
        from pathlib import Path

        from ..io import read_image

        paths = sorted(Path(folder).glob("*.fits"))
        if not paths:
            raise ValueError(f"source_images: no *.fits files in {folder!r}")
        raw = [read_image(path, unit="", dtype=np.float64).data for path in paths]
        names = [path.stem for path in paths]
    images = []
    for name, image in zip(names, raw):
        image = np.asarray(image, dtype=np.float64)
        if image.ndim != 2 or not np.all(np.isfinite(image)):
            raise ValueError(f"source image {name!r} must be a finite 2-D image")
        image = (image - source_background(image))[:, ::-1].copy()
        if not image.sum() > 0:
            raise ValueError(f"source image {name!r} has no positive total flux after "
                             "subtracting its corner median")
        image.setflags(write=False)
        images.append(image)
    return tuple(images), tuple(str(n) for n in names)


def draw_scene(preset, substructure, rng, *, seed=None):
    """Draw one scene of ``preset`` with substructure class ``substructure``.

    Parameters
    ----------
    preset : Preset
        Numbers and distributions.
    substructure : {'no_sub', 'cdm', 'axion'}
        Substructure class.
    rng : numpy.random.Generator
        Random numbers; draws happen in a fixed order (see module docstring).
    seed : int, optional
        Recorded in the truth row.

    Returns
    -------
    Scene
    """
    if substructure not in SUBSTRUCTURES:
        raise ValueError(f"substructure must be one of {SUBSTRUCTURES}, got {substructure!r}")
    p = preset
    dist = LensingDistances.from_preset(p)
    zp = p.magnitude_zero_point

    # main deflector: SIE + external shear; light traces mass (same centre, q, angle)
    if p.theta_e is not None:  # theta_E given: the mass follows, theta_E = sqrt(M k)
        lens_mass = float(p.theta_e.draw(rng)) ** 2 / dist.theta_e_sq_per_msun
    else:
        lens_mass = float(p.lens_mass.draw(rng))
    # theta_E**2 per Msun of point masses; DeepLenseSim's Models II-IV scale deflections
    beta = deflection_factor(p.z_lens, p.z_source, p.z_source_convention)
    k_point = dist.theta_e_sq_per_msun * beta
    theta_e = float(np.sqrt(lens_mass * dist.theta_e_sq_per_msun)) * beta
    q, angle = float(p.lens_axis_ratio.draw(rng)), float(p.lens_angle.draw(rng))
    e1, e2 = _ellipticity(q, angle)
    lens_x, lens_y = float(p.lens_center.draw(rng)), float(p.lens_center.draw(rng))
    from lenstronomy.Util.param_util import shear_polar2cartesian

    gamma1, gamma2 = shear_polar2cartesian(np.deg2rad(float(p.shear_angle.draw(rng))),
                                           float(p.shear_strength.draw(rng)))
    kwargs_lens = [
        {"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": lens_x, "center_y": lens_y},
        {"gamma1": gamma1, "gamma2": gamma2, "ra_0": lens_x, "dec_0": lens_y},
    ]
    lens_model_list = ["SIE", "SHEAR"]

    ll_mag = float(p.lens_light_mag.draw(rng))
    ll_radius = float(p.lens_light_radius.draw(rng))
    ll_n = float(p.lens_light_n_sersic.draw(rng))
    if p.lens_light_sersics is not None:  # fixed Sersics at the lens centre (Model IV)
        sersics = p.lens_light_sersics
        ll_mag = float(-2.5 * np.log10(sum(10.0 ** (-0.4 * c[0]) for c in sersics)))
        ll_radius, ll_n = sersics[0][1], sersics[0][2]
    else:  # one Sersic that traces the mass
        sersics = ((ll_mag, ll_radius, ll_n, e1, e2),)
    kwargs_lens_light = [{
        "amp": _sersic_amp(m, zp, r, n, c1, c2), "R_sersic": r, "n_sersic": n,
        "e1": c1, "e2": c2, "center_x": lens_x, "center_y": lens_y,
    } for m, r, n, c1, c2 in sersics] if p.lens_light else []

    if p.source_profile == "INTERPOL":
        kwargs_source, truth_source = _draw_interpol_source(p, rng, lens_x, lens_y, theta_e)
        source_model_list = ["INTERPOL"]
    else:
        kwargs_source, truth_source = _draw_sersic_source(p, rng, lens_x, lens_y, theta_e)
        source_model_list = ["SERSIC_ELLIPSE"] + ["GAUSSIAN"] * truth_source["n_clumps"]

    truth = {
        "substructure": substructure, "theta_E": theta_e, "lens_mass": lens_mass,
        "e1": float(e1), "e2": float(e2), "lens_x": lens_x, "lens_y": lens_y,
        "gamma1": float(gamma1), "gamma2": float(gamma2),
        "velocity_dispersion": float(dist.velocity_per_sqrt_arcsec * np.sqrt(theta_e)),
        "lens_light_mag": ll_mag, "lens_light_radius": ll_radius, "lens_light_n_sersic": ll_n,
        **truth_source,
        "n_sub": 0, "m_sub_total": 0.0, "axion_mass": np.nan, "vortex_length": np.nan,
        "exposure_time": float(p.exposure_time.draw(rng)) * p.num_exposures,
        "sub_chi2": 0.0 if substructure == "no_sub" else np.nan,
        "sub_chi2_refit": 0.0 if substructure == "no_sub" else np.nan,
    }

    if substructure == "cdm":
        profiles, kwargs = _draw_cdm(p, dist, rng, theta_e, lens_x, lens_y, truth, k_point)
    elif substructure == "axion" and p.family == "deeplense":
        profiles, kwargs = _draw_deeplense_vortex(p, k_point, rng, lens_x, lens_y, truth)
    elif substructure == "axion":
        profiles, kwargs = _draw_vortex(p, dist, rng, theta_e, lens_x, lens_y, truth)
    else:
        profiles, kwargs = [], []
    truth["seed"] = -1 if seed is None else int(seed)
    return Scene(
        lens_model_list=tuple(lens_model_list + profiles),
        kwargs_lens=kwargs_lens + kwargs,
        source_model_list=tuple(source_model_list),
        kwargs_source=kwargs_source,
        lens_light_model_list=("SERSIC_ELLIPSE",) * len(kwargs_lens_light),
        kwargs_lens_light=kwargs_lens_light,
        truth=truth,
    )


def _source_centre(p, rng, lens_x, lens_y, theta_e):
    if p.family == "deeplense":  # uniform over a square of half-width offset_max arcsec
        return lens_x + rng.uniform(-1, 1) * p.source_offset_max, \
            lens_y + rng.uniform(-1, 1) * p.source_offset_max
    # uniform over a disc of radius offset_max * theta_E
    r = p.source_offset_max * theta_e * np.sqrt(rng.uniform())
    phi = rng.uniform(0.0, 2 * np.pi)
    return lens_x + r * np.cos(phi), lens_y + r * np.sin(phi)


def _draw_interpol_source(p, rng, lens_x, lens_y, theta_e):
    """A real galaxy image (lenstronomy ``INTERPOL``) of total magnitude ``source_mag``:
    the image drawn uniformly from ``source_images``, rotated by ``source_angle``."""
    images, names = source_images(p.source_images)
    src_mag = float(p.source_mag.draw(rng))
    phi_g = float(np.deg2rad(p.source_angle.draw(rng)))
    src_x, src_y = _source_centre(p, rng, lens_x, lens_y, theta_e)
    index = int(rng.integers(len(images)))
    image, scale = images[index], float(p.source_pixel_scale)
    if p.source_amp is not None:
        amp = float(p.source_amp.draw(rng))
    else:  # INTERPOL's total flux is amp * sum(image) * scale**2 (Interpol.total_flux)
        amp = 10.0 ** (-0.4 * (src_mag - p.magnitude_zero_point)) / (image.sum() * scale**2)
    kwargs = [{"image": image, "amp": amp, "center_x": float(src_x), "center_y": float(src_y),
               "phi_G": phi_g, "scale": scale}]
    truth = {"source_mag": src_mag, "source_radius": np.nan, "source_n_sersic": np.nan,
             "source_e1": np.nan, "source_e2": np.nan, "source_x": float(src_x),
             "source_y": float(src_y), "n_clumps": 0, "source_index": index,
             "source_name": names[index]}
    return kwargs, truth


def _draw_sersic_source(p, rng, lens_x, lens_y, theta_e):
    """A Sersic ellipse and its star-forming clumps (circular Gaussians)."""
    zp = p.magnitude_zero_point
    src_mag = float(p.source_mag.draw(rng))
    src_radius = float(p.source_radius.draw(rng))
    src_n = float(p.source_n_sersic.draw(rng))
    src_e1, src_e2 = _ellipticity(float(p.source_axis_ratio.draw(rng)),
                                  float(p.source_angle.draw(rng)))
    src_x, src_y = _source_centre(p, rng, lens_x, lens_y, theta_e)
    if p.source_amp is not None:
        src_amp = float(p.source_amp.draw(rng))
    else:
        src_amp = _sersic_amp(src_mag, zp, src_radius, src_n, src_e1, src_e2)
    kwargs_source = [{
        "amp": src_amp, "R_sersic": src_radius, "n_sersic": src_n, "e1": src_e1,
        "e2": src_e2, "center_x": src_x, "center_y": src_y,
    }]
    n_clumps = int(p.n_clumps.draw(rng))
    src_flux = 10.0 ** (-0.4 * (src_mag - zp))
    for _ in range(n_clumps):
        # lenstronomy's GAUSSIAN amp is the total flux
        kwargs_source.append({
            "amp": src_flux * float(p.clump_flux_fraction.draw(rng)),
            "sigma": float(p.clump_sigma.draw(rng)),
            "center_x": src_x + rng.normal(0.0, p.clump_spread * src_radius),
            "center_y": src_y + rng.normal(0.0, p.clump_spread * src_radius),
        })
    truth = {"source_mag": src_mag, "source_radius": src_radius, "source_n_sersic": src_n,
             "source_e1": float(src_e1), "source_e2": float(src_e2),
             "source_x": float(src_x), "source_y": float(src_y), "n_clumps": n_clumps,
             "source_index": -1, "source_name": ""}
    return kwargs_source, truth


def _draw_cdm(p, dist, rng, theta_e, lens_x, lens_y, truth, k_point):
    """Subhalos from dN/dm ~ m**slope, uniform in area over an annulus around theta_E.

    With ``subhalo_mass_fraction`` f, their number is Poisson with the mean that puts a
    fraction f of the lens's convergence at theta_E (1/2 for an isothermal lens) into
    subhalos over the annulus: N = f / 2 * (outer**2 - inner**2) * M_E / <m>, M_E the
    mass inside theta_E. The default f = 0.01 lies between the projected fractions
    measured from flux-ratio anomalies (Dalal & Kochanek 2002, ApJ 572, 25: about 0.02)
    and from gravitational imaging of SLACS lenses (Vegetti et al. 2014, MNRAS 442,
    2017: 0.0076 for 4e6-4e9 Msun).
    """
    if p.subhalo_mass_fraction is not None:
        inner, outer = p.subhalo_annulus
        mean_mass = _mean(p.subhalo_mass, "subhalo_mass")
        mean_n = 0.5 * p.subhalo_mass_fraction * (outer**2 - inner**2) \
            * truth["lens_mass"] / mean_mass
        n_sub = int(rng.poisson(mean_n))
    else:
        n_sub = int(p.n_subhalos.draw(rng))
    masses = np.atleast_1d(p.subhalo_mass.draw(rng, n_sub))
    if p.subhalo_radius is not None:  # DeepLenseSim: r itself uniform, in arcsec
        r = np.atleast_1d(p.subhalo_radius.draw(rng, n_sub))
    else:
        inner, outer = p.subhalo_annulus
        r = theta_e * np.sqrt(rng.uniform(inner**2, outer**2, n_sub))
    phi = rng.uniform(0.0, 2 * np.pi, n_sub)
    xs, ys = lens_x + r * np.cos(phi), lens_y + r * np.sin(phi)
    if p.subhalo_profile == "TNFW":
        conc = np.atleast_1d(p.subhalo_concentration.draw(rng, n_sub))
        rs, alpha_rs = dist.lens_cosmo.nfw_physical2angle(masses, conc)
        kwargs = [{"Rs": float(a), "alpha_Rs": float(b), "r_trunc": float(p.subhalo_truncation * a),
                   "center_x": float(x), "center_y": float(y)}
                  for a, b, x, y in zip(np.atleast_1d(rs), np.atleast_1d(alpha_rs), xs, ys)]
    else:
        theta_sub = np.sqrt(masses * k_point)
        kwargs = [{"theta_E": float(t), "center_x": float(x), "center_y": float(y)}
                  for t, x, y in zip(theta_sub, xs, ys)]
    truth["n_sub"] = n_sub
    truth["m_sub_total"] = float(masses.sum())
    return [p.subhalo_profile] * n_sub, kwargs


def _mean(distribution, name):
    """The mean of a drawn field (PowerLaw's exact mean, a Fixed value, else 10^5 draws)."""
    if hasattr(distribution, "mean"):
        return float(distribution.mean())
    if hasattr(distribution, "value"):
        return float(distribution.value)
    draws = distribution.draw(np.random.default_rng(0), 100_000)
    if not np.all(np.isfinite(draws)) or draws.mean() <= 0:
        raise ValueError(f"{name} must have a finite positive mean")
    return float(draws.mean())


def _draw_deeplense_vortex(p, k_point, rng, lens_x, lens_y, truth):
    """DeepLenseSim's make_vortex: equal point masses on a line through the lens centre,
    from -L to +L with L = 0.06e-22 / (2 m_a) arcsec (its axion_mass_to_length, m_a in eV),
    at an angle uniform in [0, 2 pi)."""
    m_a = float(p.axion_mass.draw(rng))
    half = 0.06e-22 / (2.0 * m_a)
    angle = rng.uniform(0.0, 2 * np.pi)
    t = np.linspace(-half, half, p.vortex_points)
    xs, ys = lens_x + t * np.cos(angle), lens_y + t * np.sin(angle)
    theta_pt = float(np.sqrt(p.vortex_mass / p.vortex_points * k_point))
    kwargs = [{"theta_E": theta_pt, "center_x": float(x), "center_y": float(y)}
              for x, y in zip(xs, ys)]
    truth.update(n_sub=int(p.vortex_points), m_sub_total=float(p.vortex_mass),
                 axion_mass=m_a, vortex_length=2.0 * half)
    return ["POINT_MASS"] * p.vortex_points, kwargs


def _draw_vortex(p, dist, rng, theta_e, lens_x, lens_y, truth):
    """A straight vortex through the lens centre: equal point masses along lambda_dB."""
    m_a = float(p.axion_mass.draw(rng))
    length = float(dist.de_broglie_arcsec / (m_a * truth["velocity_dispersion"]))
    angle = rng.uniform(0.0, np.pi)
    t = np.linspace(-0.5 * length, 0.5 * length, p.vortex_points)
    xs, ys = lens_x + t * np.cos(angle), lens_y + t * np.sin(angle)
    theta_pt = float(np.sqrt(p.vortex_mass / p.vortex_points * dist.theta_e_sq_per_msun))
    kwargs = [{"theta_E": theta_pt, "center_x": float(x), "center_y": float(y)}
              for x, y in zip(xs, ys)]
    truth.update(n_sub=int(p.vortex_points), m_sub_total=float(p.vortex_mass),
                 axion_mass=m_a, vortex_length=length)
    return ["POINT_MASS"] * p.vortex_points, kwargs
