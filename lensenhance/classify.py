"""`LensClassifier`: which dark-matter substructure class is in a lensing image?

DeepLense's task (Alexander et al. 2020, ApJ 893, 15): tell images without substructure
(``no_sub``), with CDM subhalos (``cdm``) and with axion vortices (``axion``) apart. The
shipped classifiers are `~lensenhance.nn.resnet.SmallResNet` networks trained on the
DeepLense-faithful presets (``lens-classifier-deeplense-ii`` on 64 x 64 Model II images,
``lens-classifier-deeplense-i`` on the 150 x 150 Model I grid); their cards hold the
per-class ROC AUC on seeds they never saw (`evaluate_classifier`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LensClassifier", "evaluate_classifier", "roc_auc", "CLASSES"]

#: Substructure classes, in the order of the classifiers' outputs.
CLASSES = ("no_sub", "cdm", "axion")


def _decoded(value):
    """Weights-file metadata: lists and dicts may come back as their JSON text."""
    import json

    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def _images(images):
    """A float32 ``(n, y, x)`` stack from a DataArray, CCDData list, ndarray or one image."""
    from astropy.nddata import NDData

    if isinstance(images, NDData):
        images = [images]
    if isinstance(images, (list, tuple)):
        images = [np.asarray(im.data if isinstance(im, NDData) else im, dtype=np.float32)
                  for im in images]
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise ValueError(f"images must share one shape, got {sorted(shapes)}")
        images = np.stack(images) if images else np.empty((0, 0, 0), np.float32)
    array = np.asarray(getattr(images, "values", images), dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[0] == 0:
        raise ValueError(f"images must be (n, y, x) or one (y, x) image, got shape "
                         f"{array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("images hold NaN or inf pixels; fill or mask them first")
    return array


class LensClassifier:
    """A substructure classifier: images in, class probabilities out.

    Parameters
    ----------
    network : torch.nn.Module
        A `~lensenhance.nn.resnet.SmallResNet` whose first ``len(classes)`` outputs are
        class logits, carrying its weights file's metadata as ``.metadata`` (classes,
        input stretch, image shape).
    name : str, optional
        Shown by ``repr``.
    batch_size : int, optional
        Images per forward pass.
    """

    def __init__(self, network, *, name=None, batch_size=256):
        from ._validation import check_int
        from .predict.normalization import AsinhScaling
        from .training.classifier import trained_image_shape

        metadata = getattr(network, "metadata", None) or {}
        if metadata.get("task") not in ("classify", None):
            raise ValueError(f"not a classifier: its task is {metadata.get('task')!r}")
        if "scaling" not in metadata:
            raise ValueError("the network carries no input stretch ('scaling' metadata)")
        self.network = network.eval()
        self.metadata = metadata
        self.name = name
        self.classes = tuple(_decoded(metadata.get("classes", CLASSES)))
        self.scaling = AsinhScaling.from_dict(_decoded(metadata["scaling"]))
        self.image_shape = trained_image_shape(network)
        self.batch_size = check_int(batch_size, "batch_size")

    @classmethod
    def from_pretrained(cls, name="lens-classifier-deeplense-ii", *, device="cpu", **kwargs):
        """A shipped classifier (`lensenhance.list_pretrained(task="classify")`)."""
        from .pretrained import list_pretrained, load_pretrained, model_card

        if name not in list_pretrained(task="classify"):
            raise ValueError(f"unknown classifier {name!r}; available: "
                             f"{', '.join(list_pretrained(task='classify'))}")
        network = load_pretrained(name, device=device)
        out = cls(network, name=name, **kwargs)
        out.card = model_card(name)
        return out

    @classmethod
    def from_file(cls, path, *, device="cpu", **kwargs):
        """A classifier from a weights file written by ``lensenhance train classifier``."""
        from .nn.weights import load_weights

        return cls(load_weights(path, device=device), name=str(path), **kwargs)

    def __repr__(self):
        shape = "x".join(str(s) for s in self.image_shape) or "any"
        return (f"<LensClassifier {self.name or 'unnamed'}: classes {', '.join(self.classes)};"
                f" images {shape}; preset {self.metadata.get('data_preset', '?')}>")

    def logits(self, images):
        """Class logits, ``(n, n_classes)``."""
        from .training.classifier import classifier_logits

        return classifier_logits(self.network, _images(images), scaling=self.scaling,
                                 batch_size=self.batch_size)

    def predict_proba(self, images):
        """Class probabilities.

        Parameters
        ----------
        images : xarray.DataArray, list of CCDData, or numpy.ndarray
            ``(n, y, x)`` flux images (or one ``(y, x)`` image) in the unit of the
            classifier's training images (the simulator's electron/s); stretched as in
            training.

        Returns
        -------
        numpy.ndarray, shape (n, n_classes)
            Rows sum to 1; columns in the order of `classes`.
        """
        logits = self.logits(images).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, images):
        """The most probable class of each image, as an array of class names."""
        return np.asarray(self.classes)[self.predict_proba(images).argmax(axis=1)]

    def features(self, images):
        """Pooled penultimate features, ``(n, d)``: the space of FD/KID distances."""
        from .training.classifier import classifier_features

        return classifier_features(self.network, _images(images), scaling=self.scaling,
                                   batch_size=self.batch_size)


def roc_auc(scores, positive):
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive``.

    The Mann-Whitney form: the probability that a random positive scores above a random
    negative (ties count one half).
    """
    from scipy.stats import rankdata

    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs positives and negatives")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate_classifier(classifier, images, labels, *, n_boot=1000, seed=0):
    """Accuracy, one-vs-rest ROC AUC per class with bootstrap intervals, confusion matrix.

    Parameters
    ----------
    classifier : LensClassifier
    images : array-like, shape (n, y, x)
    labels : array-like of int, shape (n,)
        Indices into ``classifier.classes``.
    n_boot : int, optional
        Bootstrap resamples of the images for the 95 % intervals.

    Returns
    -------
    dict
        ``n``, ``accuracy`` (+ ``accuracy_ci95``), ``auc`` (class -> value),
        ``auc_ci95`` (class -> [low, high]), ``confusion`` (rows: true class).
    """
    labels = np.asarray(labels, dtype=int)
    p = classifier.predict_proba(images)
    k = len(classifier.classes)
    predicted = p.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(labels), len(labels)) for _ in range(n_boot)]
    out = {"n": int(len(labels)), "accuracy": float(np.mean(predicted == labels)),
           "auc": {}, "auc_ci95": {}, "confusion": confusion.tolist()}
    acc = [np.mean(predicted[b] == labels[b]) for b in boots]
    out["accuracy_ci95"] = [float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))]
    for j, name in enumerate(classifier.classes):
        out["auc"][name] = roc_auc(p[:, j], labels == j)
        values = [roc_auc(p[b, j], labels[b] == j) for b in boots
                  if 0 < np.sum(labels[b] == j) < len(b)]
        out["auc_ci95"][name] = [float(np.percentile(values, 2.5)),
                                 float(np.percentile(values, 97.5))]
    return out
