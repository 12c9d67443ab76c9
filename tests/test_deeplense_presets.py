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
    from lensenhance.simulate.render import noise_sigma

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


def test_refit_recovers_a_smooth_scene():
    preset = PRESETS["deeplense_model_ii"]
    renderer = get_renderer(preset, preset.num_pix)
    truth = draw_scene(preset, "no_sub", np.random.default_rng(5))
    image = renderer.render(truth)
    sigma = np.full(image.shape, 0.01)
    start = truth.smooth()
    start.kwargs_lens = [dict(k) for k in start.kwargs_lens]
    start.kwargs_source = [dict(k) for k in start.kwargs_source]
    start.kwargs_lens[0]["theta_E"] *= 1.02
    start.kwargs_source[0]["center_x"] += 0.02
    chi2, best = refit_smooth(start, image, sigma, renderer.render, max_nfev=400)
    assert chi2 < 1.0  # the smooth model reproduces a smooth image
    assert best.kwargs_lens[0]["theta_E"] == pytest.approx(truth.kwargs_lens[0]["theta_E"],
                                                           abs=2e-3)
    assert best.kwargs_source[0]["center_x"] == pytest.approx(
        truth.kwargs_source[0]["center_x"], abs=2e-3)
