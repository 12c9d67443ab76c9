"""Tests of lensenhance.predict.tiling and .predictors: tiles equal the whole image."""

import numpy as np
import pytest
import torch

from lensenhance.nn import build_sr_model
from lensenhance.predict.predictors import (
    NetworkPredictor,
    Prediction,
    Predictor,
    count_receptive_field,
    position_noise,
)
from lensenhance.predict.tiling import (
    check_tiling,
    measure_receptive_field,
    plan_tiles,
    predict_images,
)

TINY = {"edsr": {"n_blocks": 2, "channels": 8}, "rdn": {"n_blocks": 2, "n_layers": 2,
        "growth": 4, "channels": 8}, "srresnet": {"n_blocks": 2, "channels": 8},
        "fsrcnn": {"channels": 8, "shrink_channels": 4, "n_mapping": 2},
        "rcan": {"n_groups": 1, "n_blocks": 2, "channels": 8, "reduction": 4}}


def tiny(name, scale=2):
    torch.manual_seed(0)
    return build_sr_model(name, scale=scale, **TINY[name]).eval()


def run(predictor, image, *, tile_size, overlap=0, sigma=None, parallel=False, halo=None):
    s = predictor.scale
    shape = (image.shape[0] * s, image.shape[1] * s)
    out = {"mean": np.zeros(shape, np.float32),
           "std": None if sigma is None else np.zeros(shape, np.float32)}
    predict_images(predictor, [image], sigmas=None if sigma is None else [sigma],
                   outputs=[out], tile_size=tile_size, overlap=overlap, parallel=parallel,
                   halo=halo, batch_size=3)
    return out


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).normal(size=(44, 37)).astype(np.float32)


@pytest.mark.parametrize("name", ["edsr", "rdn", "srresnet", "fsrcnn"])
def test_counted_receptive_field_bounds_the_measured_one(name):
    predictor = NetworkPredictor(tiny(name), scale=2)
    assert predictor.exact_tiling
    measured = measure_receptive_field(predictor)
    assert measured <= predictor.halo <= measured + 4


def test_rcan_is_not_exact_and_its_response_fills_the_probe():
    predictor = NetworkPredictor(tiny("rcan"), scale=2)
    assert not predictor.exact_tiling
    assert measure_receptive_field(predictor, size=40) > 18  # the channel attention


@pytest.mark.parametrize("name,overlap", [("edsr", 0), ("edsr", 6), ("fsrcnn", 3),
                                          ("rdn", 0)])
def test_tiled_equals_whole_for_exact_networks(image, name, overlap):
    predictor = NetworkPredictor(tiny(name), scale=2)
    whole = run(predictor, image, tile_size=None)["mean"]
    tiled = run(predictor, image, tile_size=2 * predictor.halo + overlap + 9,
                overlap=overlap)["mean"]
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max())


def test_too_small_a_halo_is_not_exact(image):
    predictor = NetworkPredictor(tiny("edsr"), scale=2)
    whole = run(predictor, image, tile_size=None)["mean"]
    tiled = run(predictor, image, tile_size=24, halo=1)["mean"]
    assert np.abs(tiled - whole).max() > 1e-4


def test_rcan_seams_are_small(image):
    predictor = NetworkPredictor(tiny("rcan"), scale=2)
    whole = run(predictor, image, tile_size=None)["mean"]
    tiled = run(predictor, image, tile_size=2 * predictor.halo + 30, overlap=8)["mean"]
    assert np.abs(tiled - whole).max() < 0.05 * np.abs(whole).std()


def test_uncertainty_tiled_equals_whole_and_does_not_depend_on_batching(image):
    predictor = NetworkPredictor(tiny("edsr"), scale=2, n_draws=2)
    sigma = np.full(image.shape, 0.3, np.float32)
    whole = run(predictor, image, tile_size=None, sigma=sigma)
    tiled = run(predictor, image, tile_size=2 * predictor.halo + 14, sigma=sigma)
    threads = run(predictor, image, tile_size=2 * predictor.halo + 14, sigma=sigma,
                  parallel=2)
    np.testing.assert_allclose(tiled["std"], whole["std"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(threads["std"], tiled["std"])
    assert 0.05 < whole["std"].mean() < 1


def test_position_noise_is_keyed_to_pixels():
    a = position_noise(3, 0, 10, 20, 100, 90, 2)
    b = position_noise(3, 0, 60, 70, 30, 20, 2)
    np.testing.assert_array_equal(a[:, 50:80, 50:70], b)
    assert not np.array_equal(position_noise(4, 0, 10, 20, 5, 5, 1), a[:1, :5, :5])


class FakePosterior(Predictor):
    """A predictor with std and samples, keyed to positions, like a diffusion posterior."""

    scale, halo, exact_tiling, n_samples = 2, 2, True, 3
    uncertainty_type = "fake posterior spread"

    def gives_std(self, with_sigma):
        return True

    def predict(self, x, *, sigma=None, seed=0, origins=None):
        mean = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        noise = np.stack([position_noise(seed, k, 2 * y0, 2 * x0, *mean.shape[-2:], 3)
                          for k, y0, x0 in origins], axis=1)
        samples = mean[None] + torch.from_numpy(noise)[:, :, None]
        return Prediction(mean, std=torch.ones_like(mean), samples=samples)


def test_tiler_blends_std_and_samples(image):
    predictor = FakePosterior()
    outs = []
    for tile_size, overlap in ((None, 0), (20, 4)):
        out = {"mean": np.zeros((88, 74), np.float32), "std": np.zeros((88, 74)),
               "samples": np.zeros((3, 88, 74), np.float32)}
        predict_images(predictor, [image], outputs=[out], tile_size=tile_size,
                       overlap=overlap)
        outs.append(out)
    np.testing.assert_allclose(outs[1]["mean"], outs[0]["mean"], atol=1e-6)
    np.testing.assert_allclose(outs[1]["std"], 1.0, atol=1e-6)
    np.testing.assert_allclose(outs[1]["samples"], outs[0]["samples"], atol=1e-5)


def test_plan_covers_every_pixel_once_with_weights_summing_to_one():
    total = np.zeros((2 * 97, 2 * 61))
    for tile in plan_tiles((97, 61), tile_size=30, halo=5, overlap=6):
        (uy0, uy1), (ux0, ux1) = tile.used
        w = tile.weights(2)
        total[2 * uy0:2 * uy1, 2 * ux0:2 * ux1] += 1 if w is None else w
        assert tile.shape[0] <= 30 and tile.shape[1] <= 30
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("n", [97, 300, 1031])
@pytest.mark.parametrize("align", [1, 4, 8])
def test_every_tile_of_an_image_has_one_shape_and_reads_its_halo(n, align):
    # one shape per image: torch caches oneDNN kernels per input shape, never freeing them
    tiles = plan_tiles((n, n - 7), tile_size=64, halo=9, overlap=4, align=align)
    assert len(tiles) > 4 and len({tile.shape for tile in tiles}) == 1
    for tile in tiles:
        for (r0, r1), (u0, u1), size in zip(tile.read, tile.used, (n, n - 7)):
            assert r0 % align == 0 and 0 <= r0 and r1 <= size
            assert r0 <= max(0, u0 - 9) and r1 >= min(size, u1 + 9)


@pytest.mark.parametrize("tile_size,halo,overlap,match", [
    (10, 5, 0, "too small"), (20, 3, 20, "overlap"), (0, 1, 0, "tile_size"),
    (32, -1, 0, "halo"), (32, 2, 1.5, "overlap")])
def test_bad_tiling_options(tile_size, halo, overlap, match):
    with pytest.raises(ValueError, match=match):
        check_tiling(tile_size, halo, overlap)


def test_count_receptive_field_of_a_plain_conv_stack():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 5, padding=2),
                              torch.nn.Conv2d(2, 1, 3, padding=2, dilation=2))
    assert count_receptive_field(net) == 4


def test_release_mapped_pages_keeps_what_was_written(tmp_path):
    from lensenhance.predict.scratch import release_mapped_pages

    path = tmp_path / "out.dat"
    mapped = np.memmap(path, dtype=np.float32, mode="w+", shape=(256, 512))
    values = np.arange(mapped.size, dtype=np.float32).reshape(mapped.shape)
    mapped[:] = values
    plain = values.copy()
    release_mapped_pages(mapped, plain, None)
    np.testing.assert_array_equal(mapped, values)  # read back from the page cache
    mapped[:10] += 1  # and still writable
    mapped.flush()
    on_disk = np.fromfile(path, dtype=np.float32).reshape(mapped.shape)
    np.testing.assert_array_equal(on_disk[:10], values[:10] + 1)
    np.testing.assert_array_equal(on_disk[10:], values[10:])
    np.testing.assert_array_equal(plain, values)


def test_batch_norms_are_folded_without_changing_the_output():
    from lensenhance.nn.inference import fold_batch_norms
    from lensenhance.predict.predictors import NetworkPredictor

    torch.manual_seed(0)
    net = tiny("srresnet")
    # give the norms statistics of their own, so that folding has something to do
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 1, 24, 24))
    net.eval()
    x = torch.randn(2, 1, 20, 20)
    with torch.no_grad():
        expected = net(x)
    predictor = NetworkPredictor(net, scale=2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.module.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # a copy
    with torch.no_grad():
        torch.testing.assert_close(predictor.module(x), expected, rtol=1e-4, atol=1e-5)
    edsr = tiny("edsr").eval()
    assert fold_batch_norms(edsr) is edsr  # nothing to fold: no copy


def test_unet_tiles_start_on_its_pooling_grid_and_are_exact():
    from lensenhance.nn.raunet import RAUNet
    from lensenhance.predict.tiling import plan_tiles

    torch.manual_seed(0)
    predictor = NetworkPredictor(RAUNet(channels=(4, 8, 8), blocks=1).eval(), scale=1)
    assert predictor.tile_alignment == 4 and predictor.exact_tiling
    rng = np.random.default_rng(2)
    image = rng.normal(size=(90, 77)).astype(np.float32)
    sigma = np.full(image.shape, 0.3, np.float32)
    tile_size = 2 * predictor.halo + 11
    tiles = plan_tiles(image.shape, tile_size=tile_size, halo=predictor.halo, align=4)
    assert len(tiles) > 1 and all(t.read[0][0] % 4 == 0 and t.read[1][0] % 4 == 0
                                  for t in tiles)
    predictor.n_draws = 0  # the mean only
    whole = np.zeros(image.shape, np.float32)
    tiled = np.zeros(image.shape, np.float32)
    predict_images(predictor, [image], sigmas=[sigma], outputs=[{"mean": whole}],
                   tile_size=None)
    predict_images(predictor, [image], sigmas=[sigma], outputs=[{"mean": tiled}],
                   tile_size=tile_size)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max())


def test_alignment_must_be_a_positive_integer():
    from lensenhance.predict.tiling import plan_tiles

    with pytest.raises(ValueError, match="align must be a positive integer"):
        plan_tiles((10, 10), tile_size=8, halo=1, align=0)


@pytest.mark.parametrize("stride, kernel, padding, output_padding",
                         [(2, 9, 4, 1), (2, 4, 1, 0), (3, 9, 3, 0), (4, 8, 2, 0)])
def test_transposed_convolution_as_subpixel_is_exact(stride, kernel, padding, output_padding):
    from lensenhance.nn.inference import SubPixelTransposedConv, transposed_as_subpixel

    torch.manual_seed(stride + kernel)
    deconv = torch.nn.ConvTranspose2d(5, 2, kernel, stride=stride, padding=padding,
                                      output_padding=output_padding)
    x = torch.randn(3, 5, 11, 13)
    fast = transposed_as_subpixel(deconv)
    assert isinstance(fast, SubPixelTransposedConv)
    with torch.no_grad():
        expected = deconv(x)
        assert expected.shape[-2:] == (11 * stride, 13 * stride)
        torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)


def test_inference_copy_of_fsrcnn_is_exact_and_leaves_the_original():
    from lensenhance.nn.inference import SubPixelTransposedConv, inference_copy

    torch.manual_seed(0)
    net = tiny("fsrcnn").eval()
    x = torch.randn(2, 1, 17, 19)
    with torch.no_grad():
        expected = net(x)
        fast = inference_copy(net)
        out = fast(x.contiguous(memory_format=torch.channels_last))
    assert any(isinstance(m, SubPixelTransposedConv) for m in fast.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_inference_copy_of_rdn_reuses_buffers_and_is_exact():
    from lensenhance.nn.inference import inference_copy

    torch.manual_seed(0)
    net = tiny("rdn").eval()
    fast = inference_copy(net)
    for shape in ((2, 1, 17, 19), (1, 1, 24, 24)):  # a second shape: buffers follow it
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)),
                                       net(x), rtol=1e-4, atol=1e-5)
        assert fast.workspace == {}  # freed after each pass
    # several threads through one module (dask's parallel=2) keep their buffers apart
    from concurrent.futures import ThreadPoolExecutor

    inputs = [torch.randn(2, 1, 40, 40) for _ in range(6)]
    with torch.no_grad():
        expected = [net(x) for x in inputs]
        with ThreadPoolExecutor(3) as pool:  # grad mode is per thread
            outputs = list(pool.map(lambda x: _no_grad(fast, x), inputs))
    for out, want in zip(outputs, expected):
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    assert fast.workspace == {}
    # with gradients on, the plain concatenation: the same values
    torch.testing.assert_close(fast(inputs[0]), expected[0], rtol=1e-4, atol=1e-5)


def _no_grad(module, x):
    with torch.no_grad():
        return module(x)
