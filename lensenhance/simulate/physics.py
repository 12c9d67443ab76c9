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
]

#: Truth parameters recorded for every image (name -> (unit, meaning)), in catalog order.
TRUTH_FIELDS = {
    "substructure": ("", "substructure class: no_sub, cdm or axion"),
    "theta_E": ("arcsec", "SIE Einstein radius, from lens_mass and the distances"),
    "lens_mass": ("Msun", "SIE mass inside the Einstein radius"),
    "e1": ("", "SIE ellipticity component e1 (lenstronomy convention)"),
    "e2": ("", "SIE ellipticity component e2"),
    "lens_x": ("arcsec", "lens centre x (RA offset)"),
    "lens_y": ("arcsec", "lens centre y (Dec offset)"),
    "gamma1": ("", "external shear gamma1"),
    "gamma2": ("", "external shear gamma2"),
    "velocity_dispersion": ("km/s", "SIS-equivalent velocity dispersion of the lens"),
    "lens_light_mag": ("mag", "lens galaxy total AB magnitude"),
    "lens_light_radius": ("arcsec", "lens galaxy Sersic half-light radius"),
    "lens_light_n_sersic": ("", "lens galaxy Sersic index"),
    "source_mag": ("mag", "source Sersic total AB magnitude (unlensed)"),
    "source_radius": ("arcsec", "source Sersic half-light radius"),
    "source_n_sersic": ("", "source Sersic index"),
    "source_e1": ("", "source ellipticity e1"),
    "source_e2": ("", "source ellipticity e2"),
    "source_x": ("arcsec", "source centre x in the source plane"),
    "source_y": ("arcsec", "source centre y in the source plane"),
    "n_clumps": ("", "star-forming clumps in the source"),
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
    lens_mass = float(p.lens_mass.draw(rng))
    # theta_E**2 per Msun of point masses; DeepLenseSim's Models II/III scale deflections
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
    kwargs_lens_light = [{
        "amp": _sersic_amp(ll_mag, zp, ll_radius, ll_n, e1, e2), "R_sersic": ll_radius,
        "n_sersic": ll_n, "e1": e1, "e2": e2, "center_x": lens_x, "center_y": lens_y,
    }] if p.lens_light else []

    # source: Sersic ellipse, centre uniform over a disc of radius offset_max * theta_E
    src_mag = float(p.source_mag.draw(rng))
    src_radius = float(p.source_radius.draw(rng))
    src_n = float(p.source_n_sersic.draw(rng))
    src_e1, src_e2 = _ellipticity(float(p.source_axis_ratio.draw(rng)),
                                  float(p.source_angle.draw(rng)))
    if p.family == "deeplense":  # uniform over a square of half-width offset_max arcsec
        src_x, src_y = lens_x + rng.uniform(-1, 1) * p.source_offset_max, \
            lens_y + rng.uniform(-1, 1) * p.source_offset_max
    else:  # uniform over a disc of radius offset_max * theta_E
        r = p.source_offset_max * theta_e * np.sqrt(rng.uniform())
        phi = rng.uniform(0.0, 2 * np.pi)
        src_x, src_y = lens_x + r * np.cos(phi), lens_y + r * np.sin(phi)
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
    source_model_list = ["SERSIC_ELLIPSE"] + ["GAUSSIAN"] * n_clumps

    truth = {
        "substructure": substructure, "theta_E": theta_e, "lens_mass": lens_mass,
        "e1": float(e1), "e2": float(e2), "lens_x": lens_x, "lens_y": lens_y,
        "gamma1": float(gamma1), "gamma2": float(gamma2),
        "velocity_dispersion": float(dist.velocity_per_sqrt_arcsec * np.sqrt(theta_e)),
        "lens_light_mag": ll_mag, "lens_light_radius": ll_radius, "lens_light_n_sersic": ll_n,
        "source_mag": src_mag, "source_radius": src_radius, "source_n_sersic": src_n,
        "source_e1": float(src_e1), "source_e2": float(src_e2),
        "source_x": float(src_x), "source_y": float(src_y), "n_clumps": n_clumps,
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
        lens_light_model_list=("SERSIC_ELLIPSE",) if p.lens_light else (),
        kwargs_lens_light=kwargs_lens_light,
        truth=truth,
    )


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
