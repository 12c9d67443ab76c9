"""Tests of lensenhance.simulate: seeds, flux, noise, physics, WCS, writers (issue 3)."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy import constants as const
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.cosmology import FlatLambdaCDM
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs.utils import proj_plane_pixel_scales

from lensenhance import io
from lensenhance.simulate import (
    PRESETS,
    LensSimulator,
    background_variance,
    bin_image,
    de_broglie_length,
    einstein_radius,
    presets_table,
)
from lensenhance.simulate.files import simulate_to_disk, write_simulation
from lensenhance.simulate.presets import PowerLaw

# model_ii is the cheapest preset (64 x 64); model_i is used where its numbers matter.
FAST = "model_ii"


@pytest.fixture(scope="module")
def pairs():
    """Shared x2 pairs, all three classes."""
    sim = LensSimulator.from_preset(FAST, substructure="all", seed=0)
    return sim.simulate_pairs(30, scale=2, progress=False)


def _binned_hr(ds, scale):
    return bin_image(ds.hr.values.astype(np.float64), scale)


# -- seeds ---------------------------------------------------------------------------------

def test_same_seed_same_arrays_whatever_the_worker_count():
    runs = [LensSimulator.from_preset(FAST, substructure="all", seed=5)
            .simulate_pairs(10, workers=workers, progress=False) for workers in (1, 2, 1)]
    for ds in runs[1:]:
        for name in ("hr", "lr", "lr_sigma"):
            np.testing.assert_array_equal(ds[name].values, runs[0][name].values)
        np.testing.assert_array_equal(ds.seed.values, runs[0].seed.values)
        np.testing.assert_array_equal(ds.theta_E.values, runs[0].theta_E.values)


def test_different_seed_differs_and_calls_continue_the_stream():
    a = LensSimulator.from_preset(FAST, seed=1).simulate_pairs(3, progress=False)
    b = LensSimulator.from_preset(FAST, seed=2).simulate_pairs(3, progress=False)
    assert not np.array_equal(a.lr.values, b.lr.values)
    assert not np.array_equal(a.theta_E.values, b.theta_E.values)
    sim = LensSimulator.from_preset(FAST, seed=1)
    first, second = (sim.simulate_pairs(3, progress=False) for _ in range(2))
    np.testing.assert_array_equal(first.lr.values, a.lr.values)  # same seed, same first run
    assert not np.array_equal(first.lr.values, second.lr.values)  # the next run is new
    again = LensSimulator.from_preset(FAST, seed=9).simulate_pairs(3, seed=1, progress=False)
    np.testing.assert_array_equal(again.lr.values, a.lr.values)  # a run's seed= wins


def test_image_seed_rebuilds_the_scene_and_classes_share_the_macro_model(pairs):
    sim = LensSimulator.from_preset(FAST, substructure="all")
    for i in range(3):
        t = pairs.isel(image=i)
        scene = sim.draw_scene(int(t.seed), substructure=t.substructure.item())
        assert scene.truth["theta_E"] == float(t.theta_E)
        assert scene.truth["n_sub"] == int(t.n_sub)
        # the same image seed gives the same galaxies in another class
        other = sim.draw_scene(int(t.seed), substructure="no_sub")
        assert other.truth["source_x"] == float(t.source_x)


# -- flux and noise ------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 4])
def test_binning_conserves_flux(scale):
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, size=(3, 8 * scale, 4 * scale))
    binned = bin_image(image, scale)
    assert binned.shape == (3, 8, 4)
    np.testing.assert_allclose(binned.sum(axis=(1, 2)), image.sum(axis=(1, 2)), rtol=1e-12)
    with pytest.raises(ValueError, match="cannot be binned"):
        bin_image(image[:, 1:], scale)


@pytest.mark.parametrize("preset,scale,hr_size", [("model_i", 4, 152), ("model_ii", 4, 64),
                                                  ("model_i", 2, 150)])
def test_pair_framing_and_flux(preset, scale, hr_size):
    ds = LensSimulator.from_preset(preset, seed=3).simulate_pairs(2, scale=scale,
                                                                  progress=False)
    assert ds.hr.shape == (2, hr_size, hr_size)
    assert ds.lr.shape == (2, hr_size // scale, hr_size // scale)
    assert ds.attrs["lr_pixel_scale"] == pytest.approx(scale * ds.attrs["hr_pixel_scale"])
    # the LR grid covers the HR grid, both centred on the lens frame's origin
    assert float(ds.x.mean()) == pytest.approx(0.0, abs=1e-12)
    assert float(ds.x_hr.mean()) == pytest.approx(0.0, abs=1e-12)
    expected = _binned_hr(ds, scale)
    np.testing.assert_allclose(expected.sum(axis=(1, 2)),
                               ds.hr.values.astype(np.float64).sum(axis=(1, 2)), rtol=1e-6)
    # lr_sigma is exactly the Poisson + background standard deviation of that expectation
    t = ds.exposure_time.values[:, None, None]
    var = background_variance(PRESETS[preset], pixel_scale=ds.attrs["lr_pixel_scale"],
                              exposure_time=t)
    np.testing.assert_allclose(ds.lr_sigma.values, np.sqrt(expected * t + var) / t, rtol=1e-5)


def test_noise_is_standard_normal_after_scaling(pairs):
    z = (pairs.lr.values - _binned_hr(pairs, 2)) / pairs.lr_sigma.values
    assert z.size > 30_000
    assert abs(z.mean()) < 0.02
    assert abs(z.std() - 1.0) < 0.02


def test_lens_light_images_are_the_rendered_lens_light():
    """clean - lens light is the same scenes rendered without lens light (x2 pairs' HR
    grid, two classes, the preset given by name)."""
    from lensenhance.simulate.render import get_renderer, lens_light_images

    ds = LensSimulator.from_preset(FAST, substructure=("no_sub", "axion"), seed=3) \
        .simulate_pairs(2, scale=2, progress=False)
    hr = ds.hr.values.astype(np.float64)
    lens_light = lens_light_images(FAST, ds.substructure.values, ds.seed.values, hr.shape[-1])
    assert lens_light.dtype == np.float32 and lens_light.shape == hr.shape
    assert np.all(lens_light.max(axis=(1, 2)) > 0.1 * hr.max(axis=(1, 2)))
    dark = PRESETS[FAST].replace(lens_light=False)
    renderer = get_renderer(dark, hr.shape[-1])
    for i, (substructure, seed) in enumerate(zip(ds.substructure.values, ds.seed.values)):
        scene = LensSimulator(dark).draw_scene(int(seed), substructure=str(substructure))
        source = dark.flux_scale * renderer.render(scene)
        np.testing.assert_allclose(hr[i] - lens_light[i], source, rtol=0,
                                   atol=1e-5 * hr[i].max())
    zeros = lens_light_images(dark, ds.substructure.values, ds.seed.values, 8)
    assert zeros.shape == (2, 8, 8) and not zeros.any()


def test_snr_pairs_same_scene_two_depths():
    ratio = 9.0
    ds = LensSimulator.from_preset(FAST, seed=4).simulate_snr_pairs(
        12, exposure_ratio=ratio, progress=False)
    assert set(ds.data_vars) == {"low", "low_sigma", "high", "high_sigma", "clean"}
    for name in ("low", "high"):
        z = (ds[name].values - ds.clean.values) / ds[f"{name}_sigma"].values
        assert abs(z.mean()) < 0.03 and abs(z.std() - 1.0) < 0.03
    # in electron/s the deep image is sqrt(ratio) times less noisy where the Poisson
    # noise dominates, up to ratio times where the read noise does (it does not scale)
    gain = (ds.low_sigma / ds.high_sigma).values
    assert np.all(gain >= np.sqrt(ratio) * (1 - 1e-5)) and np.all(gain <= ratio)
    assert ds.attrs["exposure_ratio"] == ratio
    with pytest.raises(ValueError, match="exposure_ratio"):
        LensSimulator.from_preset(FAST).simulate_snr_pairs(2, exposure_ratio=1.0)


# -- physics -------------------------------------------------------------------------------

def test_einstein_radius_formula():
    cosmo = FlatLambdaCDM(H0=70, Om0=0.3)
    d_l = cosmo.angular_diameter_distance(0.5)
    d_s = cosmo.angular_diameter_distance(1.0)
    d_ls = (cosmo.comoving_distance(1.0) - cosmo.comoving_distance(0.5)) / 2.0  # flat
    theta = np.sqrt(4 * const.G * 1e12 * u.M_sun / const.c**2 * d_ls / (d_l * d_s))
    assert einstein_radius(1e12) == pytest.approx(
        (theta.decompose() * u.rad).to_value(u.arcsec), rel=1e-6)
    assert einstein_radius(1e12) == pytest.approx(1.66, abs=0.01)


def test_theta_e_matches_the_critical_curve_of_a_round_lens():
    from lenstronomy.Analysis.lens_profile import LensProfileAnalysis
    from lenstronomy.LensModel.lens_model import LensModel

    sim = LensSimulator.from_preset("model_i", lens_axis_ratio=1.0, shear_strength=0.0)
    ds = sim.simulate_pairs(3, seed=11, progress=False)
    for i in range(3):
        t = ds.isel(image=i)
        theta_e = float(t.theta_E)
        assert theta_e == pytest.approx(float(einstein_radius(float(t.lens_mass))), rel=1e-9)
        scene = sim.draw_scene(int(t.seed))
        model = LensModel(list(scene.lens_model_list))
        radius = LensProfileAnalysis(model).effective_einstein_radius(
            scene.kwargs_lens, r_max=5.0, num_points=200)
        assert radius == pytest.approx(theta_e, rel=0.01)
        # the tangential critical curve: 1/magnification changes sign at theta_E
        x0, y0 = float(t.lens_x), float(t.lens_y)
        inverse_mu = [1.0 / model.magnification(x0 + r, y0, scene.kwargs_lens)
                      for r in (0.98 * theta_e, 1.02 * theta_e)]
        assert inverse_mu[0] < 0 < inverse_mu[1]


def test_axion_vortex_length_and_cdm_masses():
    # lambda_dB = h / (m v) = 0.48 kpc for 1e-22 eV at 250 km/s, seen from z = 0.5
    length = const.h / (1e-22 * u.eV / const.c**2 * 250 * u.km / u.s)
    assert length.to_value(u.kpc) == pytest.approx(0.48, abs=0.005)
    d_l = FlatLambdaCDM(H0=70, Om0=0.3).angular_diameter_distance(0.5)
    expected = (length / d_l).decompose().value * u.rad.to(u.arcsec)
    assert de_broglie_length(1e-22, 250.0) == pytest.approx(expected, rel=1e-9)
    ds = LensSimulator.from_preset(FAST, substructure="axion", seed=2).simulate_pairs(
        6, progress=False)
    assert np.all((ds.axion_mass >= 1e-24) & (ds.axion_mass <= 1e-22))
    np.testing.assert_allclose(
        ds.vortex_length, de_broglie_length(ds.axion_mass.values,
                                            ds.velocity_dispersion.values), rtol=1e-9)
    assert np.all(ds.m_sub_total == 3e10)
    masses = PowerLaw(-1.9, 1e6, 1e10).draw(np.random.default_rng(0), 200_000)
    assert masses.min() >= 1e6 and masses.max() <= 1e10
    assert masses.mean() == pytest.approx(PowerLaw(-1.9, 1e6, 1e10).mean(), rel=0.05)


def test_class_balance(pairs):
    classes, counts = np.unique(pairs.substructure.values, return_counts=True)
    assert list(classes) == ["axion", "cdm", "no_sub"]
    assert list(counts) == [10, 10, 10]
    by_class = {c: pairs.where(pairs.substructure == c, drop=True) for c in classes}
    assert np.all(by_class["no_sub"].n_sub == 0)
    assert np.all(by_class["axion"].n_sub == PRESETS[FAST].vortex_points)
    assert by_class["cdm"].n_sub.mean() > 10  # Poisson(25)
    # nine images of two classes: 5 and 4
    ds = LensSimulator.from_preset(FAST, substructure=("no_sub", "cdm"), seed=0)
    counts = np.unique(ds.simulate_pairs(9, progress=False).substructure, return_counts=True)[1]
    assert sorted(counts) == [4, 5]


# -- CCDData and WCS -----------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["model_i", "model_iii"])
@pytest.mark.parametrize("ra,dec", [(150.0, 2.2), (0.01, -45.0), (359.99, 80.0)])
def test_simulate_image_wcs_unit_uncertainty(preset, ra, dec):
    ccd = LensSimulator.from_preset(preset, seed=0).simulate_image(ra=ra, dec=dec)
    assert isinstance(ccd, CCDData)
    assert ccd.unit == u.electron / u.s
    assert isinstance(ccd.uncertainty, StdDevUncertainty)
    assert ccd.uncertainty.array.shape == ccd.shape == (PRESETS[preset].num_pix,) * 2
    ny, nx = ccd.shape
    centre = ccd.wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
    assert centre.separation(SkyCoord(ra, dec, unit="deg")).to_value(u.arcsec) < 1e-6
    scales = proj_plane_pixel_scales(ccd.wcs) * 3600
    np.testing.assert_allclose(scales, PRESETS[preset].pixel_scale, rtol=1e-12)
    assert ccd.wcs.wcs.cdelt[0] < 0  # east is left
    assert ccd.meta["THETA_E"] > 0 and ccd.meta["PRESET"] == preset


def test_simulate_image_puts_the_lens_where_the_truth_says():
    sim = LensSimulator.from_preset("model_i", lens_light_mag=18.0, source_mag=30.0)
    ccd = sim.simulate_image(seed=4, substructure="no_sub")
    x, y = float(ccd.meta["LENS_X"]), float(ccd.meta["LENS_Y"])  # arcsec: RA, Dec offsets
    row, col = np.unravel_index(np.argmax(ccd.data), ccd.shape)
    where = ccd.wcs.pixel_to_world(col, row)
    offset = SkyCoord(150.0, 2.2, unit="deg").spherical_offsets_to(where)
    assert offset[0].to_value(u.arcsec) == pytest.approx(x, abs=0.05)
    assert offset[1].to_value(u.arcsec) == pytest.approx(y, abs=0.05)


# -- writers -------------------------------------------------------------------------------

def test_write_fits_and_catalog(tmp_path, pairs):
    ds = pairs.isel(image=slice(0, 3))
    catalog = write_simulation(ds, tmp_path / "sim", progress=False)
    assert catalog == tmp_path / "sim" / "catalog.ecsv"
    table = io.read_catalog(catalog)
    assert {"lr_path", "hr_path", "path", "theta_E", "seed", "substructure"} <= set(
        table.colnames)
    assert table["path"][0] == table["lr_path"][0]
    for i, row in enumerate(table):
        lr, hr = io.read_image(row["lr_path"]), io.read_image(row["hr_path"])
        np.testing.assert_array_equal(lr.data, ds.lr.values[i])
        np.testing.assert_array_equal(lr.uncertainty.array, ds.lr_sigma.values[i])
        np.testing.assert_array_equal(hr.data, ds.hr.values[i])
        assert lr.unit == u.electron / u.s
        assert lr.meta["THETA_E"] == pytest.approx(float(ds.theta_E[i]))
        assert row["theta_E"] == pytest.approx(float(ds.theta_E[i]))
        np.testing.assert_allclose(proj_plane_pixel_scales(lr.wcs),
                                   2 * proj_plane_pixel_scales(hr.wcs))
    with pytest.raises(FileExistsError):
        write_simulation(ds, tmp_path / "sim", progress=False)
    write_simulation(ds, tmp_path / "sim", progress=False, overwrite=True)


@pytest.mark.parametrize("fmt,suffix", [("netcdf", ".nc"), ("zarr", ".zarr")])
def test_write_dataset_opens_with_xarray(tmp_path, pairs, fmt, suffix):
    ds = pairs.isel(image=slice(0, 3))
    path = write_simulation(ds, tmp_path, format=fmt)
    assert path == tmp_path / f"simulation{suffix}"
    engine = "h5netcdf" if fmt == "netcdf" else "zarr"
    options = {"consolidated": False} if fmt == "zarr" else {}
    with xr.open_dataset(path, engine=engine, **options) as back:
        np.testing.assert_array_equal(back.lr.values, ds.lr.values)
        np.testing.assert_array_equal(back.theta_E.values, ds.theta_E.values)
        assert list(back.substructure.values) == list(ds.substructure.values)
        assert back.attrs["preset"] == FAST
    with pytest.raises(FileExistsError):
        write_simulation(ds, tmp_path, format=fmt)


def test_simulate_to_disk(tmp_path):
    path = simulate_to_disk(tmp_path, preset=FAST, substructure="all", n=3, seed=0,
                            progress=False)
    table = io.read_catalog(path)
    assert len(table) == 3 and sorted(table["substructure"]) == ["axion", "cdm", "no_sub"]
    assert Path(table["hr_path"][0]).exists()


# -- presets and validation ----------------------------------------------------------------

def test_docs_tables_match_the_presets():
    docs = Path(__file__).parents[1] / "docs" / "simulate.rst"
    if not docs.exists():
        pytest.skip("docs not in this checkout")
    lines = {" ".join(line.split()) for line in docs.read_text().splitlines()}
    physical = [name for name in PRESETS if PRESETS[name].family == "physical"]
    deeplense = [name for name in PRESETS if PRESETS[name].family == "deeplense"]
    for names in (physical, deeplense):
        for row in presets_table(names):
            cells = [str(row[name]) for name in ("field", "unit", *names)]
            assert any(line.startswith(" ".join(c for c in cells if c))
                       for line in lines), row


@pytest.mark.parametrize("kwargs,error", [
    (dict(name="model_iv"), ValueError),
    (dict(name="model_i", no_such_field=1.0), TypeError),
    (dict(name="model_i", substructure="wdm"), ValueError),
    (dict(name="model_i", lens_mass="big"), TypeError),
    (dict(name="model_i", subhalo_profile="NFW"), ValueError),
])
def test_from_preset_validation(kwargs, error):
    with pytest.raises(error):
        LensSimulator.from_preset(**kwargs)


@pytest.mark.parametrize("kwargs,error", [(dict(n=0), ValueError), (dict(n=2.5), TypeError),
                                          (dict(n=2, scale=1), ValueError),
                                          (dict(n=2, workers=0), ValueError)])
def test_simulate_pairs_validation(kwargs, error):
    with pytest.raises(error):
        LensSimulator.from_preset(FAST).simulate_pairs(progress=False, **kwargs)


def test_override_fixes_a_drawn_field_and_repr():
    sim = LensSimulator.from_preset(FAST, lens_mass=1e12, substructure="cdm", seed=3)
    ds = sim.simulate_pairs(2, progress=False)
    np.testing.assert_allclose(ds.lens_mass, 1e12)
    np.testing.assert_allclose(ds.theta_E, einstein_radius(1e12), rtol=1e-9)
    assert "model_ii" in repr(sim) and "cdm" in repr(sim)
    assert "64x64" in repr(sim.preset)


def test_speed_benchmark_runs_and_writes_json(tmp_path):
    import json

    from lensenhance.benchmark.speed import benchmark_simulate

    path = tmp_path / "speed.json"
    result = benchmark_simulate(n=4, workers=(1,), presets=(FAST,), substructures=("no_sub",),
                                repeats=1, json_path=path, verbose=False)
    (row,) = result["results"]
    assert row["images_per_s"] > 0 and row["workers"] == 1
    assert json.loads(path.read_text())["results"][0]["n"] == 4


def test_simulate_image_binning_is_the_pairs_lr():
    sim = LensSimulator.from_preset(FAST, substructure="cdm", seed=3)
    ds = sim.simulate_pairs(1, scale=2, progress=False)
    seed = int(ds["seed"].values[0])
    ccd = sim.simulate_image(seed=seed, binning=2)
    np.testing.assert_array_equal(ccd.data, ds["lr"].values[0])
    np.testing.assert_array_equal(ccd.uncertainty.array, ds["lr_sigma"].values[0])
    scale = PRESETS[FAST].pixel_scale * 2
    assert ccd.meta["PIXSCALE"] == pytest.approx(scale)
    from astropy.wcs.utils import proj_plane_pixel_scales

    assert proj_plane_pixel_scales(ccd.wcs) * 3600 == pytest.approx([scale, scale])
    with pytest.raises(ValueError, match="binning"):
        sim.simulate_image(binning=0)


# -- resumable runs ------------------------------------------------------------------------

def _living(pids):
    """The pids among ``pids`` that still run (zombies are not running)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in (b"Z", b"X"):
            alive.add(pid)
    return alive


def _descendants(pid):
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_simulate_killed_and_rerun_equals_an_uninterrupted_run(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from click.testing import CliRunner

    from lensenhance.cli import cli

    out = tmp_path / "killed"
    args = ["-q", "simulate", "--preset", FAST, "--substructure", "all", "-n", "24",
            "--chunk-size", "4", "--seed", "5", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "lensenhance", *args, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers, deadline = set(), time.monotonic() + 120
    try:
        # Written as it goes: the first chunk is on disk long before the last one.
        while not list((out / ".parts").glob("part-*.ecsv")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run did not start"
            workers |= _descendants(proc.pid)
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert len(workers) >= 2
    deadline = time.monotonic() + 10
    while _living(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _living(workers), "the simulator's workers outlived the killed command"
    assert not (out / "catalog.ecsv").exists(), "the run ended before it was killed"

    result = CliRunner().invoke(cli, args)  # the same command (one worker: same result)
    assert result.exit_code == 0, result.output
    reference = simulate_to_disk(tmp_path / "whole", preset=FAST, substructure="all", n=24,
                                 seed=5, chunk_size=24, progress=False)
    files = sorted(p.relative_to(out) for p in out.rglob("*.fits"))
    assert len(files) == 48 and not [p for p in out.rglob(".tmp-*")]
    assert not (out / ".parts").exists()
    for name in files:
        assert (out / name).read_bytes() == (reference.parent / name).read_bytes(), name
    ours, theirs = io.read_catalog(out / "catalog.ecsv"), io.read_catalog(reference)
    assert ours.colnames == theirs.colnames
    for name in ours.colnames:
        if ours[name].dtype.kind == "f":
            np.testing.assert_array_equal(ours[name], theirs[name])
        elif not name.endswith("path"):
            assert list(ours[name]) == list(theirs[name]), name
    # Another seed into the same folder is refused before anything is simulated.
    with pytest.raises(ValueError, match="seed: 5 -> 6"):
        simulate_to_disk(out, preset=FAST, substructure="all", n=24, seed=6, progress=False)


def test_simulate_indices_equal_the_whole_run():
    sim = LensSimulator.from_preset(FAST, substructure="all")
    whole = sim.simulate_pairs(5, seed=3, progress=False)
    part = sim.simulate_pairs(5, seed=3, indices=[4, 1], progress=False)
    assert list(part.image.values) == [4, 1]
    np.testing.assert_array_equal(part.lr.values, whole.lr.values[[4, 1]])
    assert list(part.substructure.values) == list(whole.substructure.values[[4, 1]])
    with pytest.raises(ValueError, match="seed"):
        sim.simulate_pairs(5, indices=[1], progress=False)
    with pytest.raises(ValueError, match="range"):
        sim.simulate_pairs(5, seed=3, indices=[5], progress=False)
