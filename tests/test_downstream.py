"""``benchmark downstream`` on a tiny set: it runs, reports its n and the gap closed."""

import json

import numpy as np
import pytest
import torch

from lensenhance.benchmark.downstream import benchmark_downstream, gap_closed
from lensenhance.classify import CLASSES
from lensenhance.nn.resnet import SmallResNet
from lensenhance.nn.weights import export_weights


def test_gap_closed_is_the_share_of_the_lr_to_hr_gap():
    shares = gap_closed({"bicubic": 0.6, "HR": 1.0, "sr": 0.8})
    assert shares == pytest.approx({"bicubic": 0.0, "HR": 1.0, "sr": 0.5})


def test_downstream_on_a_tiny_set(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "clf.safetensors"
    export_weights(SmallResNet(len(CLASSES), width=4), path, metadata={
        "task": "classify", "classes": list(CLASSES), "image_shape": [150, 150],
        "scaling": {"kind": "asinh", "softening": 1e-3, "maximum": 0.2},
        "data_preset": "deeplense_model_i"})
    result = benchmark_downstream(n=6, n_theta=6, models=["fsrcnn-x2"], classifier=str(path),
                                  n_boot=20, json_path=tmp_path / "d.json", verbose=False)
    rows = result["classification"]["rows"]
    assert result["classification"]["n"] == 6 and result["theta_e"]["n"] == 6
    assert set(rows) == {"HR", "bicubic", "fsrcnn-x2"}
    assert rows["HR"]["gap_closed"] == pytest.approx(1.0) or np.isnan(rows["HR"]["gap_closed"])
    assert rows["bicubic"]["gap_closed"] == pytest.approx(0.0) or np.isnan(
        rows["bicubic"]["gap_closed"])
    for row in rows.values():
        assert 0.0 <= row["auc_mean"] <= 1.0
        lo, hi = row["auc_ci95"]
        assert lo <= hi
    theta = result["theta_e"]["rows"]
    # the shipped theta_E network on noise-free HR images is good to a few hundredths
    assert theta["HR"]["mae"] < 0.2 and theta["HR"]["mae"] < theta["bicubic"]["mae"] * 1.5
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["classification"]["n"] == 6
    assert "Substructure classification" in result["table"] and "6 held-out" in result["table"]
