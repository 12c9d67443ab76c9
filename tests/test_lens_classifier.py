"""`LensClassifier`: shapes, class order, probabilities, input types, errors; AUC."""

import numpy as np
import pytest
import torch
from astropy.nddata import CCDData

from lensenhance.classify import CLASSES, LensClassifier, evaluate_classifier, roc_auc
from lensenhance.nn.resnet import SmallResNet
from lensenhance.nn.weights import export_weights


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallResNet(len(CLASSES), width=4)
    path = tmp_path_factory.mktemp("clf") / "weights.safetensors"
    export_weights(net, path, metadata={
        "task": "classify", "classes": list(CLASSES), "image_shape": [16, 16],
        "scaling": {"kind": "asinh", "softening": 0.01, "maximum": 2.0},
        "data_preset": "deeplense_model_ii"})
    return path


def _images(n=5, seed=0):
    return np.random.default_rng(seed).gamma(2.0, 0.2, (n, 16, 16)).astype(np.float32)


def test_probabilities_shape_order_and_sum(classifier_file):
    clf = LensClassifier.from_file(classifier_file)
    assert clf.classes == ("no_sub", "cdm", "axion")
    p = clf.predict_proba(_images())
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(p >= 0)
    # the probabilities are the softmax of the network's logits on the stretched images
    x = torch.from_numpy(clf.scaling.apply(_images()))[:, None]
    with torch.inference_mode():
        expected = torch.softmax(clf.network(x), dim=1).numpy()
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
    labels = clf.predict(_images())
    assert list(labels) == [CLASSES[i] for i in expected.argmax(axis=1)]
    assert "deeplense_model_ii" in repr(clf) and "16x16" in repr(clf)


@pytest.mark.parametrize("kind", ["ndarray", "dataarray", "ccddata_list", "single"])
def test_input_types_give_the_same_answer(classifier_file, kind):
    import xarray as xr

    clf = LensClassifier.from_file(classifier_file)
    images = _images(3)
    reference = clf.predict_proba(images)
    if kind == "dataarray":
        data = xr.DataArray(images, dims=("image", "y", "x"))
    elif kind == "ccddata_list":
        data = [CCDData(im, unit="electron/s") for im in images]
    elif kind == "single":
        data, reference = images[0], reference[:1]
    else:
        data = images
    np.testing.assert_allclose(clf.predict_proba(data), reference, rtol=1e-6)


def test_batches_do_not_change_results(classifier_file):
    images = _images(7)
    a = LensClassifier.from_file(classifier_file, batch_size=2).predict_proba(images)
    b = LensClassifier.from_file(classifier_file, batch_size=256).predict_proba(images)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_clear_errors(classifier_file):
    clf = LensClassifier.from_file(classifier_file)
    with pytest.raises(ValueError, match="trained on 16x16"):
        clf.predict_proba(np.zeros((2, 20, 20), np.float32))
    bad = _images(2)
    bad[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.predict_proba(bad)
    with pytest.raises(ValueError, match="unknown classifier"):
        LensClassifier.from_pretrained("no-such-classifier")


def test_roc_auc_known_values():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5
    rng = np.random.default_rng(0)
    labels = rng.random(4000) < 0.5
    # scores N(1, 1) for positives and N(0, 1) for negatives: AUC = Phi(1 / sqrt(2))
    scores = rng.normal(labels.astype(float), 1.0)
    assert roc_auc(scores, labels) == pytest.approx(0.7602, abs=0.02)


def test_evaluate_classifier_figures(classifier_file):
    clf = LensClassifier.from_file(classifier_file)
    images = _images(30)
    labels = np.arange(30) % 3
    out = evaluate_classifier(clf, images, labels, n_boot=50)
    predicted = clf.predict_proba(images).argmax(axis=1)
    assert out["n"] == 30
    assert out["accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert np.sum(out["confusion"]) == 30
    assert np.trace(out["confusion"]) == np.sum(predicted == labels)
    for name in CLASSES:
        low, high = out["auc_ci95"][name]
        assert low <= out["auc"][name] <= high


@pytest.mark.parametrize("name", ["lens-classifier-deeplense-ii", "lens-classifier-deeplense-i"])
def test_shipped_classifiers_against_their_cards(name):
    """On 60 images of a seed they never saw, accuracy within 3 binomial standard errors
    of the card's (measured on 1500) and every one-vs-rest AUC near the card's."""
    from lensenhance.pretrained import model_card
    from lensenhance.training.data import generation_images

    clf = LensClassifier.from_pretrained(name)
    card = model_card(name)["metrics"]
    images, labels, _ = generation_images(60, preset=clf.metadata["data_preset"], seed=7,
                                          progress=False, truth=False)
    out = evaluate_classifier(clf, images, labels, n_boot=50)
    p = card["accuracy"]
    assert out["accuracy"] >= p - 3 * np.sqrt(p * (1 - p) / 60)
    for cls in CLASSES:
        assert out["auc"][cls] >= min(card["auc"][cls], 0.99) - 0.05
