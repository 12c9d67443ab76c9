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
]

#: Substructure classes the simulator knows.
SUBSTRUCTURES = ("no_sub", "cdm", "axion")


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
    # instrument and observation
    num_pix: int = _f("native image size (pixels per side)", "pix")
    pixel_scale: float = _f("native pixel size", "arcsec")
    psf_fwhm: float = _f("FWHM of the Gaussian PSF", "arcsec")
    exposure_time: object = _f("exposure time of one exposure", "s")
    num_exposures: int = _f("exposures co-added (read noise counted per exposure)")
    magnitude_zero_point: float = _f("AB magnitude giving 1 electron/s", "mag")
    sky_brightness: float = _f("sky surface brightness", "mag/arcsec2")
    read_noise: float = _f("read noise per exposure and pixel", "electron")
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
    # main deflector: SIE + external shear
    lens_mass: object = _f("SIE mass inside the Einstein radius", "Msun")
    lens_axis_ratio: object = _f("SIE axis ratio q (lens light shares it)", "", Uniform(0.6, 1.0))
    lens_angle: object = _f("SIE position angle (lens light shares it)", "deg", Uniform(0, 180))
    lens_center: object = _f("SIE centre, each axis (lens light shares it)", "arcsec",
                             Uniform(-0.05, 0.05))
    shear_strength: object = _f("external shear strength gamma", "", Uniform(0.0, 0.08))
    shear_angle: object = _f("external shear angle", "deg", Uniform(0, 180))
    # lens light: Sersic ellipse
    lens_light_mag: object = _f("lens galaxy total magnitude", "mag")
    lens_light_radius: object = _f("lens galaxy Sersic half-light radius", "arcsec",
                                   Uniform(0.5, 1.2))
    lens_light_n_sersic: object = _f("lens galaxy Sersic index", "", Uniform(3.0, 5.0))
    # source: Sersic ellipse + star-forming clumps
    source_mag: object = _f("source total magnitude (unlensed, without clumps)", "mag")
    source_radius: object = _f("source Sersic half-light radius", "arcsec", Uniform(0.1, 0.35))
    source_n_sersic: object = _f("source Sersic index", "", Uniform(0.5, 2.0))
    source_axis_ratio: object = _f("source axis ratio", "", Uniform(0.5, 1.0))
    source_angle: object = _f("source position angle", "deg", Uniform(0, 180))
    source_offset_max: float = _f("source centre drawn uniformly over a disc of this radius",
                                  "theta_E", 0.5)
    n_clumps: object = _f("star-forming clumps in the source (circular Gaussians)", "",
                          IntUniform(0, 3))
    clump_sigma: object = _f("clump Gaussian sigma", "arcsec", Uniform(0.04, 0.1))
    clump_flux_fraction: object = _f("clump flux / source Sersic flux, each", "",
                                     Uniform(0.05, 0.2))
    clump_spread: float = _f("clump offsets from the source centre: normal, sigma = this x "
                             "source radius", "", 1.0)
    # cdm substructure
    subhalo_profile: str = _f("subhalo lens profile: POINT_MASS or TNFW", "", "POINT_MASS")
    n_subhalos: object = _f("subhalos per image (number normalisation)", "", Poisson(25.0))
    subhalo_mass: object = _f("subhalo mass function dN/dm (m200 for TNFW)", "Msun",
                              PowerLaw(-1.9, 1e6, 1e10))
    subhalo_annulus: tuple = _f("subhalos uniform in area between these radii", "theta_E",
                                (0.5, 1.5))
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
            if hasattr(getattr(self, key), "draw"):
                value = _as_distribution(value)
            fixed[key] = value
        return dataclasses.replace(self, **fixed)

    def __post_init__(self):
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
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return str(value)

