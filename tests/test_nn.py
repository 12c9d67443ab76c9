"""Tests of lensenhance.nn: SR networks, building blocks, presets, self-ensemble."""

import json

import numpy as np
import pytest
import torch

from lensenhance.nn import (
    BASELINES,
    D4,
    SR_ARCHITECTURES,
    Interpolation,
    SelfEnsemble,
    build_sr_model,
    count_parameters,
    d4_inverse,
    d4_self_ensemble,
    d4_transform,
    model_from_config,
)
from lensenhance.nn.blocks import (
    RCAB,
    ChannelAttention,
    ResidualBlock,
    ResidualDenseBlock,
    ResidualGroup,
    Upsampler,
    upsample,
)

torch.set_num_threads(1)

# Published parameter counts (single-channel versions differ by the first and last
# layer only): RCAN 15.4 M, RDN 22.1 M, SRResNet 1.5 M (x4), EDSR baseline 1.37 M (x2)
# and 1.5 M (x4), FSRCNN(56, 12, 4) 12.5 k weights.
PAPER_PARAMETERS = {
    ("rcan", 2): 15.44e6, ("rcan", 4): 15.59e6,
    ("rdn", 2): 22.12e6, ("rdn", 4): 22.27e6,
    ("srresnet", 4): 1.55e6,
    ("edsr", 2): 1.37e6, ("edsr", 4): 1.52e6,
    ("fsrcnn", 2): 12.5e3, ("fsrcnn", 4): 12.5e3,
}


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 1, 10, 7, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", SR_ARCHITECTURES + BASELINES)
def test_small_preset_shapes_and_config_round_trip(name, scale, image):
    torch.manual_seed(0)
    model = build_sr_model(name, scale=scale).eval()
    with torch.no_grad():
        out = model(image)
    assert out.shape == (2, 1, 10 * scale, 7 * scale)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # the config survives JSON and rebuilds the same network
    rebuilt = model_from_config(json.loads(json.dumps(model.config))).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(image), out)
    assert repr(model).startswith(type(model).__name__ + "(")


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", SR_ARCHITECTURES)
def test_small_presets_are_cpu_sized(name, scale):
    with torch.device("meta"):
        model = build_sr_model(name, scale=scale, preset="small")
    assert 0.2e6 <= count_parameters(model) <= 1.5e6


@pytest.mark.parametrize(("name", "scale"), sorted(PAPER_PARAMETERS))
def test_paper_presets_have_published_size(name, scale):
    with torch.device("meta"):  # no memory, no forward pass
        model = build_sr_model(name, scale=scale, preset="paper")
    assert count_parameters(model) == pytest.approx(PAPER_PARAMETERS[name, scale], rel=0.03)


def test_paper_rcan_layout():
    with torch.device("meta"):
        model = build_sr_model("rcan", preset="paper")
    assert sum(isinstance(m, ResidualGroup) for m in model.modules()) == 10
    assert sum(isinstance(m, RCAB) for m in model.modules()) == 200
    assert model.config["channels"] == 64


@pytest.mark.parametrize("name", SR_ARCHITECTURES)
def test_global_residual_adds_interpolation(name, image):
    torch.manual_seed(1)
    with_residual = build_sr_model(name, scale=2).eval()
    without = build_sr_model(name, scale=2, global_residual=None).eval()
    without.load_state_dict(with_residual.state_dict())
    with torch.no_grad():
        difference = with_residual(image) - without(image)
    torch.testing.assert_close(difference, upsample(image, 2, "bicubic"), atol=1e-5, rtol=1e-5)


def test_overrides_and_errors(image):
    model = build_sr_model("edsr", scale=2, n_blocks=2, channels=8)
    assert model.config["n_blocks"] == 2 and count_parameters(model) < 10_000
    with pytest.raises(ValueError, match="unknown SR architecture 'vdsr'"):
        build_sr_model("vdsr")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_sr_model("rcan", preset="huge")
    with pytest.raises(ValueError, match="scale"):
        build_sr_model("rdn", scale=5)
    with pytest.raises(TypeError):
        build_sr_model("rcan", n_layers=3)
    with pytest.raises(ValueError, match="takes no options"):
        build_sr_model("bicubic", channels=3)
    with pytest.raises(ValueError, match=r"\(batch, 1, y, x\)"):
        model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="architecture"):
        model_from_config({"channels": 3})


@pytest.mark.parametrize("mode", BASELINES)
def test_interpolation_baseline(mode, image):
    model = Interpolation(mode, scale=2)
    assert count_parameters(model) == 0 and not model.state_dict()
    assert model.config == {"architecture": mode, "scale": 2}
    torch.testing.assert_close(model(image), torch.nn.functional.interpolate(
        image, scale_factor=2, mode=mode, align_corners=False))
    # interpolation keeps a constant image constant (values, not flux, are interpolated)
    constant = torch.full((1, 1, 5, 5), 3.0)
    torch.testing.assert_close(model(constant), torch.full((1, 1, 10, 10), 3.0))
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        Interpolation("nearest")


@pytest.mark.parametrize(("scale", "stages"), [(2, 1), (3, 1), (4, 2), (8, 3)])
def test_upsampler_scales(scale, stages):
    up = Upsampler(4, scale, activation="prelu")
    assert up(torch.zeros(1, 4, 5, 6)).shape == (1, 4, 5 * scale, 6 * scale)
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in up) == stages


@pytest.mark.parametrize("scale", [1, 5, 6, 2.0])
def test_upsampler_rejects_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        Upsampler(4, scale)


@pytest.mark.parametrize("block", [
    ResidualBlock(8), ResidualBlock(8, batch_norm=True, activation="prelu", res_scale=0.1),
    RCAB(8, reduction=4), ResidualGroup(8, 2, reduction=4), ResidualDenseBlock(8, 4, 3),
    ChannelAttention(8, reduction=4),
])
def test_blocks_keep_shape(block):
    x = torch.randn(2, 8, 6, 5)
    assert block(x).shape == x.shape


def test_residual_block_is_identity_with_zero_branch():
    block = ResidualBlock(4, res_scale=0.5)
    torch.nn.init.zeros_(block.body[-1].weight)
    torch.nn.init.zeros_(block.body[-1].bias)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_channel_attention_only_rescales():
    attention = ChannelAttention(6, reduction=2)
    x = torch.rand(2, 6, 4, 4) + 0.1
    ratio = attention(x) / x
    # one gate in (0, 1) per image and channel, the same at every pixel
    assert torch.all((ratio > 0) & (ratio < 1))
    torch.testing.assert_close(ratio, ratio[..., :1, :1].expand_as(ratio))


def test_d4_group_elements():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    images = [d4_transform(x, k, flip) for k, flip in D4]
    assert len({(tuple(im.shape), tuple(im.flatten().tolist())) for im in images}) == 8
    for k, flip in D4:
        torch.testing.assert_close(d4_inverse(d4_transform(x, k, flip), k, flip), x)


@pytest.mark.parametrize("shape", [(2, 1, 9, 9), (1, 1, 8, 11)])
def test_self_ensemble_is_exactly_equivariant(shape):
    torch.manual_seed(2)
    model = build_sr_model("edsr", scale=2, n_blocks=2, channels=8).eval()
    # a stronger output layer, so that the network is visibly not equivariant itself
    with torch.no_grad():
        model.tail.weight.mul_(30)
    x = torch.randn(*shape)
    ensemble = SelfEnsemble(model)
    assert ensemble.scale == 2 and ensemble.config == model.config
    with torch.no_grad():
        reference = ensemble(x)
        torch.testing.assert_close(reference, d4_self_ensemble(model, x))
        broken = 0.0
        for k, flip in D4:
            transformed = d4_transform(x, k, flip)
            expected = d4_transform(reference, k, flip)
            torch.testing.assert_close(ensemble(transformed), expected, atol=1e-5, rtol=1e-5)
            plain = d4_transform(model(x), k, flip)
            broken = max(broken, float((model(transformed) - plain).abs().max()))
    assert broken > 1e-3


def test_self_ensemble_of_equivariant_map_changes_nothing():
    model = Interpolation("bilinear", scale=2)
    x = torch.randn(1, 1, 6, 6)
    torch.testing.assert_close(d4_self_ensemble(model, x), model(x), atol=1e-6, rtol=1e-6)
    with pytest.raises(TypeError):
        SelfEnsemble(lambda t: t)


def test_equivariant_fsrcnn_needs_escnn():
    try:
        import escnn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install escnn"):
            build_sr_model("efsrcnn")
    else:
        pytest.skip("escnn is installed")


def test_equivariant_fsrcnn_is_equivariant():
    pytest.importorskip("escnn")
    torch.manual_seed(3)
    model = build_sr_model("efsrcnn", scale=2, fields=2, shrink_fields=1, n_mapping=1).eval()
    x = torch.randn(1, 1, 9, 9)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 1, 18, 18)
        for k, flip in D4:
            torch.testing.assert_close(model(d4_transform(x, k, flip)),
                                       d4_transform(out, k, flip), atol=1e-4, rtol=1e-4)
    rebuilt = model_from_config(model.config)
    rebuilt.load_state_dict(model.train().state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt.eval()(x).numpy(), out.numpy(), atol=1e-5)
