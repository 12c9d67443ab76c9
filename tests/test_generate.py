"""Tests of the Generator, the DDPM training task and the generate command."""

import json

import numpy as np
import pytest
import torch
from astropy.io import fits
from click.testing import CliRunner
from conftest import TINY_UNET

from lensenhance.cli import cli
from lensenhance.generate import Generator, generate_to_disk, to_ccddata
from lensenhance.training.diffusion import train_ddpm

torch.set_num_threads(1)


@pytest.fixture()
def tiny_run(tiny_ddpm):
    return tiny_ddpm


@pytest.fixture()
def generator(tiny_run):
    return Generator.from_weights(tiny_run[0] / "weights.safetensors", name="tiny")


def test_training_records_schedule_scaling_and_history(tiny_run):
    out, history = tiny_run
    from lensenhance.nn.weights import read_weights_metadata

    meta = {k: json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
            for k, v in read_weights_metadata(out / "weights.safetensors").items()}
    assert meta["task"] == "generate"
    assert meta["schedule"]["parameterization"] == "v"
    assert meta["scaling"]["kind"] == "asinh"
    assert meta["classes"] == ["no_sub", "cdm", "axion"]
    assert history["step"] == 3 and [v["step"] for v in history["val"]] == [2, 3]
    assert all(np.isfinite(v["val_loss"]) for v in history["val"])


def test_resume_refuses_a_changed_configuration(tiny_run):
    out, _ = tiny_run
    with pytest.raises(ValueError, match=r"lr: 0.0002 -> 0.001"):
        train_ddpm(out_dir=out, n_train=6, n_val=3, steps=3, batch_size=2, lr=1e-3,
                   unet=TINY_UNET, resume=True, progress=False)


def test_generate_returns_images_in_the_data_unit_with_attrs_and_wcs(generator):
    images = generator.generate(4, steps=3, seed=0, progress=False)
    assert images.dims == ("image", "y", "x") and images.shape == (4, 64, 64)
    assert images.dtype == np.float32 and np.all(np.isfinite(images.values))
    assert images.attrs["unit"] == "electron / s"
    assert images.attrs["pixel_scale"] == pytest.approx(0.101)
    assert images.attrs["preset"] == "model_ii"
    assert (images.attrs["sampler"], images.attrs["steps"], images.attrs["seed"]) == \
        ("ddim", 3, 0)
    assert images["substructure"].values.tolist() == ["no_sub", "cdm", "axion", "no_sub"]
    ccds = to_ccddata(images)
    assert len(ccds) == 4 and str(ccds[0].unit) == "electron / s"
    assert ccds[0].wcs.wcs.ctype[0] == "RA---TAN"
    assert abs(ccds[0].wcs.wcs.cdelt[1] * 3600 - 0.101) < 1e-9
    assert ccds[1].meta["substructure"] == "cdm"


def test_same_seed_same_images_whatever_the_batch(generator):
    a = generator.generate(3, steps=3, seed=5, progress=False, batch_size=3)
    b = generator.generate(3, steps=3, seed=5, progress=False, batch_size=1)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-6)
    tail = generator.generate(1, steps=3, seed=5, progress=False, start=2)
    np.testing.assert_allclose(tail.values[0], a.values[2], rtol=1e-5, atol=1e-6)
    assert tail["substructure"].values.tolist() == ["axion"]
    c = generator.generate(3, steps=3, seed=6, progress=False)
    assert not np.allclose(a.values, c.values)


@pytest.mark.parametrize("sampler", ["ddpm", "dpm"])
def test_samplers_and_guidance_run(generator, sampler):
    images = generator.generate(2, steps=3, sampler=sampler, seed=1, substructure="cdm",
                                guidance=2.0, progress=False)
    assert images["substructure"].values.tolist() == ["cdm", "cdm"]
    assert images.attrs["guidance"] == 2.0


def test_bad_arguments(generator):
    with pytest.raises(ValueError, match="substructure class 'wdm'"):
        generator.generate(1, steps=2, substructure="wdm", progress=False)
    with pytest.raises(ValueError, match="sampler"):
        generator.generate(1, steps=2, sampler="euler", progress=False)
    with pytest.raises(ValueError, match="n must"):
        generator.generate(0, progress=False)
    with pytest.raises(ValueError, match="unknown device"):
        Generator(generator.model, schedule=generator.schedule, scaling=generator.scaling,
                  device="gpu7")
    assert "Generator('tiny'" in repr(generator)


@pytest.mark.parametrize("guidance", [-1.0, 10.5, 300, 1e6, float("nan"), float("inf")])
def test_guidance_outside_its_range_is_refused(generator, guidance, tmp_path):
    from lensenhance.generate.generator import MAX_GUIDANCE

    with pytest.raises(ValueError, match=f"between 0 and {MAX_GUIDANCE:g}"):
        generator.generate(1, steps=2, guidance=guidance, progress=False)
    with pytest.raises(ValueError, match="guidance"):
        generate_to_disk(tmp_path / "g", generator, 1, steps=2, guidance=guidance,
                         progress=False)
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())
    with pytest.raises(TypeError, match="guidance"):
        generator.generate(1, steps=2, guidance="strong", progress=False)


def test_guidance_on_the_command_line_is_bounded(tiny_run, tmp_path):
    weights = str(tiny_run[0] / "weights.safetensors")
    for value in ["300", "-1"]:
        result = CliRunner().invoke(cli, ["-q", "generate", "-n", "1", "--model", weights,
                                          "--out", str(tmp_path / "g"), "--steps", "2",
                                          "--guidance", value])
        assert result.exit_code == 2 and "--guidance" in result.output
        assert "Traceback" not in result.output and not (tmp_path / "g").exists()


def test_an_image_with_a_non_finite_pixel_is_never_written(generator, tmp_path,
                                                           monkeypatch):
    original = generator.sample_scaled

    def poisoned(n, **kwargs):
        out = original(n, **kwargs)
        if kwargs.get("start", 0) <= 1 < kwargs.get("start", 0) + n:
            out[1 - kwargs.get("start", 0), 3, 3] = np.inf
        return out

    monkeypatch.setattr(generator, "sample_scaled", poisoned)
    out = tmp_path / "g"
    with pytest.raises(FloatingPointError, match="image 1 .* non-finite"):
        generate_to_disk(out, generator, 3, steps=2, seed=0, batch_size=1, progress=False)
    assert (out / "lens_00000.fits").is_file() and not (out / "lens_00001.fits").exists()
    assert not list(out.glob(".tmp-*"))


def test_generate_to_disk_resumes_and_refuses_other_settings(generator, tmp_path):
    out = tmp_path / "gen"
    first = generate_to_disk(out, generator, 3, steps=2, seed=4, batch_size=2,
                             progress=False, gif=True)
    assert len(first["written"]) == 3 and first["gif"].is_file()
    reference = fits.getdata(out / "lens_00001.fits").copy()
    (out / "lens_00001.fits").unlink()
    # What a killed writer leaves: removed by the next run, which holds the folder's lock.
    (out / ".tmp-0123abcd-lens_00001.fits").write_bytes(b"partial")
    again = generate_to_disk(out, generator, 4, steps=2, batch_size=2, progress=False)
    assert not list(out.glob(".tmp-*"))
    assert [p.name for p in again["written"]] == ["lens_00001.fits", "lens_00003.fits"]
    assert again["seed"] == 4 and again["skipped"] == 2
    np.testing.assert_allclose(fits.getdata(out / "lens_00001.fits"), reference, rtol=1e-4,
                               atol=1e-6)
    from astropy.table import Table

    catalog = Table.read(out / "catalog.ecsv")
    assert len(catalog) == 4 and list(catalog["substructure"][:2]) == ["no_sub", "cdm"]
    with pytest.raises(ValueError, match="steps: 2 -> 3"):
        generate_to_disk(out, generator, 4, steps=3, progress=False)


def test_generate_command(tiny_run, tmp_path):
    weights = str(tiny_run[0] / "weights.safetensors")
    runner = CliRunner()
    result = runner.invoke(cli, ["-q", "generate", "-n", "2", "--model", weights, "--out",
                                 str(tmp_path / "g"), "--steps", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 image(s)" in result.output
    header = fits.getheader(tmp_path / "g" / "lens_00000.fits")
    assert header["BUNIT"] == "electron / s" and header["CTYPE1"] == "RA---TAN"
    result = runner.invoke(cli, ["-q", "generate", "-n", "2", "--model", weights, "--out",
                                 str(tmp_path / "g"), "--steps", "3"])
    assert result.exit_code != 0 and "another generate run" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "file").write_text("x")
    result = runner.invoke(cli, ["-q", "generate", "--model", weights, "--out",
                                 str(tmp_path / "file")])
    assert result.exit_code != 0 and "not a folder" in result.output
    result = runner.invoke(cli, ["-q", "generate", "--model", "no-such-model", "--out",
                                 str(tmp_path / "h")])
    assert result.exit_code != 0 and "no pretrained model" in result.output


@pytest.mark.slow
def test_benchmark_generate_reports_rows_floors_and_targets(tiny_run, tiny_classifier,
                                                            tmp_path):
    from lensenhance.benchmark.generate import benchmark_generate, format_generate_table

    result = benchmark_generate(
        generator=str(tiny_run[0] / "weights.safetensors"), classifier=tiny_classifier,
        n=9, n_ddpm=6, samplers=[("ddpm", 120), ("ddim", 50), ("dpm", 5)], tstr_epochs=1,
        json_path=tmp_path / "gen.json", progress=False)
    rows = {(r["sampler"], r["steps"]): r for r in result["rows"]}
    assert rows[("ddpm", 120)]["n"] == 6 and rows[("ddim", 50)]["n"] == 9
    assert set(result["floors"]) == {6, 9}
    for row in rows.values():
        assert row["fd"] > 0 and row["fd_floor"] > 0 and 0 <= row["tstr_accuracy"] <= 1
        assert row["fd_se"] > 0 and row["fd_floor_se"] > 0
        assert row["fd_ratio"] == pytest.approx(row["fd"] / row["fd_floor"])
        assert np.isfinite(row["memorisation"]["median_psnr"])
        assert set(row["fd_per_class"]) == set(row["conditional_fidelity"]) \
            == {"no_sub", "cdm", "axion"}
    assert rows[("ddim", 50)]["vs_ddpm"]["n"] == 6 and "vs_ddpm" in rows[("dpm", 5)]
    assert "fd_at_n_ddpm" in rows[("ddim", 50)]
    verdict = result["verdict"]
    assert {"fd_ratio", "kid_excess_se", "conditional_fidelity", "tstr_ratio",
            "ddim50_vs_ddpm", "dpm5_vs_ddpm", "memorised_share"} <= set(verdict)
    assert verdict["fd_ratio"]["met"] == (rows[("ddim", 50)]["fd_ratio"] <= 2.0)
    stored = json.loads((tmp_path / "gen.json").read_text())
    assert stored["n"] == 9
    table = format_generate_table(stored)  # the table regenerates from the JSON
    assert "targets (headline row ddim-50" in table and "per class" in table
    assert table.count(" met") + table.count("not met") >= 7


def test_frechet_distance_in_classifier_features_grows_with_a_shift(tiny_classifier):
    from lensenhance.benchmark.generate import _feature_distances, _features
    from lensenhance.nn.weights import load_weights

    net = load_weights(tiny_classifier)
    rng = np.random.default_rng(1)
    # More images than feature dimensions (32), so the covariances are not singular.
    images = rng.gamma(1.0, 0.05, size=(200, 64, 64)).astype(np.float32)
    features = _features(net, images)
    same = _feature_distances(features, features, seed=0)
    assert same["fd"] == pytest.approx(0, abs=1e-6)
    distances = [_feature_distances(features, _features(net, images + shift), seed=0)["fd"]
                 for shift in (0.001, 0.005, 0.02)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_a_smaller_field_is_zero_padded_to_the_classifiers(tiny_classifier):
    from lensenhance.benchmark.generate import _features, _on_classifier_grid
    from lensenhance.nn.weights import load_weights

    net = load_weights(tiny_classifier)  # trained on 64x64
    images = np.random.default_rng(0).gamma(1.0, 0.05, size=(3, 48, 48)).astype(np.float32)
    padded = _on_classifier_grid(net, images)
    assert padded.shape == (3, 64, 64)
    np.testing.assert_array_equal(padded[:, 8:56, 8:56], images)
    assert padded.sum() == pytest.approx(images.sum())
    np.testing.assert_array_equal(_features(net, images), _features(net, padded))
    for shape in ((3, 80, 80), (3, 47, 47)):
        with pytest.raises(ValueError, match="do not fit centred"):
            _on_classifier_grid(net, np.zeros(shape, np.float32))


@pytest.mark.slow
def test_model_i_classifier_reads_a_padded_128px_field_as_the_whole_field():
    """The chain's benchmark zero-pads a 128 px Model I field to the shipped classifier's
    150 px: it must then read each image as it reads the whole field."""
    import lensenhance as le
    from lensenhance.benchmark.generate import _on_classifier_grid
    from lensenhance.training.data import generation_images

    classifier = le.LensClassifier.from_pretrained("lens-classifier-deeplense-i")
    common = dict(preset="deeplense_model_i", seed=5, truth=False, progress=False)
    whole, labels, _ = generation_images(60, **common)
    crop, crop_labels, _ = generation_images(60, num_pix=128, **common)
    np.testing.assert_array_equal(labels, crop_labels)
    np.testing.assert_allclose(crop, whole[:, 11:139, 11:139], atol=1e-6)  # the same field
    with pytest.raises(ValueError, match="trained on 150x150"):
        classifier.predict(crop)
    padded = classifier.predict(_on_classifier_grid(classifier.network, crop))
    assert np.mean(padded == classifier.predict(whole)) >= 0.95


def test_chained_enhancer_gives_the_finer_pixel_scale(generator):
    from lensenhance.enhance import Enhancer

    plain = generator.generate(2, steps=2, seed=3, progress=False)
    fine = generator.generate(2, steps=2, seed=3, progress=False,
                              enhancer=Enhancer.interpolation("bicubic", scale=2))
    assert fine.shape == (2, 128, 128)
    assert fine.attrs["pixel_scale"] == pytest.approx(plain.attrs["pixel_scale"] / 2)
    assert fine.attrs["generated_pixel_scale"] == pytest.approx(0.101)
    # Flux per pixel is split over the new pixels: the total is kept.
    np.testing.assert_allclose(fine.values.sum(axis=(1, 2)), plain.values.sum(axis=(1, 2)),
                               rtol=0.02)
    ccd = to_ccddata(fine)[0]
    assert abs(ccd.wcs.wcs.cdelt[1] * 3600 - 0.0505) < 1e-9 or \
        abs(abs(ccd.wcs.pixel_scale_matrix[1, 1]) * 3600 - 0.0505) < 1e-9


# ----------------------------------------------------------------------------- shipped


@pytest.mark.parametrize("name", ["ddpm-lens64", "ddpm-deeplense-ii",
                                  "ddpm-deeplense-i-chain"])
def test_shipped_generator_loads_offline_and_generates_in_a_few_steps(name):
    import lensenhance as le

    card = le.model_card(name)
    assert card["task"] == "generate" and card["metrics"]["n"] > 0
    gen = le.Generator.from_pretrained(name)
    images = gen.generate(3, steps=4, seed=0, progress=False)
    assert images.shape == (3, card["image_size"], card["image_size"])
    assert np.all(np.isfinite(images.values)) and images.attrs["unit"] == card["unit"]
    assert images.attrs["weights_sha256"] == card["sha256"]
    enhancer = card["metrics"].get("enhancer")
    if enhancer:  # the chain it was measured through: the preset's own grid
        fine = gen.generate(1, steps=4, seed=0, progress=False, enhancer=enhancer)
        assert fine.shape[1:] == (card["data_num_pix"],) * 2
        assert fine.attrs["pixel_scale"] == pytest.approx(card["pixel_scale"] / card["binned"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpm-deeplense-ii", "ddpm-deeplense-i-chain"])
def test_shipped_deeplense_generator_draws_the_class_asked_for_as_its_card_says(name):
    """The substructure classifier's accuracy on 24 no_sub and 24 axion images (DDIM-50,
    through the chain the card was measured with) within 3 binomial sigma of the card's
    conditional fidelity."""
    import lensenhance as le
    from lensenhance.benchmark.generate import _on_classifier_grid

    card = le.model_card(name)
    classifier = le.LensClassifier.from_pretrained(card["metrics"]["classifier"])
    real = card["metrics"]["real_accuracy_per_class"]
    gen = le.Generator.from_pretrained(name)
    for cls in ("no_sub", "axion"):
        images = gen.generate(24, steps=50, seed=1, substructure=cls, progress=False,
                              enhancer=card["metrics"].get("enhancer"))
        field = _on_classifier_grid(classifier.network, images.values)  # as benchmarked
        accuracy = float(np.mean(classifier.predict(field) == cls))
        expected = card["metrics"]["conditional_fidelity"][cls] * real[cls]
        assert abs(accuracy - expected) <= 3 * np.sqrt(expected * (1 - expected) / 24) + 0.05


@pytest.mark.parametrize("name, preset, on_preset_grid",
                         [("edsr-lens64-x2", "model_ii", True),
                          ("edsr-deeplense-i-x2", "deeplense_model_i", False)])
def test_shipped_generator_chain_model(name, preset, on_preset_grid):
    import lensenhance as le
    from lensenhance.evaluate.metrics import image_metrics
    from lensenhance.training.data import load_pairs

    card = le.model_card(name)
    assert card["noise_free_lr"] and card["preset"] == preset
    assert card.get("lr_on_preset_grid", False) == on_preset_grid
    # A small fixed held-out set: the model must beat bicubic as its card says it does.
    lr, hr = load_pairs("simulate", scale=2, n=3, preset=preset, seed=987654,
                        progress=False, lr_on_preset_grid=on_preset_grid, noise_free_lr=True)
    # Noise-free images: no cosmic-ray search (as in a generator's chain).
    sr = le.Enhancer.from_pretrained(name, cosmic_rays=False).enhance(lr)
    bicubic = le.Enhancer.interpolation("bicubic", scale=2, cosmic_rays=False).enhance(lr)
    psnr = np.mean([image_metrics(p, t)["psnr"] for p, t in zip(sr, hr)])
    psnr_bicubic = np.mean([image_metrics(p, t)["psnr"] for p, t in zip(bicubic, hr)])
    assert psnr > psnr_bicubic + 0.5 * (card["metrics"]["psnr"] - card["metrics"]["bicubic_psnr"])


@pytest.mark.slow
def test_a_tiny_model_of_two_trivially_different_classes_generates_each_on_request(tmp_path):
    """Conditioning works end to end: dark images for class 0, bright ones for class 1."""
    from lensenhance.diffusion import NoiseSchedule
    from lensenhance.nn.unet import DiffusionUNet
    from lensenhance.predict.normalization import AsinhScaling
    from lensenhance.training import train
    from lensenhance.training.data import ArrayImageSource
    from lensenhance.training.diffusion import DiffusionTask

    rng = np.random.default_rng(0)
    labels = np.arange(64) % 2
    images = (np.where(labels == 1, 0.5, -0.5)[:, None, None]
              + 0.05 * rng.standard_normal((64, 16, 16))).astype(np.float32)
    schedule = NoiseSchedule(parameterization="v")
    torch.manual_seed(0)
    net = DiffusionUNet(sample_size=16, n_classes=2, **TINY_UNET)
    task = DiffusionTask(ArrayImageSource(images, labels), schedule=schedule, n_classes=2,
                         label_dropout=0.1)
    train(net, task, steps=150, out_dir=tmp_path, batch_size=16, lr=3e-3, ema_decay=0.9,
          val_every=1000, checkpoint_every=1000, progress=False)
    generator = Generator(net.eval(), schedule=schedule,
                          scaling=AsinhScaling(softening=0.01, maximum=20.0),
                          classes=["dark", "bright"], image_size=16)
    for guidance in (None, 2.0):
        scaled = {name: generator.sample_scaled(
            4, steps=10, seed=1, guidance=guidance, progress=False,
            labels=np.full(4, k)).mean(axis=(1, 2)) for k, name in enumerate(generator.classes)}
        assert np.all(scaled["dark"] < -0.2) and np.all(scaled["bright"] > 0.2), scaled
    images = generator.generate(2, steps=10, seed=1, substructure="bright", progress=False)
    assert images["substructure"].values.tolist() == ["bright", "bright"]


def test_binned_generation_images_are_the_unbinned_field_summed_over_blocks():
    from lensenhance.simulate.render import bin_image
    from lensenhance.training.data import generation_images

    options = dict(preset="deeplense_model_i", seed=4, num_pix=32, progress=False,
                   truth=False)
    fine, labels, attrs = generation_images(3, **options)
    coarse, coarse_labels, coarse_attrs = generation_images(3, binned=2, **options)
    assert fine.shape == (3, 32, 32) and coarse.shape == (3, 16, 16)
    np.testing.assert_allclose(coarse, bin_image(fine, 2), rtol=1e-6)
    np.testing.assert_array_equal(labels, coarse_labels)
    assert coarse_attrs["pixel_scale"] == pytest.approx(2 * attrs["pixel_scale"]) \
        == pytest.approx(0.1)


def test_benchmark_generate_measures_a_binned_generator_through_its_chain(tiny_classifier,
                                                                         tmp_path):
    """A generator of 2x2-binned images, chained with a x2 model, is judged against the
    unbinned simulated images; a x4 model is refused."""
    from lensenhance.benchmark.generate import benchmark_generate, format_generate_table
    from lensenhance.enhance import Enhancer

    out = tmp_path / "run"
    train_ddpm(out_dir=out, preset="deeplense_model_i", num_pix=32, binned=2, n_train=6,
               n_val=3, steps=2, batch_size=2, checkpoint_every=2, val_every=2,
               unet=TINY_UNET, progress=False, metadata={"command": "test"})
    generator = Generator.from_weights(out / "weights.safetensors", name="tiny-binned")
    assert int(generator.model.metadata["binned"]) == 2 and generator.image_size == 16
    with pytest.raises(ValueError, match="binned by 2"):
        benchmark_generate(generator=generator, classifier=tiny_classifier, n=6,
                           enhancer=Enhancer.interpolation("bicubic", scale=4),
                           progress=False)
    result = benchmark_generate(
        generator=generator, classifier=tiny_classifier, n=6, samplers=[("ddim", 3)],
        tstr_epochs=1, enhancer=Enhancer.interpolation("bicubic", scale=2),
        cache_dir=tmp_path / "cache", progress=False)
    assert result["reference_grid"] == {"num_pix": 32, "binned": 1}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir())[0].startswith(
        "deeplense_model_i-num_pix32-seed")
    row = result["rows"][0]
    assert row["fd"] > 0 and np.isfinite(row["memorisation"]["median_psnr"])
    # The chain with a perfect generator: simulated images binned and taken back.
    chain = result["chain_floor"]
    assert chain["n"] == 6 and chain["binned"] == 2 and chain["enhancer"] == "bicubic"
    assert 0 < chain["fd"] and set(chain["accuracy_per_class"]) == {"no_sub", "cdm", "axion"}
    table = format_generate_table(result)
    assert "-> bicubic" in table.splitlines()[0]
    assert "taken back by bicubic" in table and "  simulated accuracy" in table
