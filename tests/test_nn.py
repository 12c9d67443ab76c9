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


# ----------------------------------------------------------------------------- registry

@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry's tables as copies, so that a test's registrations do not leak."""
    from lensenhance.nn import registry

    monkeypatch.setattr(registry, "_ARCHITECTURES", dict(registry._ARCHITECTURES))
    monkeypatch.setattr(registry, "_LAZY", dict(registry._LAZY))
    return registry


def test_registry_lists_every_architecture():
    from lensenhance.nn import list_architectures

    names = list_architectures()
    for name in SR_ARCHITECTURES + BASELINES + ("efsrcnn", "smallresnet", "unet"):
        assert name in names
    assert names == sorted(names)


def test_register_architecture_decorator(fresh_registry):
    from lensenhance.nn import build_model, get_architecture, register_architecture

    @register_architecture("tinytest")
    class TinyNet(torch.nn.Module):
        def __init__(self, *, in_channels=2, width=3):
            super().__init__()
            self.config = {"architecture": "tinytest", "in_channels": in_channels,
                           "width": width}
            self.conv = torch.nn.Conv2d(in_channels, width, 1)

    assert TinyNet.architecture == "tinytest" and get_architecture("tinytest") is TinyNet
    net = build_model("tinytest", width=4)
    assert net.conv.out_channels == 4
    assert type(model_from_config(net.config)) is TinyNet
    with pytest.raises(TypeError, match="tinytest"):
        build_model("tinytest", no_such_option=1)
    # registering the same class again is harmless; another class needs overwrite=True
    register_architecture("tinytest")(TinyNet)
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("tinytest")(torch.nn.Identity)
    register_architecture("tinytest", overwrite=True)(torch.nn.Identity)
    assert get_architecture("tinytest") is torch.nn.Identity
    with pytest.raises(ValueError, match="being registered as 'other'"):
        register_architecture("other")(type(build_sr_model("edsr", n_blocks=1, channels=4)))


def test_lazy_entry_is_imported_on_first_use(fresh_registry, tmp_path, monkeypatch):
    module = tmp_path / "lensenhance_lazy_test_module.py"
    module.write_text("import torch\n\n"
                      "class LazyNet(torch.nn.Module):\n"
                      "    def __init__(self, *, k=1):\n"
                      "        super().__init__()\n"
                      "        self.config = {'architecture': 'lazytest', 'k': k}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys

    fresh_registry.register_lazy_architecture("lazytest",
                                              "lensenhance_lazy_test_module:LazyNet")
    assert "lazytest" in fresh_registry.list_architectures()
    assert "lensenhance_lazy_test_module" not in sys.modules
    net = fresh_registry.build_model("lazytest", k=3)
    assert "lensenhance_lazy_test_module" in sys.modules
    assert type(net).__name__ == "LazyNet" and net.config["k"] == 3
    monkeypatch.delitem(sys.modules, "lensenhance_lazy_test_module")
    with pytest.raises(ValueError, match="module:Class"):
        fresh_registry.register_lazy_architecture("badlazy", "no_colon_here")
    fresh_registry.register_lazy_architecture("missinglazy", "lensenhance_no_such_module:X")
    with pytest.raises(ImportError):
        fresh_registry.build_model("missinglazy")


def test_unknown_architecture_lists_the_choices():
    from lensenhance.nn import build_model

    with pytest.raises(ValueError, match=r"unknown architecture 'vdsr'; choose from .*edsr.*unet"):
        build_model("vdsr")
    with pytest.raises(ValueError, match="architecture"):
        model_from_config({"architecture": 3})
    # build_sr_model keeps to SR networks and names the generic builder for the rest
    with pytest.raises(ValueError, match="unknown SR architecture 'unet'.*build_model"):
        build_sr_model("unet")


def test_importing_nn_pulls_in_no_optional_dependency():
    import subprocess
    import sys

    code = ("import sys, lensenhance.nn as n; n.list_architectures(); "
            "print(sorted(m for m in ('escnn', 'diffusers', 'lensenhance.nn.equivariant', "
            "'lensenhance.nn.unet') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_sr_and_equivariant_do_not_import_each_other():
    import ast
    from pathlib import Path

    import lensenhance.nn

    def imported(name):
        tree = ast.parse((Path(lensenhance.nn.__file__).parent / f"{name}.py").read_text())
        return {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}

    assert not {"sr", "lensenhance.nn.sr"} & imported("equivariant")
    assert not {"equivariant", "lensenhance.nn.equivariant"} & imported("sr")


# ----------------------------------------------------------------------------- weights v2

TINY_UNET = {"sample_size": 16, "channels": [8, 16], "attention_levels": [1], "n_classes": 3,
             "norm_groups": 4, "attention_head_dim": 8}


def test_weights_v2_round_trip_sr(tmp_path):
    from lensenhance.nn import export_weights, load_weights, read_weights_metadata

    torch.manual_seed(7)
    model = build_sr_model("edsr", scale=2, n_blocks=1, channels=8).eval()
    path = export_weights(model, tmp_path / "sr.safetensors",
                          metadata={"command": "lensenhance train sr", "train_args": {"a": 1},
                                    "val": {"psnr": 30.0}, "psnr": 31.5})
    meta = read_weights_metadata(path)
    assert meta["format"] == "lensenhance-weights" and meta["format_version"] == 2
    assert meta["task"] == "sr"
    assert meta["normalization"] == {"kind": "per_image", "method": "sigma_clip"}
    assert meta["config"] == model.config
    assert meta["train_args"] == {"a": 1} and meta["val"] == {"psnr": 30.0}
    assert meta["psnr"] == "31.5"  # keys outside JSON_METADATA_KEYS stay strings
    loaded = load_weights(path)
    assert type(loaded) is type(model) and not loaded.training
    x = torch.randn(1, 1, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_weights_v2_round_trip_diffusion_unet(tmp_path):
    pytest.importorskip("diffusers")
    from lensenhance.nn import build_model, export_weights, load_weights, read_weights_metadata

    torch.manual_seed(8)
    unet = build_model("unet", **TINY_UNET).eval()
    schedule = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                "beta_start": 1e-4, "beta_end": 0.02, "parameterization": "v"}
    scaling = {"kind": "asinh", "softening": 0.01, "maximum": 20.0}
    # what the training loop passes for the generator
    path = export_weights(unet, tmp_path / "ddpm.safetensors", overwrite=True, metadata={
        "task": "generate", "schedule": schedule, "n_classes": 3, "scaling": scaling,
        "classes": ["no_sub", "cdm", "axion"], "data_preset": "model_ii",
        "pixel_scale": 0.101, "unit": "electron/s", "image_size": 16, "step": 2,
        "train_args": {"steps": 2}, "val": {"val_loss": 0.5}, "wall_time_s": 1.0,
        "command": "lensenhance train ddpm"})
    meta = read_weights_metadata(path)
    assert meta["task"] == "generate" and meta["format_version"] == 2
    assert meta["schedule"] == schedule and meta["parameterization"] == "v"
    assert meta["scaling"] == scaling and meta["normalization"] == scaling
    assert meta["classes"] == ["no_sub", "cdm", "axion"]
    assert meta["n_classes"] == 3 and meta["pixel_scale"] == 0.101
    assert meta["unit"] == "electron/s"
    loaded = load_weights(path)
    assert loaded.config == unet.config
    # several channels in, scale 1, called with (x, t, labels): nothing assumes an SR net
    x = torch.randn(2, 1, 16, 16)
    t = torch.tensor([3, 500])
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, class_labels=labels),
                                   unet(x, t, class_labels=labels))


def test_export_weights_checks_task_and_reserved_keys(tmp_path):
    from lensenhance.nn import export_weights

    model = build_sr_model("edsr", n_blocks=1, channels=4)
    with pytest.raises(ValueError, match="task must be one of"):
        export_weights(model, tmp_path / "a.safetensors", task="painting")
    with pytest.raises(ValueError, match="reserved"):
        export_weights(model, tmp_path / "a.safetensors", metadata={"format_version": "9"})
    with pytest.raises(ValueError, match="metadata says"):
        export_weights(model, tmp_path / "a.safetensors", task="sr",
                       metadata={"task": "denoise"})
    resnet = model_from_config({"architecture": "smallresnet", "n_outputs": 1, "width": 4,
                                "blocks": [1]})
    with pytest.raises(ValueError, match="no default task"):
        export_weights(resnet, tmp_path / "b.safetensors")
    path = export_weights(resnet, tmp_path / "b.safetensors", task="classify",
                          normalization={"kind": "per_image", "method": "fixed"})
    from lensenhance.nn import read_weights_metadata

    assert read_weights_metadata(path)["normalization"]["method"] == "fixed"


def _write_v1(path, model, **extra):
    """A format v1 file, as lensenhance wrote them before format v2."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": "lensenhance-sr-weights", "config": json.dumps(model.config),
                        "n_parameters": str(count_parameters(model)), **extra})
    return path


def test_v1_file_migrates_with_identical_tensors(tmp_path):
    from lensenhance.nn import load_weights, migrate_weights, read_weights_metadata
    from lensenhance.nn.weights import _split_safetensors, load_sr_weights

    torch.manual_seed(9)
    model = build_sr_model("fsrcnn", scale=2, preset="paper").eval()
    path = _write_v1(tmp_path / "old.safetensors", model, command="lensenhance train sr",
                     train_args=json.dumps({"steps": 3}))
    assert read_weights_metadata(path)["format_version"] == 1
    x = torch.randn(1, 1, 7, 7)
    with torch.no_grad():
        with pytest.warns(DeprecationWarning, match="load_weights"):
            before_out = load_sr_weights(path)(x)  # v1 files keep loading, old name too
    header_before, body_before = _split_safetensors(path)
    assert migrate_weights(path) == path
    header_after, body_after = _split_safetensors(path)
    assert body_after == body_before  # the tensor bytes, untouched
    assert {k: v for k, v in header_after.items() if k != "__metadata__"} == \
        {k: v for k, v in header_before.items() if k != "__metadata__"}
    meta = read_weights_metadata(path)
    assert meta["format_version"] == 2 and meta["task"] == "sr"
    assert meta["normalization"] == {"kind": "per_image", "method": "sigma_clip"}
    assert meta["command"] == "lensenhance train sr" and meta["train_args"] == {"steps": 3}
    loaded = load_weights(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), before_out, rtol=0, atol=0)
    # a second migration changes nothing
    data = path.read_bytes()
    migrate_weights(path)
    assert path.read_bytes() == data


def test_migration_of_other_tasks_and_errors(tmp_path):
    from lensenhance.nn import migrate_weights, read_weights_metadata

    resnet = model_from_config({"architecture": "smallresnet", "n_outputs": 1, "width": 4,
                                "blocks": [1]})
    old = _write_v1(tmp_path / "features.safetensors", resnet)
    with pytest.raises(ValueError, match="task="):
        migrate_weights(old)
    out = migrate_weights(old, task="features", out=tmp_path / "new.safetensors")
    assert read_weights_metadata(out)["task"] == "features"
    assert read_weights_metadata(old)["format_version"] == 1  # out= leaves the input alone
    with pytest.raises(FileExistsError):
        migrate_weights(old, task="features", out=out)
    tagged = _write_v1(tmp_path / "tagged.safetensors", resnet, task="features")
    with pytest.raises(ValueError, match="metadata says"):
        migrate_weights(tagged, task="sr")
    newer = tmp_path / "newer.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(newer), metadata={
        "format": "lensenhance-weights", "format_version": "3", "config": "{}"})
    with pytest.raises(ValueError, match="newer"):
        read_weights_metadata(newer)
