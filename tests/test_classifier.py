import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lensenhance.cli import cli
from lensenhance.nn.resnet import SmallResNet
from lensenhance.nn.weights import load_weights
from lensenhance.predict.normalization import AsinhScaling
from lensenhance.training.classifier import (
    DEFAULT_SCALING,
    _split,
    classifier_features,
    classifier_predict,
    train_classifier,
)
from lensenhance.training.data import CLASSES


def _tiny_set(n_per_class=10, size=16, seed=0):
    """Flux images whose class sets the width of a central blob."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    images, labels = [], []
    for label, width in enumerate((1.5, 3.0, 5.0)):
        for _ in range(n_per_class):
            blob = 5.0 * np.exp(-(x**2 + y**2) / (2 * width**2))
            images.append(blob + rng.normal(0, 0.05, (size, size)))
            labels.append(label)
    return np.array(images, dtype=np.float32), np.array(labels)


def _value(text):
    """A metadata value: JSON-valued keys may come back decoded or as text."""
    return json.loads(text) if isinstance(text, str) else text


TINY = {"n": 24, "n_val": 6, "epochs": 2, "batch_size": 8, "width": 4, "progress": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    images = _tiny_set()
    result = train_classifier(out, images=images, metadata={"command": "test"}, **TINY)
    return out, result, images


def test_train_classifier_writes_weights_and_history(trained):
    out, result, _ = trained
    history = json.loads((out / "history.json").read_text())
    assert [entry["epoch"] for entry in history["epochs"]] == [1, 2]
    assert {"loss", "lr", "val_loss", "val_accuracy"} <= set(history["epochs"][0])
    assert history["val_accuracy"] == result["val_accuracy"]
    confusion = np.array(result["val_confusion"])
    # The split is stratified: 2 validation images per class.
    assert confusion.shape == (3, 3) and confusion.sum(axis=1).tolist() == [2, 2, 2]
    assert result["n_train"] == 24 and result["n_val"] == 6


def test_weights_reload_with_their_metadata(trained):
    out, result, (images, _) = trained
    net = load_weights(out / "weights.safetensors")
    assert isinstance(net, SmallResNet) and net.config == result["config"]
    meta = net.metadata
    assert meta["task"] == "classify"
    assert _value(meta["classes"]) == list(CLASSES)
    assert _value(meta["scaling"]) == DEFAULT_SCALING
    assert _value(meta["val_accuracy"]) == result["val_accuracy"]
    assert _value(meta["n_val"]) == 6 and meta["data_preset"] == "model_ii"
    assert _value(meta["image_shape"]) == [16, 16] and meta["command"] == "test"
    # The stretch comes from the metadata unless given.
    features = classifier_features(net, images[:5])
    assert features.shape == (5, 4 * 8) and features.dtype == np.float32
    np.testing.assert_allclose(
        features, classifier_features(net, images[:5], scaling=AsinhScaling(0.01, 20.0),
                                      batch_size=2), rtol=1e-4, atol=1e-5)
    probabilities = classifier_predict(net, images[:5, None])
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    # Another field size is refused, not read as if it were the trained one.
    with pytest.raises(ValueError, match="12x12 but the classifier was trained on 16x16"):
        classifier_features(net, images[:2, 2:14, 2:14])


def test_training_is_reproducible(trained, tmp_path):
    out, _, images = trained
    train_classifier(tmp_path, images=images, **TINY)
    first = load_weights(out / "weights.safetensors").state_dict()
    second = load_weights(tmp_path / "weights.safetensors").state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_existing_weights_need_overwrite(trained):
    out, _, images = trained
    with pytest.raises(FileExistsError):
        train_classifier(out, images=images, **TINY)


@pytest.mark.parametrize("change, error, match", [
    (lambda im, lab: (im[:-1], lab[:-1]), ValueError, "n \\+ n_val"),
    (lambda im, lab: (im, lab + 1), ValueError, "labels"),
    (lambda im, lab: (im[:, :, :-1], lab), ValueError, "square"),
    (lambda im, lab: (im, lab.astype(float)), ValueError, "labels"),
    (lambda im, lab: im, TypeError, "pair"),
])
def test_bad_training_data(tmp_path, change, error, match):
    images, labels = _tiny_set()
    with pytest.raises(error, match=match):
        train_classifier(tmp_path, images=change(images, labels), **TINY)
    assert not (tmp_path / "weights.safetensors").exists()


def test_features_need_a_scaling_and_keep_the_mode():
    net = SmallResNet(3, width=4).train()
    images = _tiny_set(2)[0]
    with pytest.raises(ValueError, match="scaling"):
        classifier_features(net, images)
    with pytest.raises(TypeError, match="scaling"):
        classifier_features(net, images, scaling=3.0)
    assert classifier_features(net, images, scaling=DEFAULT_SCALING).shape == (6, 32)
    assert net.training
    with pytest.raises(ValueError, match="NaN"):
        classifier_features(net, np.full((2, 16, 16), np.nan), scaling=DEFAULT_SCALING)


def test_split_is_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [40, 40, 20])
    train, val = _split(labels, 10, seed=1)
    assert np.bincount(labels[val]).tolist() == [4, 4, 2]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert np.array_equal(val, _split(labels, 10, seed=1)[1])
    assert not np.array_equal(val, _split(labels, 10, seed=2)[1])


def test_cli_trains_on_simulated_images(tmp_path):
    out = tmp_path / "clf"
    args = ["-q", "train", "classifier", "-n", "3", "--n-val", "3", "--epochs", "1",
            "--width", "4", "--batch-size", "3", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "accuracy on 3 held-out images" in result.output
    assert (out / "train_images.npz").is_file()
    meta = load_weights(out / "weights.safetensors").metadata
    assert meta["command"].startswith("lensenhance train classifier -n 3 --n-val 3")
    assert meta["unit"] == "electron / s" and _value(meta["image_shape"]) == [64, 64]
    assert float(meta["pixel_scale"]) > 0
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_truth_parameters_are_regressed_beside_the_class(tmp_path):
    from lensenhance.nn.weights import load_weights
    from lensenhance.training.classifier import classifier_predict, train_classifier

    rng = np.random.default_rng(1)
    images = rng.gamma(1.0, 0.05, size=(12, 64, 64)).astype(np.float32)
    theta = rng.uniform(0.5, 2.0, 12)
    result = train_classifier(tmp_path, n=9, n_val=3, epochs=1, width=4,
                              images=(images, np.arange(12) % 3),
                              truth={"theta_E": theta}, progress=False)
    assert result["targets"] == ["theta_E"] and np.isfinite(result["val_mae"]["theta_E"])
    net = load_weights(tmp_path / "weights.safetensors")
    assert net.config["n_outputs"] == 4
    probabilities = classifier_predict(net, images[:2])
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="12 values"):
        train_classifier(tmp_path / "b", n=9, n_val=3, epochs=1, width=4,
                         images=(images, np.arange(12) % 3), truth={"theta_E": theta[:5]},
                         progress=False)


def test_shipped_classifier_against_its_card():
    """The shipped classifier on a small fixed simulated set, against its card's figures."""
    from lensenhance.pretrained import load_pretrained, model_card
    from lensenhance.training.classifier import classifier_features, classifier_truth
    from lensenhance.training.data import generation_images

    card = model_card("lens-classifier")
    net = load_pretrained("lens-classifier")
    images, labels, attrs = generation_images(15, preset="model_ii", seed=424242,
                                              progress=False)
    truth = classifier_truth(net, images)
    mae = np.mean(np.abs(truth["theta_E"] - attrs["truth"]["theta_E"]))
    # 15 images: allow for the sampling error of a mean absolute error.
    assert mae < 2.5 * card["metrics"]["mae"]["theta_E"]
    features = classifier_features(net, images)
    assert features.shape == (15, 128) and np.all(np.isfinite(features))
