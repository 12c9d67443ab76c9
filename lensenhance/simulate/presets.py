"""The simulation presets: every number and every distribution in one place.

A preset is a frozen :class:`Preset` dataclass. Fixed numbers are plain floats; drawn
quantities are one of the small distribution classes below, whose ``str`` is the
notation used in the docs tables (``U(a, b)``, ``10^U(a, b)``, ...). Override any field
with ``LensSimulator.from_preset(name, field=value)`` (a number fixes it) or
``dataclasses.replace``.

Units: angles in arcsec, position angles in degrees, masses in solar masses,
magnitudes AB, exposure times in seconds, read noise in electrons.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Fixed",
    "Uniform",
    "LogUniform",
    "IntUniform",
    "Poisson",
    "PowerLaw",
    "Preset",
    "PRESETS",
    "SUBSTRUCTURES",
    "presets_table",
    "FAMILIES",
    "NOISE_MODELS",
    "SOURCE_PROFILES",
]

#: Scene families: ``physical`` (lensenhance's own priors) or ``deeplense`` (what the code
#: of DeepLenseSim generates: a fixed macro model, a fixed Sersic source shape, its
#: subhalo population and vortex as coded; see `lensenhance.simulate.deeplense`).
FAMILIES = ("physical", "deeplense")

#: Noise laws of observed images (``image``, ``lr``, ``low``/``high``).
NOISE_MODELS = ("poisson_gaussian", "deeplense_model_i")

#: Substructure classes the simulator knows.
SUBSTRUCTURES = ("no_sub", "cdm", "axion")

#: Source light profiles (lenstronomy names): a Sersic ellipse with star-forming clumps,
#: or real galaxy images interpolated (DeepLense Model IV).
SOURCE_PROFILES = ("SERSIC_ELLIPSE", "INTERPOL")


# --- distributions -------------------------------------------------------------------


@dataclass(frozen=True)
class Fixed:
    """A number that is not drawn."""

    value: float

    def draw(self, rng, size=None):
        return self.value if size is None else np.full(size, self.value)

    def __str__(self):
        return _short(self.value)


@dataclass(frozen=True)
class Uniform:
    """Uniform between ``low`` and ``high``: U(low, high)."""

    low: float
    high: float

    def draw(self, rng, size=None):
        return rng.uniform(self.low, self.high, size)

    def __str__(self):
        return f"U({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class LogUniform:
    """``10**U(low, high)``: uniform in the base-10 logarithm (limits are exponents)."""

    low: float
    high: float

    def draw(self, rng, size=None):
        return 10.0 ** rng.uniform(self.low, self.high, size)

    def __str__(self):
        return f"10^U({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class IntUniform:
    """Integers from ``low`` to ``high`` inclusive, equally likely."""

    low: int
    high: int

    def draw(self, rng, size=None):
        return rng.integers(self.low, self.high + 1, size)

    def __str__(self):
        return f"U{{{self.low}, ..., {self.high}}}"


@dataclass(frozen=True)
class Poisson:
    """Poisson-distributed count with mean ``mean``."""

    mean: float

    def draw(self, rng, size=None):
        return rng.poisson(self.mean, size)

    def __str__(self):
        return f"Poisson({self.mean:g})"


@dataclass(frozen=True)
class PowerLaw:
    """dN/dx proportional to x**slope between ``low`` and ``high`` (inverse-CDF draw)."""

    slope: float
    low: float
    high: float

    def draw(self, rng, size=None):
        u = rng.uniform(0.0, 1.0, size)
        p = self.slope + 1.0
        if p == 0.0:  # dN/dx ~ 1/x is log-uniform
            return self.low * (self.high / self.low) ** u
        lo, hi = self.low**p, self.high**p
        return (lo + (hi - lo) * u) ** (1.0 / p)

    def mean(self):
        """Mean of x (used in the docs to state the implied subhalo mass)."""
        p1, p2 = self.slope + 1.0, self.slope + 2.0
        norm = (self.high**p1 - self.low**p1) / p1
        return (self.high**p2 - self.low**p2) / p2 / norm

    def __str__(self):
        return f"x^{self.slope:g} on [{_short(self.low)}, {_short(self.high)}]"


def _short(value):
    """1e6 rather than 1e+06."""
    text = f"{value:g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _as_distribution(value):
    """A number fixes a drawn field; a distribution object passes through."""
    if hasattr(value, "draw"):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return Fixed(float(value))
    raise TypeError(f"expected a number or a distribution object, got {value!r}")


#: Drawn fields whose default is None (not used unless set).
_OPTIONAL_DRAWN = ("source_amp", "subhalo_radius", "theta_e")


# --- the preset dataclass ------------------------------------------------------------


def _f(doc, unit="", default=dataclasses.MISSING):
    return field(default=default, metadata={"doc": doc, "unit": unit})


@dataclass(frozen=True, kw_only=True)
class Preset:
    """All numbers and distributions of one simulated survey.

    Every field carries its meaning and unit in ``dataclasses.fields(Preset)[i].metadata``
    (shown by :func:`presets_table`).
    """

    name: str = _f("preset name")
    description: str = _f("one-line description")
    family: str = _f("scene family: physical or deeplense (DeepLenseSim's code)", "",
                     "physical")
    # instrument and observation
    num_pix: int = _f("native image size (pixels per side)", "pix")
    pixel_scale: float = _f("native pixel size", "arcsec")
    psf_fwhm: float = _f("FWHM of the Gaussian PSF", "arcsec")
    exposure_time: object = _f("exposure time of one exposure", "s")
    num_exposures: int = _f("exposures co-added (read noise counted per exposure)")
    magnitude_zero_point: float = _f("AB magnitude giving 1 electron/s", "mag")
    sky_brightness: float = _f("sky surface brightness", "mag/arcsec2")
    read_noise: float = _f("read noise per exposure and pixel", "electron")
    noise: str = _f("noise law: poisson_gaussian or deeplense_model_i", "", "poisson_gaussian")
    background_rms: float = _f("deeplense_model_i noise: Gaussian background rms per pixel",
                               "electron/s", 0.0)
    flux_scale: float = _f("noise-free images are multiplied by this (DeepLense Model "
                           "II/III store image_model + image_model: 2)", "", 1.0)
    supersampling: int = _f("rays per pixel side, everywhere")
    adaptive_supersampling: int = _f("rays per pixel side where the lensed source is bright",
                                     "", 4)
    adaptive_threshold: float = _f("'bright': source flux above this fraction of its peak, "
                                   "and neighbours", "", 0.1)
    # cosmology
    H0: float = _f("Hubble constant (FlatLambdaCDM)", "km/s/Mpc", 70.0)
    Om0: float = _f("matter density (FlatLambdaCDM)", "", 0.3)
    z_lens: float = _f("lens redshift", "", 0.5)
    z_source: float = _f("source redshift", "", 1.0)
    z_source_convention: float = _f("deeplense family: deflections are those of a source at "
                                    "this redshift, traced to z_source (DeepLenseSim Models "
                                    "II/III: 2.5)", "", None)
    distances: str = _f("distances of theta_E(M): angular (physical) or luminosity "
                        "(DeepLenseSim's mass_to_radius)", "", "angular")
    # main deflector: SIE + external shear
    lens_mass: object = _f("SIE mass inside the Einstein radius (unused when theta_e is set)",
                           "Msun")
    theta_e: object = _f("SIE Einstein radius given to lenstronomy (for a source at "
                         "z_source_convention when set), in place of lens_mass, which then "
                         "follows from it (DeepLense Model IV: 1.5)", "arcsec", None)
    lens_axis_ratio: object = _f("SIE axis ratio q (lens light shares it)", "", Uniform(0.6, 1.0))
    lens_angle: object = _f("SIE position angle (lens light shares it)", "deg", Uniform(0, 180))
    lens_center: object = _f("SIE centre, each axis (lens light shares it)", "arcsec",
                             Uniform(-0.05, 0.05))
    shear_strength: object = _f("external shear strength gamma", "", Uniform(0.0, 0.08))
    shear_angle: object = _f("external shear angle", "deg", Uniform(0, 180))
    # lens light: Sersic ellipse
    lens_light: bool = _f("render the lens galaxy's light", "", True)
    lens_light_mag: object = _f("lens galaxy total magnitude", "mag")
    lens_light_radius: object = _f("lens galaxy Sersic half-light radius", "arcsec",
                                   Uniform(0.5, 1.2))
    lens_light_n_sersic: object = _f("lens galaxy Sersic index", "", Uniform(3.0, 5.0))
    lens_light_sersics: tuple = _f("fixed lens light instead: Sersic ellipses ((mag, R_sersic, "
                                   "n_sersic, e1, e2), ...) at the lens centre (DeepLense "
                                   "Model IV: two)", "mag, arcsec", None)
    # source: Sersic ellipse + star-forming clumps, or a real galaxy image
    source_profile: str = _f("source light: SERSIC_ELLIPSE (+ clumps) or INTERPOL (a real "
                             "galaxy image of source_images, no clumps)", "", "SERSIC_ELLIPSE")
    source_images: str = _f("INTERPOL: folder whose FITS cutouts are the sources; None: "
                            "the shipped HSC sample (lensenhance.data.hsc_sources)", "", None)
    source_pixel_scale: float = _f("INTERPOL: angle of one source-image pixel (DeepLense "
                                   "Model IV: 0.0025 x 256 px = 0.64\"; 0.01 x 64 px here)",
                                   "arcsec", 0.01)
    source_mag: object = _f("source total magnitude (unlensed, without clumps)", "mag")
    source_amp: object = _f("source Sersic amplitude in lenstronomy units, in place of "
                            "source_mag when set (DeepLense Model I: 20)", "electron/s", None)
    source_radius: object = _f("source Sersic half-light radius", "arcsec", Uniform(0.1, 0.35))
    source_n_sersic: object = _f("source Sersic index", "", Uniform(0.5, 2.0))
    source_axis_ratio: object = _f("source axis ratio", "", Uniform(0.5, 1.0))
    source_angle: object = _f("source position angle (INTERPOL: the image's rotation phi_G)",
                              "deg", Uniform(0, 180))
    source_offset_max: float = _f("physical: source centre uniform over a disc of this "
                                  "radius (theta_E); deeplense: uniform over the square of "
                                  "this half-width (arcsec)", "", 0.5)
    n_clumps: object = _f("star-forming clumps in the source (circular Gaussians)", "",
                          IntUniform(0, 3))
    clump_sigma: object = _f("clump Gaussian sigma", "arcsec", Uniform(0.04, 0.1))
    clump_flux_fraction: object = _f("clump flux / source Sersic flux, each", "",
                                     Uniform(0.05, 0.2))
    clump_spread: float = _f("clump offsets from the source centre: normal, sigma = this x "
                             "source radius", "", 1.0)
    # cdm substructure
    subhalo_profile: str = _f("subhalo lens profile: POINT_MASS or TNFW", "", "TNFW")
    subhalo_mass_fraction: float = _f(
        "projected mass fraction in subhalos near theta_E (sets their mean number; "
        "None: n_subhalos)", "", 0.01)
    n_subhalos: object = _f("subhalos per image when subhalo_mass_fraction is None", "",
                            Poisson(25.0))
    subhalo_mass: object = _f("subhalo mass function dN/dm (m200 for TNFW)", "Msun",
                              PowerLaw(-1.9, 1e7, 1e10))
    subhalo_annulus: tuple = _f("subhalos uniform in area between these radii", "theta_E",
                                (0.5, 1.5))
    subhalo_radius: object = _f("deeplense family: subhalo distance from the lens centre, "
                                "drawn directly (not uniform in area)", "arcsec", None)
    subhalo_concentration: object = _f("TNFW concentration c200", "", Uniform(15.0, 30.0))
    subhalo_truncation: float = _f("TNFW truncation radius / scale radius", "", 10.0)
    # axion (vortex) substructure
    axion_mass: object = _f("axion particle mass m_a", "eV", LogUniform(-24, -22))
    vortex_mass: float = _f("total vortex mass (a line of equal point masses)", "Msun", 3e10)
    vortex_points: int = _f("point masses along the vortex", "", 100)

    def replace(self, **overrides):
        """Return a copy with fields replaced; numbers given for drawn fields fix them."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"preset {self.name!r} has no field(s) {unknown}; "
                            f"fields are {sorted(names)}")
        fixed = {}
        for key, value in overrides.items():
            if hasattr(getattr(self, key), "draw") or (
                    key in _OPTIONAL_DRAWN and value is not None):
                value = _as_distribution(value)
            fixed[key] = value
        return dataclasses.replace(self, **fixed)

    def __post_init__(self):
        for name, allowed in (("family", FAMILIES), ("noise", NOISE_MODELS),
                              ("distances", ("angular", "luminosity"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got "
                                 f"{getattr(self, name)!r}")
        if self.source_profile not in SOURCE_PROFILES:
            raise ValueError(f"source_profile must be one of {SOURCE_PROFILES}, "
                             f"got {self.source_profile!r}")
        if self.source_images is not None:
            if not isinstance(self.source_images, (str, os.PathLike)):
                raise TypeError(f"source_images must be a folder path or None, "
                                f"got {self.source_images!r}")
            # a str (the preset stays hashable), absolute (worker processes load it too)
            object.__setattr__(self, "source_images",
                               os.path.abspath(os.fspath(self.source_images)))
        if not self.source_pixel_scale > 0:
            raise ValueError(f"source_pixel_scale must be > 0, got {self.source_pixel_scale}")
        if self.lens_light_sersics is not None:
            try:
                sersics = tuple(tuple(float(v) for v in c) for c in self.lens_light_sersics)
            except (TypeError, ValueError):
                sersics = ()
            if not sersics or any(len(c) != 5 for c in sersics):
                raise ValueError("lens_light_sersics must be a sequence of (mag, R_sersic, "
                                 f"n_sersic, e1, e2), got {self.lens_light_sersics!r}")
            object.__setattr__(self, "lens_light_sersics", sersics)
        if self.subhalo_profile not in ("POINT_MASS", "TNFW"):
            raise ValueError(f"subhalo_profile must be 'POINT_MASS' or 'TNFW', "
                             f"got {self.subhalo_profile!r}")
        if not self.z_source > self.z_lens > 0:
            raise ValueError(f"need 0 < z_lens < z_source, got {self.z_lens}, {self.z_source}")
        for name in ("num_pix", "num_exposures", "supersampling", "adaptive_supersampling",
                     "vortex_points"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def __repr__(self):
        return (f"<Preset {self.name}: {self.num_pix}x{self.num_pix} at {self.pixel_scale}\"/px, "
                f"PSF {self.psf_fwhm}\">")


# --- instruments ---------------------------------------------------------------------


def _lenstronomy_band(config):
    """Instrument numbers from lenstronomy's ObservationConfig (copied: HST mutates its dict)."""
    return dict(config.kwargs_single_band())


def _euclid_vis():
    from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid

    return _lenstronomy_band(Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6))


def _hst_f160w():
    from lenstronomy.SimulationAPI.ObservationConfig.HST import HST

    return _lenstronomy_band(HST(band="WFC3_F160W", psf_type="GAUSSIAN"))


def _instrument(band):
    return dict(
        pixel_scale=band["pixel_scale"],
        psf_fwhm=band["seeing"],
        exposure_time=Fixed(band["exposure_time"]),
        num_exposures=int(band["num_exposures"]),
        magnitude_zero_point=band["magnitude_zero_point"],
        sky_brightness=band["sky_brightness"],
        read_noise=band["read_noise"],
    )


# --- the presets ---------------------------------------------------------------------

PRESETS = {
    # DeepLense Model I: 150x150 at 0.05"/px, Gaussian PSF 0.087", exposure 10^U(3, 3.5) s,
    # a nominal space-telescope-like sky and zero point; peak SNR about 25.
    "model_i": Preset(
        name="model_i",
        description="DeepLense Model I-like: 150x150, 0.05\"/px, Gaussian PSF 0.087\"",
        num_pix=150,
        pixel_scale=0.05,
        psf_fwhm=0.087,
        exposure_time=LogUniform(3.0, 3.5),
        num_exposures=1,
        magnitude_zero_point=25.0,
        sky_brightness=21.0,
        read_noise=5.0,
        supersampling=1,
        adaptive_supersampling=3,
        lens_mass=LogUniform(11.4, 12.2),
        lens_light_mag=Uniform(20.7, 22.2),
        source_mag=Uniform(21.4, 22.9),
    ),
    # DeepLense Model II: Euclid VIS (lenstronomy's numbers), 64x64; noise really added.
    "model_ii": Preset(
        name="model_ii",
        description="Euclid VIS-like: 64x64, 0.101\"/px, seeing 0.16\" (lenstronomy Euclid)",
        num_pix=64,
        supersampling=2,
        adaptive_supersampling=4,
        lens_mass=LogUniform(11.4, 12.2),
        lens_light_mag=Uniform(19.5, 21.5),
        source_mag=Uniform(22.5, 24.5),
        **_instrument(_euclid_vis()),
    ),
    # DeepLense Model III: HST WFC3 F160W (lenstronomy's numbers), 64x64.
    "model_iii": Preset(
        name="model_iii",
        description="HST WFC3 F160W-like: 64x64, 0.08\"/px (lenstronomy HST)",
        num_pix=64,
        supersampling=2,
        adaptive_supersampling=4,
        lens_mass=LogUniform(11.2, 12.0),
        lens_light_mag=Uniform(19.0, 21.0),
        source_mag=Uniform(22.5, 24.5),
        **_instrument(_hst_f160w()),
    ),
}


# --- DeepLenseSim -------------------------------------------------------------------
# The numbers of mwt5345/DeepLenseSim (deeplense/lens.py, Model_*/sim_*.py), the code
# behind the DeepLense datasets (Alexander et al. 2020, ApJ 893, 15; Alexander et al.
# 2023, MNRAS 524, 4). Its images have RA increasing with the column index; ours have it
# decreasing (east left), so every profile is mirrored: e2 changes sign. The lens and
# shear have e2 = gamma2 = 0 and every position prior is symmetric, so only the source's
# e2 = +0.1 becomes -0.1 here and the pixel arrays have the same distribution.


def _q_angle(e1, e2):
    """Axis ratio and position angle (deg) of lenstronomy's ellipticity (e1, e2)."""
    e = float(np.hypot(e1, e2))
    return (1.0 - e) / (1.0 + e), float(np.degrees(0.5 * np.arctan2(e2, e1)) % 180.0)


_LENS_Q, _LENS_ANGLE = _q_angle(0.1, 0.0)
_SOURCE_Q, _SOURCE_ANGLE = _q_angle(-0.1, -0.1)  # DeepLense's (-0.1, +0.1), mirrored

_DEEPLENSE_SCENE = dict(
    family="deeplense",
    distances="luminosity",  # DeepLens.mass_to_radius uses luminosity distances
    H0=70.0, Om0=0.3, z_lens=0.5, z_source=1.0,
    lens_mass=Fixed(1e12),  # make_single_halo(1e12)
    lens_axis_ratio=Fixed(_LENS_Q), lens_angle=Fixed(_LENS_ANGLE), lens_center=Fixed(0.0),
    shear_strength=Fixed(0.05), shear_angle=Fixed(0.0),  # gamma1 = 0.05, gamma2 = 0
    lens_light=False, lens_light_mag=Fixed(float("nan")),
    lens_light_radius=Fixed(float("nan")), lens_light_n_sersic=Fixed(float("nan")),
    source_radius=Fixed(0.25), source_n_sersic=Fixed(1.0),
    source_axis_ratio=Fixed(_SOURCE_Q), source_angle=Fixed(_SOURCE_ANGLE),
    source_offset_max=0.35,  # centre_x, centre_y = uniform(-0.35, 0.35, 2)
    n_clumps=Fixed(0),
    # make_old_cdm: draw_old_cdm_sub_masses draws Poisson(25) but uses size=n_sub, so
    # always 25; its inverse CDF uses beta = -0.9 (its docstring says -1.9).
    n_subhalos=Fixed(25), subhalo_mass=PowerLaw(-0.9, 1e6, 1e10),
    subhalo_radius=Uniform(0.25, 2.0), subhalo_profile="POINT_MASS",
    subhalo_mass_fraction=None,
    # make_vortex(3e10): 100 equal point masses, length 2 * 0.06e-22 / (2 m_a) arcsec
    axion_mass=LogUniform(-24, -22), vortex_mass=3e10, vortex_points=100,
    supersampling=1, adaptive_supersampling=1,  # supersampling_factor 1
)

#: lenstronomy 1.10's Euclid VIS (coadd_years=6) and HST WFC3 F160W numbers, those of
#: DeepLenseSim's time (later lenstronomy releases changed the VIS zero point and sky).
_EUCLID_VIS_2021 = dict(pixel_scale=0.101, psf_fwhm=0.16, exposure_time=Fixed(565.0),
                        num_exposures=4, magnitude_zero_point=24.0, sky_brightness=22.35,
                        read_noise=4.2)
_HST_F160W_2021 = dict(pixel_scale=0.08, psf_fwhm=0.08, exposure_time=Fixed(5400.0),
                       num_exposures=1, magnitude_zero_point=25.96, sky_brightness=22.3,
                       read_noise=4.0)

PRESETS.update({
    # Model I: DeepLens.simple_sim: 150 x 150 at 0.05"/px, Gaussian PSF 0.087", source
    # amp 20, exposure 10^U(3, 3.5), background rms 0.01 and a second Poisson draw.
    "deeplense_model_i": Preset(
        name="deeplense_model_i",
        description="DeepLenseSim Model I as coded: 150x150, 0.05\"/px, fixed 1e12 Msun SIE",
        num_pix=150, pixel_scale=0.05, psf_fwhm=0.087, exposure_time=LogUniform(3.0, 3.5),
        num_exposures=1, magnitude_zero_point=25.0, sky_brightness=99.0, read_noise=0.0,
        noise="deeplense_model_i", background_rms=0.01,
        source_mag=Fixed(float("nan")), source_amp=Fixed(20.0),
        **_DEEPLENSE_SCENE,
    ),
    # Model II: DeepLens.simple_sim_2 with Euclid VIS, source magnitude 20; the published
    # files hold image_model + image_model (flux_scale 2) and no noise. SimAPI is given
    # redshift lists, so lenstronomy traces through multiple planes with
    # z_source_convention 2.5: the theta_E of 1.28" holds for a source at z = 2.5, and the
    # z = 1 source sees 0.66 of every deflection (pyHalo's default cosmology).
    "deeplense_model_ii": Preset(
        name="deeplense_model_ii",
        description="DeepLenseSim Model II as coded: 64x64 Euclid VIS, fixed 1e12 Msun SIE",
        num_pix=64, flux_scale=2.0, source_mag=Fixed(20.0), z_source_convention=2.5,
        **_EUCLID_VIS_2021, **_DEEPLENSE_SCENE,
    ),
    # Model III: as Model II with lenstronomy's HST WFC3 F160W (set_instrument('hst') is a
    # no-op in the published lens.py; the README says lenstronomy's HST defaults).
    "deeplense_model_iii": Preset(
        name="deeplense_model_iii",
        description="DeepLenseSim Model III as coded: 64x64 HST F160W, fixed 1e12 Msun SIE",
        num_pix=64, flux_scale=2.0, source_mag=Fixed(20.0), z_source_convention=2.5,
        **_HST_F160W_2021, **_DEEPLENSE_SCENE,
    ),
    # Model IV: Model_IV/sim_*.py, g band: SimAPI with redshift lists (z_source_convention
    # 2.5, as Models II/III) and a fixed SIE of theta_E 1.5" (e1 = e2 = 0) + shear
    # gamma1 = 0.05; lens light two Sersic ellipses (magnitudes 17 and 28, e2 = 0.05 and
    # 0.3 there, mirrored here); the source a real galaxy image (INTERPOL), the median of
    # its corner subtracted, magnitude 22, rotated by phi_G ~ U(-pi, pi), centre uniform
    # in [-0.3, 0.3]^2; noise_for_model (poisson_gaussian). Its Galaxy10 DECaLS images
    # (256 px at 0.0025"/px: 0.64") become HSC Deep/UltraDeep cutouts (64 px at 0.01"/px:
    # 0.64"); its pyHalo CDM and ULDM realisations the subhalos and vortex of Models I-III.
    "deeplense_model_iv": Preset(
        name="deeplense_model_iv",
        description="DeepLenseSim Model IV as coded: 64x64 Euclid VIS, theta_E 1.5\" SIE, "
                    "real galaxy sources (HSC)",
        num_pix=64, z_source_convention=2.5,
        **_EUCLID_VIS_2021, **{**_DEEPLENSE_SCENE, **dict(
            theta_e=Fixed(1.5), lens_mass=Fixed(float("nan")),
            lens_axis_ratio=Fixed(1.0), lens_angle=Fixed(0.0),  # e1 = e2 = 0
            lens_light=True,
            lens_light_sersics=((17.0, 0.4, 2.3, 0.0, -0.05), (28.0, 1.5, 1.2, 0.0, -0.3)),
            source_profile="INTERPOL", source_images=None, source_pixel_scale=0.01,
            source_mag=Fixed(22.0), source_angle=Uniform(-180.0, 180.0),
            source_offset_max=0.3,
            source_radius=Fixed(float("nan")), source_n_sersic=Fixed(float("nan")),
            source_axis_ratio=Fixed(float("nan")),
        )},
    ),
})


def presets_table(names=None):
    """The presets side by side as an `astropy.table.Table` (the docs tables).

    Parameters
    ----------
    names : sequence of str, optional
        Preset names; all presets by default.

    Returns
    -------
    astropy.table.Table
        One row per field: ``field``, ``unit``, one column per preset, ``meaning``.
    """
    from astropy.table import Table

    names = list(PRESETS) if names is None else list(names)
    for name in names:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    rows = []
    for f in dataclasses.fields(Preset):
        if f.name in ("name", "description"):
            continue
        row = [f.name, f.metadata["unit"]]
        for name in names:
            value = getattr(PRESETS[name], f.name)
            row.append(_format(value))
        row.append(f.metadata["doc"])
        rows.append(row)
    return Table(rows=rows, names=["field", "unit", *names, "meaning"])


def _format(value):
    if isinstance(value, float):
        return _short(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    return str(value)

