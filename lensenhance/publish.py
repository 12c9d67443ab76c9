"""Turn a finished training run into shipped weights with a model card.

``python -m lensenhance.publish training_runs/rcan-x2 rcan-x2`` copies the run's EMA
weights into ``lensenhance/models/weights/``, evaluates them on the held-out ``sr``
benchmark set and writes the model card: task, architecture, scale, data preset,
degradation, the exact training command, steps, wall time, benchmark figures and the
SHA-256 of the weights file.
"""

import json
import shutil
import sys
from pathlib import Path

from ._atomic import atomic_write_bytes
from .models import WEIGHTS_DIR, file_sha256
from .nn.weights import load_sr_weights, read_weights_metadata

__all__ = ["publish_sr_weights", "publish_feature_network"]

DEGRADATION = {
    "model_i": ("the HR image is the sky convolved with a Gaussian PSF (FWHM 0.087\") on "
                "the 0.05\"/px grid; LR = HR summed over s x s blocks plus Poisson source "
                "noise and Gaussian background noise (exposure 10^U(3, 3.5) s)"),
}


def _install(run_dir, name, *, overwrite):
    """Copy a run's weights into the package; return (target, history, metadata)."""
    run_dir = Path(run_dir)
    source = run_dir / "weights.safetensors"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: the run has no exported weights yet")
    target = WEIGHTS_DIR / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (use overwrite=True)")
    history = json.loads((run_dir / "history.json").read_text())
    metadata = read_weights_metadata(source)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return target, history, metadata


def _card(name, target, history, metadata, **fields):
    config = history["config"]
    return {
        "name": name,
        "architecture": config["architecture"],
        "parameters": sum(p.numel() for p in load_sr_weights(target).parameters()),
        "preset": metadata.get("data_preset", "model_i"),
        "command": metadata.get("command"),
        **fields,
        "wall_time_s": round(float(history["wall_time_s"]), 1),
        "machine": "2 CPU cores (no GPU)",
        "sha256": file_sha256(target),
        "license": "BSD-3-Clause",
    }


def _write_card(name, card):
    atomic_write_bytes(WEIGHTS_DIR / f"{name}.json", json.dumps(card, indent=2).encode())
    return card


def publish_sr_weights(run_dir, name, *, n_eval=300, overwrite=False, progress=False):
    """Copy a run's weights into the package and write its model card.

    Parameters
    ----------
    run_dir : path-like
        A ``lensenhance train sr --out`` folder (``weights.safetensors``,
        ``history.json``).
    name : str
        The registry name, e.g. ``"rcan-x2"``.
    n_eval : int
        Held-out benchmark images for the card's figures.

    Returns
    -------
    dict
        The model card.
    """
    from .benchmark.sr import BENCHMARK_SEED, benchmark_sr

    target, history, metadata = _install(run_dir, name, overwrite=overwrite)
    config = history["config"]
    preset = metadata.get("data_preset", "model_i")
    card = _card(name, target, history, metadata, task="sr", scale=int(config["scale"]),
                 size=json.loads(metadata.get("train_args", "{}")).get("preset", "small"),
                 degradation=DEGRADATION.get(preset, f"simulated {preset} pairs"),
                 steps=int(history["step"]),
                 val_psnr_normalised=history["val"][-1]["psnr"] if history.get("val")
                 else None)
    _write_card(name, card)  # the benchmark finds the model through its card

    result = benchmark_sr(n=n_eval, scale=card["scale"], preset=preset, models=[name],
                          self_ensemble=False, regression=False, progress=progress)
    row, bicubic = result["rows"][name], result["rows"]["bicubic"]
    card["metrics"] = {
        "n": n_eval, "seed": BENCHMARK_SEED,
        "command": f"lensenhance benchmark sr -n {n_eval} --scale {card['scale']} --model "
                   f"{name} --no-self-ensemble --no-regression",
        **{key: row["metrics"]["all"][key] for key in ("mse", "psnr", "ssim")},
        "bicubic_psnr": bicubic["metrics"]["all"]["psnr"],
        "per_class_psnr": {k: v["psnr"] for k, v in row["metrics"].items() if k != "all"},
        "seconds_per_image": row["seconds_per_image"],
    }
    return _write_card(name, card)


def publish_feature_network(run_dir, name, *, overwrite=False):
    """Copy a ``lensenhance train features`` run into the package with its model card."""
    target, history, metadata = _install(run_dir, name, overwrite=overwrite)
    card = _card(name, target, history, metadata, task="features", scale=1,
                 degradation="none: trained on noise-free simulated HR images, normalised as "
                             "the SR training targets",
                 epochs=int(history["epochs"]),
                 # train_regressor's default batch of 32 images
                 steps=int(history["epochs"]) * -(-int(history["n_train"]) // 32),
                 metrics={"theta_e_mae_arcsec": history["val_mae"], "n": history["n_val"],
                          "note": "held-out simulated HR images (last n of the run's set)"})
    return _write_card(name, card)


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m lensenhance.publish RUN_DIR NAME [N_EVAL]")
    task = read_weights_metadata(Path(sys.argv[1]) / "weights.safetensors").get("task")
    if task == "features":
        card = publish_feature_network(sys.argv[1], sys.argv[2], overwrite=True)
    else:
        card = publish_sr_weights(sys.argv[1], sys.argv[2],
                                  n_eval=int(sys.argv[3]) if len(sys.argv) == 4 else 300,
                                  overwrite=True, progress=True)
    print(json.dumps(card, indent=2))
