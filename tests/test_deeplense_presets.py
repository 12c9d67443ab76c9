"""DeepLense-faithful presets against DeepLenseSim's own code, and the detectability measure."""

import numpy as np
import pytest

from lensenhance.simulate import LensSimulator
from lensenhance.simulate.detectability import refit_smooth, substructure_chi2
from lensenhance.simulate.physics import draw_scene
from lensenhance.simulate.presets import PRESETS
from lensenhance.simulate.render import get_renderer, simulate_block

# Means (and their standard errors) over 200 draws of DeepLenseSim's code, printed by
# tests/reference/deeplensesim_stats.py: the total flux of the published image in
# electron/s and the total subhalo mass of cdm images; theta_E is 1.2815" in every model.
REFERENCE = {
    "deeplense_model_i": {"flux": (222.4, 2.5), "m_sub": (3.768e10, 7.9e8)},
    "deeplense_model_ii": {"flux": (495.5, 9.2), "m_sub": (3.676e10, 8.9e8)},
    "deeplense_model_iii": {"flux": (3007.0, 53.0), "m_sub": (3.731e10, 7.9e8)},
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_preset_statistics_match_deeplensesim(name):
    preset = PRESETS[name]
    n = 60
    arrays, truths = simulate_block(preset, "image", ["no_sub"] * n, list(range(n)), None)
    # Model I's published files are noisy counts (their clipped background adds flux);
    # Models II/III's are image_model + image_model without noise.
    flux = arrays["image" if preset.noise == "deeplense_model_i" else "clean"].sum(axis=(1, 2))
    ref, err = REFERENCE[name]["flux"]
    assert abs(flux.mean() - ref) < 4 * np.hypot(err, flux.std() / np.sqrt(n))
    _, cdm = simulate_block(preset, "image", ["cdm"] * n, list(range(n)), None)
    m_sub = np.array([t["m_sub_total"] for t in cdm])
    ref, err = REFERENCE[name]["m_sub"]
    assert abs(m_sub.mean() - ref) < 4 * np.hypot(err, m_sub.std() / np.sqrt(n))
    assert all(t["n_sub"] == 25 for t in cdm)  # the code's Poisson draw is never used
    # the SIE keeps DeepLenseSim's 1.2815" (Models II/III: for a z = 2.5 source, so the
    # z = 1 source sees 0.634 of it)
    expected = 1.2815 if name == "deeplense_model_i" else 1.2815 * 0.6343
    assert truths[0]["theta_E"] == pytest.approx(expected, rel=2e-3)


def test_deeplense_scene_is_fixed_but_the_source():
    preset = PRESETS["deeplense_model_ii"]
    a = draw_scene(preset, "cdm", np.random.default_rng(1))
    b = draw_scene(preset, "cdm", np.random.default_rng(2))
    assert a.kwargs_lens[0] == b.kwargs_lens[0]  # fixed SIE
    assert a.kwargs_lens[1]["gamma1"] == pytest.approx(0.05)
    assert a.kwargs_lens[0]["e1"] == pytest.approx(0.1) and abs(a.kwargs_lens[0]["e2"]) < 1e-12
    assert a.kwargs_source[0]["center_x"] != b.kwargs_source[0]["center_x"]
    assert abs(a.kwargs_source[0]["center_x"]) <= 0.35
    assert not a.lens_light_model_list
    radii = np.hypot([k["center_x"] for k in a.kwargs_lens[2:]],
                     [k["center_y"] for k in a.kwargs_lens[2:]])
    assert radii.min() >= 0.25 and radii.max() <= 2.0


def test_vortex_length_follows_deeplensesim():
    preset = PRESETS["deeplense_model_i"].replace(axion_mass=1e-23)
    scene = draw_scene(preset, "axion", np.random.default_rng(0))
    xs = np.array([k["center_x"] for k in scene.kwargs_lens[2:]])
    ys = np.array([k["center_y"] for k in scene.kwargs_lens[2:]])
    # axion_mass_to_length(1e-23) = 0.3: points from -0.3 to +0.3 through the centre
    assert np.hypot(xs[-1] - xs[0], ys[-1] - ys[0]) == pytest.approx(0.6)
    assert np.hypot(xs.mean(), ys.mean()) < 1e-12
    assert scene.truth["vortex_length"] == pytest.approx(0.6)


@pytest.mark.parametrize("name", ["deeplense_model_ii", "model_ii"])
def test_sub_chi2_is_an_explicit_with_without_render(name):
    preset = PRESETS[name]
    ds = LensSimulator.from_preset(name, substructure="all", seed=0).simulate_pairs(
        6, progress=False)
    assert np.all(ds["sub_chi2"].values[ds["substructure"].values == "no_sub"] == 0)
    i = int(np.flatnonzero(ds["substructure"].values == "axion")[0])
    seed = int(ds["seed"].values[i])
    scene = draw_scene(preset, "axion", np.random.default_rng(seed), seed=seed)
    renderer = get_renderer(preset, ds["hr"].shape[-1])
    with_sub = preset.flux_scale * renderer.render(scene)
    without = preset.flux_scale * renderer.render(scene.smooth())
    np.testing.assert_allclose(ds["hr"].values[i], with_sub, rtol=1e-5, atol=1e-6)
    from lensenhance.simulate.noise import noise_sigma

    sigma = noise_sigma(preset, without, exposure_time=scene.truth["exposure_time"],
                        pixel_scale=preset.pixel_scale)
    chi2 = np.sum(((with_sub - without) / sigma) ** 2)
    assert ds["sub_chi2"].values[i] == pytest.approx(chi2, rel=1e-6)
    assert chi2 > 0


def test_deeplense_classes_are_detectable_and_refit_absorbs_some():
    preset = PRESETS["deeplense_model_ii"]
    renderer = get_renderer(preset, preset.num_pix)
    scene = draw_scene(preset, "cdm", np.random.default_rng(3))
    clean = preset.flux_scale * renderer.render(scene)
    out = substructure_chi2(preset, scene, clean, renderer, refit=True)
    assert out["sub_chi2"] > 1e3  # far above the noise
    assert 25 < out["sub_chi2_refit"] <= out["sub_chi2"]


def _refit_from_a_perturbed_start(preset):
    """A smooth scene, refitted from its truth with theta_E and the source moved."""
    renderer = get_renderer(preset, preset.num_pix)
    truth = draw_scene(preset, "no_sub", np.random.default_rng(5))
    image = renderer.render(truth)
    start = truth.smooth()
    start.kwargs_lens = [dict(k) for k in start.kwargs_lens]
    start.kwargs_source = [dict(k) for k in start.kwargs_source]
    start.kwargs_lens[0]["theta_E"] *= 1.02
    start.kwargs_source[0]["center_x"] += 0.02
    chi2, best = refit_smooth(start, image, np.full(image.shape, 0.01), renderer.render,
                              max_nfev=400)
    assert chi2 < 1.0  # the smooth model reproduces a smooth image
    for index, key, kwargs in ((0, "theta_E", "kwargs_lens"), (0, "center_x", "kwargs_source")):
        assert getattr(best, kwargs)[index][key] == pytest.approx(
            getattr(truth, kwargs)[index][key], abs=2e-3)
    return truth, best


def test_refit_recovers_a_smooth_scene():
    _refit_from_a_perturbed_start(PRESETS["deeplense_model_ii"])


def _model_iv(**overrides):
    preset = PRESETS["deeplense_model_iv"]
    return preset.replace(**overrides) if overrides else preset


def _source_flux(preset):
    """electron/s of magnitude ``preset.source_mag`` at the preset's zero point."""
    return 10.0 ** (-0.4 * (preset.source_mag.value - preset.magnitude_zero_point))


def test_model_iv_simulates_pairs_of_every_class():
    ds = LensSimulator.from_preset("deeplense_model_iv", substructure="all",
                                   seed=0).simulate_pairs(6, progress=False)
    assert ds["hr"].shape == (6, 64, 64) and ds["lr"].shape == (6, 32, 32)
    assert list(ds["substructure"].values) == ["no_sub", "cdm", "axion"] * 2
    for name in ("hr", "lr", "lr_sigma"):
        assert np.all(np.isfinite(ds[name].values)), name
    assert np.all(ds["lr_sigma"].values > 0)
    assert np.all((ds["source_index"].values >= 0) & (ds["source_index"].values < 24))
    assert all(name.startswith("n") for name in ds["source_name"].values)
    preset = PRESETS["deeplense_model_iv"]
    renderer = get_renderer(preset, 64)
    lens_light = np.sum(10.0 ** (-0.4 * (np.array([17.0, 28.0]) - 24.0)))
    for i, seed in enumerate(ds["seed"].values):
        scene = draw_scene(preset, str(ds["substructure"].values[i]),
                           np.random.default_rng(int(seed)))
        np.testing.assert_allclose(ds["hr"].values[i], renderer.render(scene), rtol=1e-5,
                                   atol=1e-5)
        scene.kwargs_source = [dict(scene.kwargs_source[0], amp=0.0)]
        lens_only = renderer.render(scene).sum()
        # the lens light (magnitudes 17 and 28; flux_scale 1), a little of it off the field
        assert 0.95 * lens_light < lens_only < lens_light
        # the source (magnitude 22: 6.31 electron/s) lies inside the Einstein ring, so it
        # is magnified at least twice
        assert 2 * 6.31 < ds["hr"].values[i].sum() - lens_only < 40 * 6.31


def test_model_iv_lens_is_theta_e_1p5_for_the_convention_source():
    from lensenhance.simulate.physics import LensingDistances, deflection_factor

    preset = _model_iv()
    scene = draw_scene(preset, "cdm", np.random.default_rng(0))
    beta = deflection_factor(0.5, 1.0, 2.5)
    assert beta == pytest.approx(0.6343, abs=1e-4)
    t = scene.truth
    assert t["theta_E"] == pytest.approx(1.5 * beta, rel=1e-12)
    assert scene.kwargs_lens[0]["theta_E"] == t["theta_E"]
    assert scene.kwargs_lens[0]["e1"] == pytest.approx(0.0, abs=1e-12)
    assert scene.kwargs_lens[0]["e2"] == pytest.approx(0.0, abs=1e-12)
    assert scene.kwargs_lens[1]["gamma1"] == pytest.approx(0.05)
    # lens_mass is the mass whose theta_E (the preset's distances) is the 1.5" given
    k = LensingDistances.from_preset(preset).theta_e_sq_per_msun
    assert np.sqrt(t["lens_mass"] * k) == pytest.approx(1.5, rel=1e-12)
    assert t["lens_mass"] == pytest.approx(1.370e12, rel=1e-3)  # (1.5 / 1.2815)**2 * 1e12
    # two centred Sersics of magnitudes 17 and 28, e2 mirrored to -0.05 and -0.3
    assert scene.lens_light_model_list == ("SERSIC_ELLIPSE", "SERSIC_ELLIPSE")
    assert [k["e2"] for k in scene.kwargs_lens_light] == [-0.05, -0.3]
    assert [k["R_sersic"] for k in scene.kwargs_lens_light] == [0.4, 1.5]
    assert t["lens_light_mag"] == pytest.approx(17.0, abs=1e-4)


def test_model_iv_source_is_an_image_of_magnitude_22():
    from lenstronomy.LightModel.Profiles.interpolation import Interpol

    preset = _model_iv()
    scene = draw_scene(preset, "no_sub", np.random.default_rng(4))
    assert scene.source_model_list == ("INTERPOL",)
    kwargs = scene.kwargs_source[0]
    assert kwargs["scale"] == 0.01
    assert abs(kwargs["center_x"]) <= 0.3 and abs(kwargs["center_y"]) <= 0.3
    assert -np.pi <= kwargs["phi_G"] <= np.pi
    assert scene.truth["source_mag"] == 22.0
    assert Interpol.total_flux(**{k: kwargs[k] for k in ("image", "scale", "amp")}) == \
        pytest.approx(_source_flux(preset), rel=1e-12)
    # rendered without the lens, finely sampled (the adaptive refinement traces the
    # bright pixels at 10 x 10): the flux is magnitude 22 at the zero point
    flat = preset.replace(theta_e=1e-8, shear_strength=0.0, lens_light=False,
                          supersampling=2, adaptive_supersampling=10)
    renderer = get_renderer(flat, 64)
    fluxes = [renderer.render(draw_scene(flat, "no_sub", np.random.default_rng(s))).sum()
              for s in range(8)]
    np.testing.assert_allclose(np.array(fluxes) / _source_flux(preset), 1.0, atol=0.02)


def test_model_iv_source_renders_the_cutout_itself():
    """No lens, 0.01"/px pixels on the source pixels, phi_G = 0: the image is the
    background-subtracted cutout, not mirrored, scaled to magnitude 22."""
    from lensenhance.data import hsc_sources
    from lensenhance.simulate.physics import source_background

    preset = _model_iv(pixel_scale=0.01, psf_fwhm=1e-4, theta_e=1e-8, shear_strength=0.0,
                       lens_light=False, source_angle=0.0, source_offset_max=0.0)
    scene = draw_scene(preset, "no_sub", np.random.default_rng(0))
    cube, names = hsc_sources()
    cutout = cube[scene.truth["source_index"]].astype(float)
    assert scene.truth["source_name"] == names[scene.truth["source_index"]]
    cutout -= source_background(cutout)
    expected = _source_flux(preset) * cutout / cutout.sum()
    image = get_renderer(preset, 64).render(scene)
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert not np.allclose(image, expected[:, ::-1], atol=0.01 * expected.max())


def test_model_iv_source_index_is_uniform_over_the_sample():
    preset = _model_iv()
    from lensenhance.simulate.physics import source_images

    images, names = source_images(None)
    assert len(images) == len(names) == 24
    indices = []
    for seed in range(40):
        scene = draw_scene(preset, "no_sub", np.random.default_rng(seed))
        index = scene.truth["source_index"]
        assert scene.kwargs_source[0]["image"] is images[index]
        assert scene.truth["source_name"] == names[index]
        indices.append(index)
    assert min(indices) >= 0 and max(indices) < 24
    assert len(set(indices)) >= 12  # 40 uniform draws from 24 give about 19 distinct
    # a Sersic preset records no galaxy image
    truth = draw_scene(PRESETS["deeplense_model_ii"], "no_sub", np.random.default_rng(0)).truth
    assert truth["source_index"] == -1 and truth["source_name"] == ""


def test_renderer_follows_the_interpol_image_of_each_scene():
    """lenstronomy's Interpol keeps the first image's interpolator: the renderer, which
    shares one LightModel between scenes, must not render scene b with scene a's galaxy."""
    from lensenhance.simulate.render import Renderer

    preset = _model_iv()
    a = draw_scene(preset, "no_sub", np.random.default_rng(0))
    b = next(s for s in (draw_scene(preset, "no_sub", np.random.default_rng(seed))
                         for seed in range(1, 50))
             if s.truth["source_index"] != a.truth["source_index"])
    shared = Renderer(preset, 64)
    first, second = shared.render(a), shared.render(b)
    np.testing.assert_allclose(second, Renderer(preset, 64).render(b), rtol=1e-10)
    np.testing.assert_allclose(shared.render(a), first, rtol=1e-10)
    assert not np.allclose(first, second)


def test_model_iv_takes_a_folder_of_cutouts(tmp_path):
    from astropy.io import fits

    y, x = np.mgrid[:16, :16] - 7.5
    shapes = {"a": (1.0, 3.0), "b": (3.0, 1.0), "c": (2.0, 2.0)}
    for name, (sx, sy) in shapes.items():
        image = np.exp(-0.5 * ((x / sx) ** 2 + (y / sy) ** 2)).astype(np.float32)
        fits.PrimaryHDU(image).writeto(tmp_path / f"{name}.fits")
    preset = _model_iv(source_images=tmp_path)
    assert preset.source_images == str(tmp_path) and hash(preset)
    arrays, truths = simulate_block(preset, "image", ["no_sub", "cdm", "axion"] * 4,
                                    list(range(12)), None)
    assert {t["source_name"] for t in truths} == {"a", "b", "c"}
    assert np.all(np.isfinite(arrays["image"])) and arrays["image"].shape == (12, 64, 64)
    scene = draw_scene(preset, "no_sub", np.random.default_rng(0))
    kwargs = scene.kwargs_source[0]
    sx, sy = shapes[scene.truth["source_name"]]
    assert kwargs["image"].shape == (16, 16)
    assert kwargs["amp"] * kwargs["image"].sum() * 0.01**2 == pytest.approx(
        _source_flux(preset), rel=1e-12)
    with pytest.raises(ValueError, match="no \\*.fits"):
        draw_scene(_model_iv(source_images=tmp_path / "empty"), "no_sub",
                   np.random.default_rng(0))


def test_model_iv_sub_chi2_and_refit():
    preset = _model_iv()
    _, truths = simulate_block(preset, "image", ["no_sub", "cdm", "cdm"], [0, 1, 2], None,
                               refit=True)
    assert truths[0]["sub_chi2"] == 0 and truths[0]["sub_chi2_refit"] == 0
    for t in truths[1:]:
        assert t["sub_chi2"] > 25  # 25 subhalos of 1e6-1e10 Msun on the arcs
        assert 0 < t["sub_chi2_refit"] <= t["sub_chi2"]


def test_refit_of_an_interpol_source_fits_lens_amp_and_centre():
    from lensenhance.simulate.detectability import _refit_parameters

    preset = _model_iv()
    scene = draw_scene(preset, "no_sub", np.random.default_rng(5))
    assert [k for w, _, k in _refit_parameters(scene) if w == "source"] == \
        ["amp", "center_x", "center_y"]
    truth, best = _refit_from_a_perturbed_start(preset)
    assert best.kwargs_source[0]["image"] is truth.kwargs_source[0]["image"]


def test_simulate_command_records_detectability(tmp_path):
    from astropy.table import Table
    from click.testing import CliRunner

    from lensenhance.cli import cli

    result = CliRunner().invoke(cli, ["-q", "simulate", "--preset", "deeplense_model_ii",
                                      "--substructure", "all", "-n", "3", "--refit",
                                      "--out", str(tmp_path / "sims")])
    assert result.exit_code == 0, result.output
    table = Table.read(tmp_path / "sims" / "catalog.ecsv")
    rows = {row["substructure"]: row for row in table}
    assert rows["no_sub"]["sub_chi2"] == 0 and rows["no_sub"]["sub_chi2_refit"] == 0
    for name in ("cdm", "axion"):
        assert rows[name]["sub_chi2"] > 25
        assert 0 < rows[name]["sub_chi2_refit"] <= rows[name]["sub_chi2"]
